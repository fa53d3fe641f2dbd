//! Audio crossing a real call with baresip through Kamailio: ctiphone plays a 440 Hz file as
//! its microphone, baresip plays a 1 kHz tone. baresip's recording of what it heard must show
//! 440 Hz; ctiphone's `--audio-out` and its call recording (right channel) must show 1 kHz,
//! the recording's left channel 440 Hz. Checked by frequency (Goertzel) with an SNR floor, for
//! each codec both phones have. Also RFC 4733 DTMF from ctiphone reported by baresip.

mod common;

use std::path::{Path, PathBuf};

use serde_json::json;

use common::peers::{Baresip, Kamailio, Phone, account_toml, secs};
use ctiphone::media::goertzel;

/// The middle of a signal (skips ramp-up and the end), at least `min` samples of it.
fn middle(s: &[i16], rate: u32) -> &[i16] {
    let skip = rate as usize / 2;
    if s.len() > skip * 3 {
        &s[skip..s.len() - skip]
    } else {
        s
    }
}

fn assert_tone(what: &str, samples: &[i16], rate: u32, freq: f64) {
    let s = middle(samples, rate);
    assert!(s.len() > rate as usize, "{what}: only {} samples", s.len());
    let snr = goertzel::tone_snr_db(s, rate, freq);
    assert!(snr >= 15.0, "{what}: {freq} Hz SNR {snr:.1} dB (below 15 dB)");
}

struct Run {
    _dir: tempfile::TempDir,
    heard: PathBuf,
    recording: PathBuf,
    baresip_dir: PathBuf,
    _b: Baresip,
    _k: Kamailio,
}

/// A 4 s call from ctiphone (1001) to baresip (1002), both through Kamailio, with `codec`.
fn call_with(codec_ours: &str, codec_baresip: &str) -> Run {
    let k = Kamailio::start();
    let b = Baresip::start_with_codecs(&k, "1002", codec_baresip);
    let dir = tempfile::tempdir().expect("temp dir");
    let mic = dir.path().join("tone440.wav");
    common::tone(&mic, 440.0, 8000, 5);
    let heard = dir.path().join("heard.wav");
    let rec = dir.path().join("rec");
    let cfg = format!(
        "{}\n[audio]\ncodecs = [\"{codec_ours}\"]\n[recording]\nauto = true\ndir = \"{}\"\n",
        account_toml("1001", "pw1001", &k.addr(), "udp", 60),
        rec.display()
    );
    let mic_arg = format!("--audio-in={}", mic.display());
    let out_arg = format!("--audio-out={}", heard.display());
    let mut p = Phone::start(&cfg, &[&mic_arg, &out_arg]);
    p.expect("registered", secs(10));
    p.send(json!({"cmd": "dial", "to": "1002"}));
    p.expect("answered", secs(10));
    std::thread::sleep(secs(4));
    p.send(json!({"cmd": "hangup"}));
    p.expect("ended", secs(5));
    let recorded = p.expect("recorded", secs(5));
    let recording = PathBuf::from(recorded["path"].as_str().expect("path"));
    assert!(recording.starts_with(&rec), "{recorded}");
    assert!(
        !Path::new(&format!("{}.part", recording.display())).exists(),
        "the .part file was renamed"
    );
    p.send(json!({"cmd": "quit"}));
    let _ = p.wait_exit(secs(3));
    // baresip writes its files when the call ends.
    std::thread::sleep(secs(1));
    Run {
        baresip_dir: b.dir().to_path_buf(),
        _dir: dir,
        heard,
        recording,
        _b: b,
        _k: k,
    }
}

fn check(run: &Run) {
    let (ours, rate) = common::wav_channel(&run.heard, 0);
    assert_tone("ctiphone --audio-out (baresip's 1 kHz)", &ours, rate, 1000.0);
    let (left, rate_l) = common::wav_channel(&run.recording, 0);
    let (right, rate_r) = common::wav_channel(&run.recording, 1);
    assert_tone("recording left (the agent, 440 Hz)", &left, rate_l, 440.0);
    assert_tone("recording right (the customer, 1 kHz)", &right, rate_r, 1000.0);
    let theirs_path = Baresip::heard_wav(&run.baresip_dir);
    let (theirs, rate) = common::wav_channel(&theirs_path, 0);
    assert_tone(
        &format!("baresip heard ({})", theirs_path.display()),
        &theirs,
        rate,
        440.0,
    );
}

#[test]
fn pcmu_both_ways() {
    check(&call_with("PCMU", "PCMU"));
}

#[test]
fn pcma_both_ways() {
    check(&call_with("PCMA", "PCMA"));
}

#[test]
fn g722_both_ways() {
    check(&call_with("G722", "G722"));
}

#[test]
fn opus_both_ways() {
    check(&call_with("opus", "opus"));
}

#[test]
fn rfc4733_dtmf_reaches_baresip() {
    let k = Kamailio::start();
    let b = Baresip::start(&k, "1002");
    let cfg = format!(
        "{}\n[audio]\ninput = \"null\"\noutput = \"null\"\n",
        account_toml("1001", "pw1001", &k.addr(), "udp", 60)
    );
    let mut p = Phone::start(&cfg, &[]);
    p.expect("registered", secs(10));
    p.send(json!({"cmd": "dial", "to": "1002"}));
    p.expect("answered", secs(10));
    std::thread::sleep(secs(1));
    p.send(json!({"cmd": "dtmf", "digits": "5#"}));
    std::thread::sleep(secs(2));
    let log = b.log();
    p.send(json!({"cmd": "hangup"}));
    p.expect("ended", secs(5));
    // baresip logs each RFC 4733 event it receives: "received event: '5' (end=1)".
    for d in ["'5'", "'#'"] {
        assert!(
            log.contains(&format!("received event: {d}")),
            "baresip did not report {d}:\n{log}"
        );
    }
}
