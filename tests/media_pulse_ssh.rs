//! Sound where the headset is (README "Using it over SSH"): two PulseAudio servers on
//! loopback, "the jump host's" (the environment's `PULSE_SERVER`) and "the agent's PC" (TCP on
//! 127.0.0.1, as `ssh -R` forwards it). The daemon, pointed at the agent's with `[audio]
//! pulse_server`, calls baresip (through Kamailio), which plays a 700 Hz tone: the tone is
//! heard in the agent's sink, checked by frequency, and not in the jump host's. The agent's
//! server is killed mid-call: a warning, the call goes on; started again on the same port: the
//! phone says so and the tone is heard there again. Then the call is hung up.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::peers::{Baresip, Kamailio, account_toml};
use common::pulse::{Server, samples};
use ctiphone::media::tone::tone_ratio;
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const TONE: f64 = 700.0;

struct Home(tempfile::TempDir);

impl Home {
    fn path(&self) -> &Path {
        self.0.path()
    }

    fn cmd(&self, args: &[&str], pulse: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ctiphone"));
        c.args(args)
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env("XDG_RUNTIME_DIR", self.path().join("runtime"))
            // The jump host's own server is what the environment names.
            .env("PULSE_SERVER", pulse)
            .env_remove("PULSE_COOKIE");
        c
    }
}

/// How much of the loudest second of a raw recording is `freq`, and its peak.
fn tone_in(file: &Path, freq: f64) -> (f64, i16) {
    let s = samples(file);
    let peak = s.iter().map(|x| x.saturating_abs()).max().unwrap_or(0);
    let best = s
        .chunks(8000)
        .filter(|c| c.len() == 8000)
        .map(|c| tone_ratio(c, 8000, freq))
        .fold(0.0, f64::max);
    (best, peak)
}

fn record_for(server: &Server, file: &Path, d: Duration) {
    let mut parec: Child = server.record(file);
    std::thread::sleep(d);
    let _ = parec.kill();
    let _ = parec.wait();
}

fn expect_event(
    rx: &std::sync::mpsc::Receiver<Value>,
    pred: impl Fn(&Value) -> bool,
    what: &str,
    timeout: Duration,
) -> Value {
    let end = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(v) if pred(&v) => return v,
            Ok(v) => seen.push(v),
            Err(_) => break,
        }
    }
    panic!("no {what} in {timeout:?}; seen: {seen:#?}");
}

#[test]
fn the_agents_sound_server_carries_the_call_and_comes_back_after_it_went_away() {
    let k = Kamailio::start();
    let baresip = Baresip::start_with_tone(&k, "1002", "PCMU", TONE as u32);
    let tmp = tempfile::Builder::new()
        .prefix("pulse-ssh")
        .tempdir()
        .expect("tempdir");
    let jump = Server::start(&tmp.path().join("jumphost"), "jumphost", None);
    let agent_port = common::peers::free_tcp_port();
    let mut agent = Server::start(&tmp.path().join("agentpc"), "agent", Some(agent_port));

    let home = Home(
        tempfile::Builder::new()
            .prefix("phone")
            .tempdir()
            .expect("tempdir"),
    );
    for d in ["config", "data", "runtime"] {
        std::fs::create_dir_all(home.path().join(d)).expect("mkdir");
    }
    let _guard = daemon::Guard(home.path().join("runtime"));
    let config = home.path().join("config/phone.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[audio]\ninput = \"\"\noutput = \"\"\ncodecs = [\"PCMU\"]\nring = false\npulse_server = \"{}\"\n",
            account_toml("1001", "pw1001", &k.addr(), "udp", 60),
            agent.address()
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    let jump_addr = jump.address();
    let mut d = home
        .cmd(&["--config", &config, "daemon"], &jump_addr)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    daemon::socket(&home.path().join("runtime"), SECS(10));
    let mut watcher = home
        .cmd(&["--config", &config, "headless", "--attach"], &jump_addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("headless --attach");
    let out = watcher.stdout.take().expect("stdout");
    let (tx, events) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    let snap = expect_event(&events, |v| v["event"] == "snapshot", "snapshot", SECS(5));
    if snap["snapshot"]["registration"]["state"] != "registered" {
        expect_event(&events, |v| v["event"] == "registered", "registration", SECS(10));
    }
    let log = |home: &Home| {
        std::fs::read_to_string(home.path().join("data/ctiphone/ctiphone.log")).unwrap_or_default()
    };

    let o = home
        .cmd(&["--config", &config, "dial", "1002"], &jump_addr)
        .output()
        .expect("dial");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let answered = expect_event(&events, |v| v["event"] == "answered", "the answer", SECS(10));
    let call = answered["call"].as_str().unwrap_or_default().to_owned();
    std::thread::sleep(SECS(1));

    // The customer's tone is in the agent's PC's sink, not in the jump host's.
    let (a1, j1) = (tmp.path().join("agent1.raw"), tmp.path().join("jump1.raw"));
    let mut jump_rec = jump.record(&j1);
    record_for(&agent, &a1, SECS(3));
    let _ = jump_rec.kill();
    let _ = jump_rec.wait();
    let (ratio, peak) = tone_in(&a1, TONE);
    assert!(
        ratio > 0.6 && peak > 500,
        "the agent's sink: {TONE} Hz ratio {ratio:.2}, peak {peak}\n{}",
        log(&home)
    );
    let (_, jump_peak) = tone_in(&j1, TONE);
    assert!(
        jump_peak < 100,
        "the jump host's sink played something (peak {jump_peak})"
    );

    // The agent's PC goes away mid-call (the SSH link dropped).
    agent.kill();
    let warned = expect_event(
        &events,
        |v| v["event"] == "warning" && v["message"].as_str().is_some_and(|m| m.contains("went away")),
        "a warning that the sound server went away",
        SECS(5),
    );
    std::thread::sleep(SECS(2));
    assert!(d.try_wait().ok().flatten().is_none(), "the daemon stopped");
    let o = home
        .cmd(&["--config", &config, "status", "--json"], &jump_addr)
        .output()
        .expect("status");
    let status: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(
        status["calls"][0]["call"],
        call.as_str(),
        "the call went with the sound server: {status}\n{warned}"
    );
    assert_eq!(status["calls"][0]["state"], "active", "{status}");

    // It comes back on the same port: the phone says so, and the tone is heard there again.
    agent.restart();
    expect_event(
        &events,
        |v| v["event"] == "warning" && v["message"].as_str().is_some_and(|m| m.contains("is back")),
        "a notice that the sound server is back",
        SECS(10),
    );
    std::thread::sleep(SECS(1));
    let a2 = tmp.path().join("agent2.raw");
    record_for(&agent, &a2, SECS(3));
    let (ratio, peak) = tone_in(&a2, TONE);
    assert!(
        ratio > 0.6 && peak > 500,
        "after the server came back: {TONE} Hz ratio {ratio:.2}, peak {peak}\n{}",
        log(&home)
    );

    let o = home
        .cmd(&["--config", &config, "hangup"], &jump_addr)
        .output()
        .expect("hangup");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    expect_event(&events, |v| v["event"] == "ended", "the end of the call", SECS(5));
    let _ = d.kill();
    let _ = d.wait();
    let _ = watcher.kill();
    let _ = watcher.wait();
    drop(baresip);
}
