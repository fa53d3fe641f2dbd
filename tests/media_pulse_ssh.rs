//! Sound where the headset is (README "Using it over SSH"): two PulseAudio servers on
//! loopback, "the jump host's" — at the default place, `$XDG_RUNTIME_DIR/pulse/native`, where
//! every sound library looks first — and "the agent's PC" (TCP on 127.0.0.1, as `ssh -R`
//! forwards it). The daemon, pointed at the agent's, calls baresip (through Kamailio), which
//! plays a 700 Hz tone: the tone is heard in the agent's sink, checked by frequency, and not
//! in the jump host's; the phone's microphone is the agent's too (its default source is the
//! sink's monitor, so baresip hears the tone come back). The agent's server is killed
//! mid-call: a warning, the call goes on; started again on the same port: the phone says so
//! and the tone is heard there again.
//!
//! Two agents: one with a PulseAudio cookie in their home (a jump host where a sound client
//! once ran; the server is chosen with `[audio] pulse_server`), one with none (the server
//! named by `PULSE_SERVER`).

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::peers::{Baresip, Kamailio, account_toml};
use common::pulse::{Server, samples};
use ctiphone::media::tone::tone_ratio;
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const TONE: f64 = 700.0;

/// How the phone is told where the agent's server is.
#[derive(Clone, Copy, PartialEq)]
enum Told {
    /// `[audio] pulse_server`; the agent has a cookie.
    Config,
    /// `PULSE_SERVER`; the agent has no cookie.
    Environment,
}

/// The two servers, the peers and a running daemon with a front end attached.
struct World {
    home: tempfile::TempDir,
    tmp: tempfile::TempDir,
    jump: Server,
    agent: Server,
    told: Told,
    config: String,
    daemon: Child,
    watcher: Child,
    events: Receiver<Value>,
    baresip: Baresip,
    _guard: daemon::Guard,
    _kamailio: Kamailio,
}

