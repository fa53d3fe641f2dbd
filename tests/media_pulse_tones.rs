//! The phone's own tones on a real output device (cpal → a private PulseAudio null sink,
//! recorded back from its monitor): the short beep of a call the PBX had answered (Call-Info
//! answer-after=0, 1 kHz) and the soft call-waiting tone of a second call ringing during the
//! first (425 Hz, a short burst, quieter than the ring tone). Checked by frequency.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use common::calls::config_with;
use common::peers::{Phone, Sipp, account_toml_call_waiting, secs};
use common::pulse::{log_of, start_pulseaudio};
use ctiphone::media::device::{DeviceSpec, open_sink, open_source};
use ctiphone::media::tone::tone_ratio;

const RATE: u32 = 8000;
const FRAME: usize = (RATE / 50) as usize;

/// The 100 ms windows of `s` (in 20 ms steps) where `freq` holds most of the energy: their
/// start times, seconds.
fn tone_at(s: &[i16], freq: f64) -> Vec<f64> {
    let win = RATE as usize / 10;
    (0..s.len().saturating_sub(win))
        .step_by(FRAME)
        .filter(|&at| {
            let w = &s[at..at + win];
            w.iter().any(|&x| x.unsigned_abs() > 300) && tone_ratio(w, RATE, freq) > 0.6
        })
        .map(|at| at as f64 / f64::from(RATE))
        .collect()
}

#[test]
fn the_auto_answer_beep_and_the_call_waiting_tone_reach_the_speaker() {
    let daemon = start_pulseaudio();
    // Record the null sink's monitor on a thread, warmed up first (a fresh null sink renders
    // its first block late), for `total`.
    let total = Duration::from_secs(7);
    let (ready_tx, ready_rx) = mpsc::channel();
    let recorder = std::thread::spawn(move || {
        let mut sink = open_sink(&DeviceSpec::Named("ctinull".into()), RATE).expect("sink");
        let mut source = open_source(&DeviceSpec::parse("ctinull.monitor"), RATE).expect("source");
        let silence = vec![0i16; FRAME];
        let mut scratch = vec![0i16; FRAME];
        let warm = Instant::now();
        while !source.stats().streaming && warm.elapsed() < Duration::from_secs(8) {
            sink.push(&silence);
            source.pull(&mut scratch);
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = ready_tx.send(source.stats().streaming);
        let mut got = Vec::new();
        let start = Instant::now();
        let mut i = 0u32;
        while start.elapsed() < total {
            sink.push(&silence);
            source.pull(&mut scratch);
            got.extend_from_slice(&scratch);
            i += 1;
            let next = start + Duration::from_millis(20) * i;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        got
    });
    assert!(
        ready_rx.recv_timeout(secs(10)).unwrap_or(false),
        "the monitor never streamed\n{}",
        log_of(&daemon.dir)
    );
    let t0 = Instant::now();
    let cfg = config_with(
        &account_toml_call_waiting("1001", "pw1001", "", "udp", 60),
        "[calls]\nremote_answer = true\nremote_answer_from = [\"127.0.0.1\"]\n",
    )
    .replace("output = \"null\"", "output = \"ctinull\"")
    .replace("ring = false", "ring = true");
    let mut p = Phone::start(&cfg, &[]);
    let target = p.target();
    let first = Sipp::spawn(
        "uac_auto_answer.xml",
        &[
            target.as_str(),
            "-s",
            "0312345678",
            "-key",
            "hdr",
            "Call-Info: <sip:127.0.0.1>;answer-after=0",
        ],
    );
    p.expect("answered", secs(5));
    let answered_at = t0.elapsed().as_secs_f64();
    std::thread::sleep(secs(1));
    let second = Sipp::spawn("uac_wait_bye.xml", &[target.as_str(), "-s", "0312345678"]);
    // (The first call's `incoming` went by while waiting for its answer.)
    let inc = p.expect("incoming", secs(5));
    let second_at = t0.elapsed().as_secs_f64();
    let id2 = inc["call"].as_str().unwrap_or_default().to_owned();
    let heard = recorder.join().expect("recorder thread");
    p.send(json!({"cmd": "quit"}));
    let _ = p.wait_exit(secs(3));
    drop(first);
    drop(second);

    let beeps = tone_at(&heard, 1000.0);
    assert!(
        beeps
            .iter()
            .any(|&t| t >= answered_at - 0.5 && t <= answered_at + 1.0),
        "no 1 kHz beep around the auto-answer at {answered_at:.2} s; 1 kHz at {beeps:?} (call {id2})"
    );
    let waiting = tone_at(&heard, 425.0);
    let near: Vec<f64> = waiting
        .iter()
        .copied()
        .filter(|&t| t >= second_at - 0.5 && t <= second_at + 1.5)
        .collect();
    assert!(
        !near.is_empty(),
        "no 425 Hz call-waiting tone after the second call rang at {second_at:.2} s; 425 Hz at {waiting:?}"
    );
    // A short burst (300 ms), not the 1 s ring.
    let span = near.last().unwrap_or(&0.0) - near.first().unwrap_or(&0.0);
    assert!(span < 0.6, "the waiting tone lasted {span:.2} s: {near:?}");
}
