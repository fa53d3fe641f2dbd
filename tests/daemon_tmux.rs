//! Calls survive the terminal: the TUI, attached to the daemon it started, answers a SIPp
//! call whose customer record came from the loopback CRM; the terminal is killed (tmux's
//! server closes the pane: SIGHUP, as a dropped SSH link does). No BYE is sent, the phone's
//! RTP keeps flowing for 10 s, the call's history row stays open. A new terminal runs
//! `ctiphone` again: it attaches, shows the call with its CRM data and timer, hangs it up
//! (BYE), and `Q` stops the daemon.

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/tmux.rs"]
mod tmux;

use std::path::Path;
use std::time::{Duration, Instant};

use common::peers::{Sipp, free_udp_port, wait_bound};
use common::rtp::RtpPeer;
use tmux::Tmux;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn write_config(dir: &Path, listen_port: u16, crm: &str) -> std::path::PathBuf {
    let text = format!(
        r#"[account]
uri = "sip:1001@127.0.0.1"
registrar = ""
listen = "127.0.0.1:{listen_port}"

[audio]
input = "null"
output = "null"
codecs = ["PCMU"]
ring = false

[ui]
language = "en"

[cti]
target = "custom"
numbers = [{{ number = "0312345678" }}]

[cti.search]
method = "get"
template = "{crm}/search?tel={{TEL}}"
captures = {{ COMPANY = "json:/company", NAME = "json:/name", EXT_ID = "json:/id" }}
"#
    );
    let path = dir.join("ctiphone.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `ctiphone --config FILE` (attached: the daemon is started when none runs).
fn attached_command(config: &Path) -> String {
    format!(
        "'{}' --config '{}'; echo ctiphone-exited-$?; sleep 30",
        env!("CARGO_BIN_EXE_ctiphone"),
        config.display()
    )
}

/// The history rows of the home's database, as `ctiphone history list --json` prints them.
fn history(home: &Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ctiphone"))
        .args(["history", "list", "--json"])
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .output()
        .expect("history list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_call_survives_the_terminal_and_is_hung_up_from_a_new_one() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let crm = rt.block_on(common::Crm::start());
    let home = tempfile::Builder::new()
        .prefix("daemon-tmux")
        .tempdir()
        .expect("temp dir");
    let runtime = home.path().join("runtime");
    let _guard = daemon::Guard(runtime.clone());
    let port = free_udp_port();
    let config = write_config(home.path(), port, &crm.url());
    let diag = || tmux::phone_log(home.path());

    let first = Tmux::start(home.path(), 100, 30, &attached_command(&config));
    first.wait_for(
        "the idle screen",
        SECS(20),
        |s| s.contains("No calls") && s.contains(&format!("127.0.0.1:{port}")),
        diag,
    );
    wait_bound("udp", port, SECS(10), "the daemon's SIP socket");
    let daemons = daemon::pids(&runtime);
    assert_eq!(daemons.len(), 1, "one daemon started by the TUI: {daemons:?}");
    let daemon_pid = daemons[0];
    let ui_pid: i32 = first.display("#{pane_pid}").parse().expect("pane pid");

    // The customer calls; their audio goes to the test's RTP socket.
    let media = RtpPeer::bind();
    let rtp_port = media.port().to_string();
    let target = format!("127.0.0.1:{port}");
    let mut uac = Sipp::spawn(
        "uac_wait_bye_rtp.xml",
        &[
            target.as_str(),
            "-s",
            "0312345678",
            "-key",
            "rtp_port",
            &rtp_port,
            "-timeout",
            "90s",
        ],
    );
    first.wait_for(
        "the popup with the CRM's record",
        SECS(15),
        |s| s.contains("Incoming call") && s.contains("ACME 株式会社"),
        diag,
    );
    let answer_key = Instant::now();
    first.keys(&["a"]);
    first.wait_for(
        "the call to be active",
        SECS(10),
        |s| tmux::line_with(s, "active").is_some_and(|l| l.contains("0311112222")),
        diag,
    );
    let seen_active = Instant::now();

    // The terminal goes: tmux's server closes the pane's terminal and hangs it up.
    let killed = Instant::now();
    let _ = first.run(&["kill-server"]);
    drop(first);
    let end = Instant::now() + SECS(5);
    while daemon::alive(ui_pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !daemon::alive(ui_pid),
        "the UI's shell still runs after its terminal went"
    );
    assert!(
        daemon::alive(daemon_pid),
        "the daemon went with the terminal\n{}",
        diag()
    );
    std::thread::sleep(SECS(11));
    let flowed = media.count_between(killed + SECS(1), killed + SECS(11));
    assert!(
        flowed >= 400,
        "{flowed} RTP packets from the phone in the 10 s after the terminal went (50 a second expected)\n{}",
        diag()
    );
    assert!(
        uac.running(),
        "SIPp ended: the call was hung up with the terminal\n{}",
        diag()
    );
    let rows = history(home.path());
    assert!(
        rows.iter()
            .any(|r| r["state"] == "open" && r["tel"] == "0311112222"),
        "the call's history row is not open: {rows:?}"
    );

    // A new terminal: `ctiphone` attaches to the same daemon and shows the live call.
    let second = Tmux::start(home.path(), 100, 30, &attached_command(&config));
    let screen = second.wait_for(
        "the live call with its CRM data after attaching",
        SECS(15),
        |s| {
            tmux::line_with(s, "active")
                .is_some_and(|l| l.contains("0311112222") && l.contains("ACME 株式会社"))
        },
        diag,
    );
    // Its timer went on while no terminal showed it: it reads the time since the call was seen
    // active (less a second for the screen's refresh and one for the display's rounding down),
    // and at least 10 s (the 11 s the test waited with no terminal, less that refresh), and
    // never more than the time since the answer key.
    let since_active = seen_active.elapsed().as_secs();
    let since_key = answer_key.elapsed().as_secs();
    let line = tmux::line_with(&screen, "active").unwrap_or_default().to_owned();
    let timer = line
        .split_whitespace()
        .find(|w| w.len() >= 4 && w.contains(':') && w.chars().all(|c| c.is_ascii_digit() || c == ':'))
        .unwrap_or_default()
        .to_owned();
    let secs: u64 = timer.rsplit(':').next().and_then(|s| s.parse().ok()).unwrap_or(0)
        + timer
            .split(':')
            .rev()
            .nth(1)
            .and_then(|m| m.parse::<u64>().ok())
            .unwrap_or(0)
            * 60;
    let lowest = since_active.saturating_sub(2).max(10);
    assert!(
        (lowest..=since_key + 1).contains(&secs),
        "the call's timer reads `{timer}` after attaching, {since_active} s after the call was \
         seen active ({lowest}..={} expected):\n{screen}",
        since_key + 1
    );
    assert_eq!(
        daemon::pids(&runtime),
        vec![daemon_pid],
        "a second daemon was started"
    );

    second.keys(&["x"]);
    second.wait_for(
        "the history row of the answered call",
        SECS(10),
        |s| tmux::line_with(s, "answered").is_some_and(|l| l.contains("0311112222")),
        diag,
    );
    let r = uac.wait(SECS(15));
    r.assert_ok();
    assert_eq!(r.received("BYE "), 1, "{}", r.report());

    // `Q` and `y` stop the daemon; the UI says so and exits.
    second.keys(&["Q"]);
    second.wait_for(
        "the stop confirmation",
        SECS(5),
        |s| s.contains("Stop the phone?"),
        diag,
    );
    second.keys(&["y"]);
    let screen = second.wait_for(
        "ctiphone to exit",
        SECS(15),
        |s| s.contains("ctiphone-exited-"),
        diag,
    );
    assert!(screen.contains("ctiphone-exited-0"), "{screen}");
    assert!(screen.contains("has stopped"), "{screen}");
    let end = Instant::now() + SECS(5);
    while daemon::alive(daemon_pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!daemon::alive(daemon_pid), "the daemon still runs after Q");
    let left: Vec<_> = std::fs::read_dir(daemon::dir(&runtime))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "the socket stays: {left:?}");
    drop(rt);
}
