//! A call flood at a phone in a call: `ctiphone headless` (A) talks to a second phone (B) with
//! real RTP, each playing a tone file as its microphone (A 440 Hz, B 1 kHz) and recording what
//! it hears (`--audio-out`); then SIPp sends 500 INVITE/s for 30 s at A.
//!
//! Checked: every flood INVITE is refused as busy (486) or overloaded (503) and ACKed, none
//! rings; the call keeps its audio both ways through the flood (the tone of the other side,
//! by frequency, in every second of the flood in both recordings); it hangs up cleanly
//! afterwards (B's BYE ends it on A); A's resident memory stays bounded; and A's control
//! interface answers during the flood (a command for a call that does not exist, answered by
//! an `error` event from the user agent: its latency is measured).

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use common::peers::{
    Phone, account_toml, free_udp_media_port, free_udp_port, ms, peer_bin, scenario_path, secs,
};
use ctiphone::media::goertzel;

const RATE: u32 = 500;
const FLOOD_SECS: u32 = 30;

/// A mono WAV's samples and rate.
fn samples(path: &Path) -> (Vec<i16>, u32) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rate = r.spec().sample_rate;
    (r.samples::<i16>().filter_map(Result::ok).collect(), rate)
}

/// The tone check of a recording between `from` and `to` seconds: the SNR at `freq` of each
/// second, and the share of 20 ms frames that are silent (a gap in the audio).
fn audio_during(path: &Path, freq: f64, from: f64, to: f64) -> (Vec<f64>, f64) {
    let (s, rate) = samples(path);
    let at = |t: f64| ((t.max(0.0) * f64::from(rate)) as usize).min(s.len());
    let (a, b) = (at(from), at(to));
    assert!(
        b > a + rate as usize,
        "{}: {} s of audio, the flood window is {from:.1}..{to:.1} s",
        path.display(),
        s.len() / rate as usize
    );
    let window = &s[a..b];
    let per_second: Vec<f64> = window
        .chunks(rate as usize)
        .filter(|c| c.len() == rate as usize)
        .map(|c| goertzel::tone_snr_db(c, rate, freq))
        .collect();
    let frame = rate as usize / 50;
    let frames: Vec<&[i16]> = window.chunks(frame).filter(|f| f.len() == frame).collect();
    let silent = frames
        .iter()
        .filter(|f| f.iter().all(|x| x.unsigned_abs() < 300))
        .count();
    (per_second, silent as f64 / frames.len() as f64)
}

/// Seconds with the tone at 10 dB SNR or better, and the worst second.
fn summary(per_second: &[f64]) -> (usize, f64) {
    let good = per_second.iter().filter(|s| **s >= 10.0).count();
    (good, per_second.iter().copied().fold(f64::INFINITY, f64::min))
}

/// CPU time (user + system, all threads) a process used so far, from /proc/PID/stat.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (in parentheses, it may hold spaces): state, ppid, …;
    // utime and stime are the 12th and 13th of them, in clock ticks (100 a second).
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let field = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((field(11) + field(12)) * 10)
}

/// SIPp flooding `target`; killed (with its process group) on drop.
struct Flood {
    child: Child,
    dir: tempfile::TempDir,
}

