//! Integration test of the real cpal path without sound hardware.
//!
//! Starts a private PulseAudio daemon (Debian package `pulseaudio`) in a
//! temporary directory with a null sink `ctinull`, points this process at it
//! with `PULSE_SERVER=unix:<dir>/run/native`, then plays a 440 Hz tone into
//! `ctinull` through `open_sink` and records it back from its monitor
//! `ctinull.monitor` through `open_source`, both at 8 kHz in 20 ms frames.
//!
//! The daemon runs in the foreground as a child of the test:
//! `HOME=<dir>/home XDG_CONFIG_HOME=<dir>/home/.config XDG_RUNTIME_DIR=<dir>/run
//! PULSE_RUNTIME_PATH=<dir>/run pulseaudio --daemonize=no --system=false
//! --exit-idle-time=-1 --disallow-exit --use-pid-file=false -n -F <dir>/test.pa
//! --log-target=file:<dir>/pulse.log`.
//! As root, PulseAudio 16 only warns ("not intended to be run as root")
//! unless `--system` is given, so `--system=false` plus the private
//! HOME/XDG_RUNTIME_DIR is all it needs; the cookie it creates under the
//! private HOME is handed to the client with `PULSE_COOKIE`, and the socket
//! also accepts anonymous clients. The daemon is killed and the directory
//! removed when the test ends. Missing `pulseaudio` fails the test.

mod common;

use std::time::{Duration, Instant};

use common::pulse::{log_of, start_pulseaudio};

use ctiphone::media::device::{DeviceSpec, list_inputs, list_outputs, open_sink, open_source};
use ctiphone::media::tone::{tone_ratio, tone_snr_db};

#[test]
fn tone_through_pulseaudio_null_sink_and_monitor() {
    let daemon = start_pulseaudio();
    let rate = 8000u32;
    let frame_len = (rate / 50) as usize;

    let outs = list_outputs();
    let ins = list_inputs();
    assert!(outs.iter().any(|n| n == "ctinull"), "outputs: {outs:?}");
    assert!(ins.iter().any(|n| n == "ctinull.monitor"), "inputs: {ins:?}");

    // The default sink is ctinull too: opening it must work.
    let mut default_sink = open_sink(&DeviceSpec::Default, rate)
        .unwrap_or_else(|e| panic!("open default sink: {e}\n{}", log_of(&daemon.dir)));
    assert_eq!(default_sink.name(), "ctinull");
    default_sink.finish().expect("finish default sink");
    drop(default_sink);

    let opening = Instant::now();
    let mut sink = open_sink(&DeviceSpec::Named("ctinull".into()), rate)
        .unwrap_or_else(|e| panic!("open sink ctinull: {e}\n{}", log_of(&daemon.dir)));
    let mut source = open_source(&DeviceSpec::parse("ctinull.monitor"), rate)
        .unwrap_or_else(|e| panic!("open source ctinull.monitor: {e}\n{}", log_of(&daemon.dir)));

    // `open_*` waits at most 500 ms each for the stream to start.
    let open_time = opening.elapsed();
    assert!(
        open_time < Duration::from_millis(1500),
        "opening took {open_time:?}"
    );
    // A freshly loaded null sink renders its first block with its maximum
    // latency (2 s) before the low latency our streams ask for applies, so
    // capture from its monitor starts only after that. Warm up like a call
    // would (silence out, frames in) until the monitor delivers.
    let mut silence = vec![0i16; frame_len];
    let mut scratch = vec![0i16; frame_len];
    let warm = Instant::now();
    while !source.stats().streaming {
        assert!(
            warm.elapsed() < Duration::from_secs(8),
            "monitor source never started: {:?}\n{}",
            source.stats(),
            log_of(&daemon.dir)
        );
        sink.push(&silence);
        source.pull(&mut scratch);
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..10 {
        sink.push(&silence);
        source.pull(&mut scratch);
        std::thread::sleep(Duration::from_millis(20));
    }
    silence.fill(0);
    let (sink_warm, source_warm) = (sink.stats(), source.stats());
    eprintln!(
        "warm-up {:?}: sink {sink_warm:?}, source {source_warm:?}",
        warm.elapsed()
    );
    assert!(sink_warm.streaming, "sink not streaming: {sink_warm:?}");

    let mut phase = 0u64;
    let mut tone_frame = |out: &mut [i16]| {
        for s in out.iter_mut() {
            let t = phase as f64 / f64::from(rate);
            *s = (10000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
            phase += 1;
        }
    };

    let mut pulled: Vec<i16> = Vec::new();
    let mut out = vec![0i16; frame_len];
    let mut inp = vec![0i16; frame_len];
    let tick = Duration::from_millis(20);
    let start = Instant::now();
    // 2 s of tone, then 0.5 s of silence so the tail comes back too.
    for i in 0..125u32 {
        if i < 100 {
            tone_frame(&mut out);
        } else {
            out.fill(0);
        }
        sink.push(&out);
        source.pull(&mut inp);
        pulled.extend_from_slice(&inp);
        if i == 99 {
            let push_time = start.elapsed();
            assert!(
                push_time >= Duration::from_millis(1700) && push_time <= Duration::from_secs(3),
                "pushing 2 s took {push_time:?}"
            );
        }
        let next = start + tick * (i + 1);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    let elapsed = start.elapsed();
    sink.finish().expect("finish sink");
    let (sink_stats, source_stats) = (sink.stats(), source.stats());
    eprintln!(
        "sink {} {sink_stats:?}; source {} {source_stats:?}; 2.5 s loop took {elapsed:?}",
        sink.name(),
        source.name()
    );

    // Best one-second window of what came back from the monitor.
    let win = rate as usize;
    let (best_at, best_snr) = (0..=pulled.len().saturating_sub(win))
        .step_by(frame_len)
        .map(|at| (at, tone_snr_db(&pulled[at..at + win], rate, 440.0)))
        .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
    let best = &pulled[best_at..best_at + win];
    let rms = (best.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / win as f64).sqrt();
    eprintln!(
        "best window at {:.2} s: 440 Hz SNR {best_snr:.1} dB, ratio {:.4}, rms {rms:.0}",
        best_at as f64 / f64::from(rate),
        tone_ratio(best, rate, 440.0)
    );
    // Mouth-to-ear through both rings and PulseAudio: first loud sample.
    let onset = pulled.iter().position(|&s| s.abs() > 2000);
    let latency = onset.map(|i| i as f64 / f64::from(rate));
    eprintln!("round-trip latency {latency:?} s");
    assert!(
        latency.is_some_and(|l| l < 0.5),
        "tone came back too late or never: {latency:?} s"
    );
    assert!(best_snr > 20.0, "440 Hz SNR only {best_snr:.1} dB");
    // Sent at amplitude 10000 (rms ≈ 7071); allow for PulseAudio's volume.
    assert!(rms > 2000.0, "returned tone too quiet: rms {rms:.0}");
    // The monitor is clocked like the sink: capture kept up with real time.
    assert!(
        source_stats.underruns - source_warm.underruns <= 10,
        "source underruns: {source_stats:?}"
    );
    assert_eq!(sink_stats.errors, 0, "sink stream errors");
    assert_eq!(source_stats.errors, 0, "source stream errors");
    drop(source);
    drop(sink);
    drop(daemon);
}