impl World {
    fn start(told: Told) -> World {
        let k = Kamailio::start();
        let baresip = Baresip::start_with_tone(&k, "1002", "PCMU", TONE as u32);
        let tmp = tempfile::Builder::new()
            .prefix("pulse-ssh")
            .tempdir()
            .expect("tempdir");
        let jump = Server::start(&tmp.path().join("jumphost"), "jumphost", None);
        let agent_port = common::peers::free_tcp_port();
        let agent = Server::start(&tmp.path().join("agentpc"), "agent", Some(agent_port));
        let home = tempfile::Builder::new()
            .prefix("phone")
            .tempdir()
            .expect("tempdir");
        let h = home.path();
        for d in ["config", "data", "runtime/pulse"] {
            std::fs::create_dir_all(h.join(d)).expect("mkdir");
        }
        let guard = daemon::Guard(h.join("runtime"));
        // The jump host's server where the sound libraries look when nothing else is said.
        std::os::unix::fs::symlink(jump.dir.join("run/native"), h.join("runtime/pulse/native"))
            .expect("symlink");
        if told == Told::Config {
            // A sound client ran on the jump host once: the agent has a cookie (both test
            // servers take anyone; a cookie lets a client reach the jump host's own server).
            std::fs::create_dir_all(h.join(".config/pulse")).expect("mkdir");
            std::fs::write(h.join(".config/pulse/cookie"), [7u8; 256]).expect("cookie");
        }
        let server_key = match told {
            Told::Config => format!("pulse_server = \"{}\"\n", agent.address()),
            Told::Environment => String::new(),
        };
        let config = h.join("config/phone.toml");
        std::fs::write(
            &config,
            format!(
                "{}\n[audio]\ninput = \"\"\noutput = \"\"\ncodecs = [\"PCMU\"]\nring = false\n{server_key}",
                account_toml("1001", "pw1001", &k.addr(), "udp", 60),
            ),
        )
        .expect("config");
        let mut w = World {
            config: config.display().to_string(),
            home,
            tmp,
            jump,
            agent,
            told,
            daemon: Command::new("true").spawn().expect("true"),
            watcher: Command::new("true").spawn().expect("true"),
            events: std::sync::mpsc::channel().1,
            baresip,
            _guard: guard,
            _kamailio: k,
        };
        w.daemon = w
            .cmd(&["daemon"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon");
        daemon::socket(&w.home.path().join("runtime"), SECS(10));
        w.watcher = w
            .cmd(&["headless", "--attach"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("headless --attach");
        let events = daemon::lines(&mut w.watcher);
        w.events = events;
        let snap = w.expect(|v| v["event"] == "snapshot", "snapshot", SECS(5));
        if snap["snapshot"]["registration"]["state"] != "registered" {
            w.expect(|v| v["event"] == "registered", "registration", SECS(10));
        }
        w
    }

    /// `ctiphone --config … ARGS` as the agent on the jump host: its home and runtime
    /// directory, and `PULSE_SERVER` only when that is how the server is named.
    fn cmd(&self, args: &[&str]) -> Command {
        let h = self.home.path();
        let mut c = Command::new(env!("CARGO_BIN_EXE_ctiphone"));
        c.args(["--config", &self.config])
            .args(args)
            .env("HOME", h)
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("XDG_DATA_HOME", h.join("data"))
            .env("XDG_RUNTIME_DIR", h.join("runtime"))
            .env_remove("PULSE_RUNTIME_PATH")
            .env_remove("PULSE_COOKIE");
        match self.told {
            Told::Environment => c.env("PULSE_SERVER", self.agent.address()),
            Told::Config => c.env_remove("PULSE_SERVER"),
        };
        c
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let o = self.cmd(args).output().expect("ctiphone");
        assert!(
            o.status.success(),
            "ctiphone {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    fn expect(&self, pred: impl Fn(&Value) -> bool, what: &str, timeout: Duration) -> Value {
        daemon::wait_for(&self.events, pred, what, timeout).unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("data/ctiphone/ctiphone.log")).unwrap_or_default()
    }

    /// Dials baresip and waits for the answer; returns the call's id.
    fn call(&self) -> String {
        self.run(&["dial", "1002"]);
        let answered = self.expect(|v| v["event"] == "answered", "the answer", SECS(10));
        std::thread::sleep(SECS(1));
        answered["call"].as_str().unwrap_or_default().to_owned()
    }

    /// Records both sinks for 3 s: the tone must be in the agent's, and nothing in the
    /// jump host's.
    fn tone_at_the_agent_only(&self, name: &str) {
        let (a, j) = (
            self.tmp.path().join(format!("agent-{name}.raw")),
            self.tmp.path().join(format!("jump-{name}.raw")),
        );
        let mut jump_rec = self.jump.record(&j);
        record_for(&self.agent, &a, SECS(3));
        let _ = jump_rec.kill();
        let _ = jump_rec.wait();
        let (ratio, peak) = tone_in(&samples(&a), 8000);
        assert!(
            ratio > 0.6 && peak > 500,
            "{name}: the agent's sink: {TONE} Hz ratio {ratio:.2}, peak {peak}\n{}",
            self.log()
        );
        let (_, jump_peak) = tone_in(&samples(&j), 8000);
        assert!(
            jump_peak < 100,
            "{name}: the jump host's sink played something (peak {jump_peak})\n{}",
            self.log()
        );
    }

    /// Hangs up, and checks the phone's microphone was the agent's: baresip heard its own
    /// tone come back through the agent's sink monitor (the jump host's is silent).
    fn hang_up_and_check_the_microphone(mut self) {
        self.run(&["hangup"]);
        self.expect(|v| v["event"] == "ended", "the end of the call", SECS(5));
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = self.watcher.kill();
        let _ = self.watcher.wait();
        // baresip finishes its dump when its side of the call ends.
        self.baresip.wait_log("terminated", SECS(5));
        std::thread::sleep(Duration::from_millis(300));
        let (heard, rate) = common::wav_channel(&Baresip::heard_wav(self.baresip.dir()), 0);
        let (ratio, peak) = tone_in(&heard, rate);
        assert!(
            ratio > 0.5 && peak > 300,
            "baresip did not hear the agent's microphone (the monitor of the agent's sink): \
             {TONE} Hz ratio {ratio:.2}, peak {peak}"
        );
    }
}

/// How much of the loudest second of `s` is `freq`, and the peak.
fn tone_in(s: &[i16], rate: u32) -> (f64, i16) {
    let peak = s.iter().map(|x| x.saturating_abs()).max().unwrap_or(0);
    let n = rate as usize;
    let best = s
        .chunks(n)
        .filter(|c| c.len() == n)
        .map(|c| tone_ratio(c, rate, TONE))
        .fold(0.0, f64::max);
    (best, peak)
}

fn record_for(server: &Server, file: &Path, d: Duration) {
    let mut parec: Child = server.record(file);
    std::thread::sleep(d);
    let _ = parec.kill();
    let _ = parec.wait();
}

#[test]
fn the_agents_sound_server_carries_the_call_and_comes_back_after_it_went_away() {
    let mut w = World::start(Told::Config);
    let call = w.call();
    w.tone_at_the_agent_only("before");

    // The agent's PC goes away mid-call (the SSH link dropped).
    w.agent.kill();
    let killed = Instant::now();
    let warned = w.expect(
        |v| v["event"] == "warning" && v["message"].as_str().is_some_and(|m| m.contains("went away")),
        "a warning that the sound server went away",
        SECS(5),
    );
    eprintln!(
        "warning {:.2} s after the server was killed",
        killed.elapsed().as_secs_f64()
    );
    std::thread::sleep(SECS(2));
    assert!(w.daemon.try_wait().ok().flatten().is_none(), "the daemon stopped");
    let status: Value = serde_json::from_slice(&w.run(&["status", "--json"]).stdout).unwrap_or_default();
    assert_eq!(
        status["calls"][0]["call"],
        call.as_str(),
        "the call went with the sound server: {status}\n{warned}"
    );
    assert_eq!(status["calls"][0]["state"], "active", "{status}");

    // It comes back on the same port: the phone says so, and the tone is heard there again
    // (and still not on the jump host, though the agent's server was away for a while).
    w.agent.restart();
    let restarted = Instant::now();
    w.expect(
        |v| v["event"] == "warning" && v["message"].as_str().is_some_and(|m| m.contains("is back")),
        "a notice that the sound server is back",
        SECS(10),
    );
    eprintln!(
        "back {:.2} s after the server listened again",
        restarted.elapsed().as_secs_f64()
    );
    std::thread::sleep(SECS(1));
    w.tone_at_the_agent_only("after");
    w.hang_up_and_check_the_microphone();
}

#[test]
fn pulse_server_in_the_environment_reaches_the_agents_pc_without_a_cookie() {
    let w = World::start(Told::Environment);
    w.call();
    w.tone_at_the_agent_only("call");
    w.hang_up_and_check_the_microphone();
}