impl Flood {
    fn start(target: &str, calls: u32) -> Flood {
        let dir = tempfile::Builder::new().prefix("flood").tempdir().unwrap();
        let out = std::fs::File::create(dir.path().join("out.log")).unwrap();
        let child = Command::new(peer_bin("sipp"))
            .arg("-sf")
            .arg(scenario_path("uac_flood_busy.xml"))
            .arg(target)
            .args(["-s", "1001", "-i", "127.0.0.1"])
            .args(["-p", &free_udp_port().to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &free_udp_media_port().to_string()])
            .args(["-ci", "127.0.0.1", "-cp", &free_udp_port().to_string()])
            .args(["-r", &RATE.to_string(), "-rp", "1000"])
            .args(["-m", &calls.to_string(), "-l", "5000"])
            .args(["-timeout", "90s", "-nostdin", "-trace_screen", "-trace_err"])
            .arg("-screen_file")
            .arg(dir.path().join("screen.log"))
            .arg("-error_file")
            .arg(dir.path().join("errors.log"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("spawning sipp");
        Flood { child, dir }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read(self.dir.path().join(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The final screen: per message line of the scenario, how many were sent or received.
    fn screen(&self) -> String {
        self.file("screen.log")
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        if self.running() {
            let pid = self.child.id() as libc::pid_t;
            // SAFETY: signals our own child's process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

/// The count in the screen line of a scenario message (`INVITE ---------->  15000 ...`,
/// `486 <----------  14990 ...`): the first number after the arrow.
fn screen_count(screen: &str, what: &str) -> u64 {
    screen
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(what))
        .filter_map(|l| {
            l.split_whitespace()
                .skip_while(|w| !w.contains("--"))
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
        })
        .next_back()
        .unwrap_or(0)
}

fn phone(user: &str, mic: &Path, heard: &Path) -> Phone {
    let cfg = format!(
        "{}\n[audio]\ncodecs = [\"PCMU\"]\n",
        account_toml(user, &format!("pw{user}"), "", "udp", 60)
    );
    let mic = format!("--audio-in={}", mic.display());
    let out = format!("--audio-out={}", heard.display());
    Phone::start(&cfg, &[&mic, &out])
}

#[test]
fn call_survives_a_flood_of_invites() {
    let dir = tempfile::tempdir().unwrap();
    let (a_mic, b_mic) = (dir.path().join("a440.wav"), dir.path().join("b1k.wav"));
    common::tone(&a_mic, 440.0, 8000, 5);
    common::tone(&b_mic, 1000.0, 8000, 5);
    let a_heard: PathBuf = dir.path().join("a-heard.wav");
    let b_heard: PathBuf = dir.path().join("b-heard.wav");
    let mut a = phone("1001", &a_mic, &a_heard);
    let mut b = phone("1002", &b_mic, &b_heard);

    // B calls A directly; A answers: the call's audio starts.
    b.send(json!({"cmd": "dial", "to": format!("sip:1001@{}", a.target())}));
    let inc = a.expect("incoming", secs(10));
    a.send(json!({"cmd": "answer"}));
    a.expect("answered", secs(10));
    let media_start = Instant::now();
    b.expect("answered", secs(10));
    std::thread::sleep(secs(2));

    let rss_before = a.rss_kib();
    let mut rss_max = rss_before;
    let (a_cpu0, b_cpu0) = (cpu(a.pid()), cpu(b.pid()));
    let mut sipp_cpu = Duration::ZERO;
    let calls = RATE * FLOOD_SECS;
    let flood_start = Instant::now();
    let mut flood = Flood::start(&a.target(), calls);
    // During the flood: a command every 500 ms (for a call that does not exist), answered by an
    // `error` event from the user agent.
    let mut latencies = Vec::new();
    let mut n = 0;
    while flood.running() && flood_start.elapsed() < secs(u64::from(FLOOD_SECS) + 60) {
        n += 1;
        let id = format!("no-such-call-{n}");
        let t = Instant::now();
        a.send(json!({"cmd": "mute", "call": id}));
        a.expect_where("error", secs(10), |v| {
            v["message"].as_str().is_some_and(|m| m.contains(&id))
        });
        latencies.push(t.elapsed());
        rss_max = rss_max.max(a.rss_kib());
        sipp_cpu = sipp_cpu.max(cpu(flood.child.id()));
        std::thread::sleep(ms(500));
    }
    let flood_end = Instant::now();
    assert!(!flood.running(), "the flood did not end in time");
    let rss_after = a.rss_kib();
    let (a_cpu, b_cpu) = (cpu(a.pid()) - a_cpu0, cpu(b.pid()) - b_cpu0);
    std::thread::sleep(secs(2));

    // The call is still up: B hangs up, A takes the BYE.
    b.send(json!({"cmd": "hangup"}));
    let end_b = b.expect("ended", secs(10));
    assert_eq!(end_b["reason"], "local_hangup", "{end_b}");
    let end_a = a.expect_where("ended", secs(10), |v| v["call"] == inc["call"]);
    assert_eq!(end_a["reason"], "remote_hangup", "{end_a}");
    assert_eq!(a.count("incoming"), 1, "a flood INVITE rang");
    let err = a.stderr();
    assert!(!err.contains("panicked"), "A panicked:\n{err}");
    // The recordings are complete once the phones quit.
    a.send(json!({"cmd": "quit"}));
    b.send(json!({"cmd": "quit"}));
    let _ = a.wait_exit(secs(5));
    let _ = b.wait_exit(secs(5));

    let screen = flood.screen();
    let sent = screen_count(&screen, "INVITE");
    let (busy, overloaded) = (screen_count(&screen, "486"), screen_count(&screen, "503"));
    let (ringing, acks) = (screen_count(&screen, "180"), screen_count(&screen, "ACK"));
    let flood_secs = flood_end.duration_since(flood_start).as_secs_f64();
    let secs_of = |t: Instant| t.duration_since(media_start).as_secs_f64();
    let (from, to) = (secs_of(flood_start) + 0.5, secs_of(flood_end) - 0.5);
    let (a_tone, a_gaps) = audio_during(&a_heard, 1000.0, from, to);
    let (b_tone, b_gaps) = audio_during(&b_heard, 440.0, from, to);
    let ((a_good, a_worst), (b_good, b_worst)) = (summary(&a_tone), summary(&b_tone));
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    println!(
        "flood: {sent} INVITEs in {flood_secs:.1} s ({:.0}/s): {busy} x 486, {overloaded} x 503, \
         {ringing} x 180, {acks} ACKs",
        sent as f64 / flood_secs
    );
    println!(
        "CPU during the flood: A {:.0} %, B {:.0} %, SIPp {:.0} % of a core",
        a_cpu.as_secs_f64() / flood_secs * 100.0,
        b_cpu.as_secs_f64() / flood_secs * 100.0,
        sipp_cpu.as_secs_f64() / flood_secs * 100.0
    );
    println!(
        "A's RSS: {rss_before} KiB before, {rss_after} KiB after, max {rss_max} KiB (growth {} KiB)",
        rss_after as i64 - rss_before as i64
    );
    println!(
        "control: {} commands during the flood, reply latency median {:.1} ms, max {:.1} ms",
        latencies.len(),
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
    println!(
        "audio during the flood ({from:.1}..{to:.1} s of the call): A heard 1 kHz at 10 dB or better in \
         {a_good}/{} s (worst {a_worst:.1} dB), {:.1} % silent frames; B heard 440 Hz in {b_good}/{} s \
         (worst {b_worst:.1} dB), {:.1} % silent frames",
        a_tone.len(),
        a_gaps * 100.0,
        b_tone.len(),
        b_gaps * 100.0
    );
    let db = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" ");
    println!("  A's 1 kHz SNR (dB) per second: {}", db(&a_tone));
    println!("  B's 440 Hz SNR (dB) per second: {}", db(&b_tone));
    let errors = flood.file("errors.log");
    if !errors.trim().is_empty() {
        println!(
            "SIPp errors (first lines):\n{}",
            errors.lines().take(20).collect::<Vec<_>>().join("\n")
        );
    }

    assert_eq!(sent, u64::from(calls), "SIPp sent every INVITE\n{screen}");
    assert_eq!(ringing, 0, "a flood INVITE rang\n{screen}");
    assert!(
        busy + overloaded >= sent * 99 / 100,
        "{busy} + {overloaded} of {sent} INVITEs refused as busy or overloaded\n{screen}"
    );
    // The tone is there, by frequency, through the flood: a second may suffer when the machine
    // is loaded (two cores, SIPp at full rate, other builds), and none may go silent.
    assert!(
        a_good * 10 >= a_tone.len() * 9 && b_good * 10 >= b_tone.len() * 9,
        "the call's audio suffered during the flood: A {a_good}/{}, B {b_good}/{} good seconds",
        a_tone.len(),
        b_tone.len()
    );
    assert!(
        a_gaps < 0.05 && b_gaps < 0.05,
        "gaps in the call's audio during the flood"
    );
    assert!(
        rss_max < rss_before + 10 * 1024,
        "A's memory grew by {} KiB during the flood",
        rss_max - rss_before
    );
    assert!(
        median < ms(100),
        "control replies took {median:?} (median) during the flood"
    );
    assert!(max < secs(2), "a control reply took {max:?} during the flood");
}
