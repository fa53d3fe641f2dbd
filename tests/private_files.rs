//! Issue 17, private on a shared host: a phone started under umask 022 (the usual one) makes a
//! recorded call, and nothing it leaves in its data, config, state, runtime and recordings
//! directories lets group or others in (checked during the call, while the history's -wal and
//! -shm and the recording's .part exist, and after it quit); the CTI command it starts still
//! gets umask 022. Files an earlier version left open (0644/0755) are tightened at start, each
//! named in a warning on the event stream and in the log. The terminal UI (in tmux, under
//! umask 022) creates its log and history private too.

mod common;
#[path = "common/tmux.rs"]
mod tmux;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::peers::{Phone, Sipp, free_udp_port, secs};
use common::private::{assert_private, mode};
use tmux::Tmux;

/// Creates `dir` (and its parents) and sets `dir` to `m`.
fn dir_with_mode(dir: &Path, m: u32) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m)).unwrap();
}

/// Writes `text` to `path` and sets it to `m`.
fn file_with_mode(path: &Path, text: &str, m: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap();
}

/// The phone's configuration: auto-recording into `rec`, and a CTI command on each finished
/// recording that writes its own umask to `umask_out`.
fn config(rec: &Path, umask_out: &Path) -> String {
    common::calls::config(&format!(
        "[recording]\nauto = true\ndir = \"{}\"\n\n[cti]\ntarget = \"custom\"\nnumbers = [{{ number = \
         \"0312345678\" }}]\n\n[cti.recorded]\nmethod = \"command\"\ntemplate = \"sh -c 'umask > \
         {}'\"\n",
        rec.display(),
        umask_out.display()
    ))
}

/// Polls until `cond` holds; panics with `what` after `timeout`.
#[track_caller]
fn wait_for(timeout: Duration, what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn warnings(p: &Phone) -> Vec<String> {
    p.seen()
        .iter()
        .filter(|v| v["event"] == "warning")
        .filter_map(|v| v["message"].as_str().map(str::to_owned))
        .collect()
}

fn names(paths: &[PathBuf], suffix: &str) -> bool {
    paths.iter().any(|p| p.to_string_lossy().ends_with(suffix))
}

#[test]
fn a_recorded_call_under_umask_022_leaves_nothing_open_to_other_users() {
    let home = Phone::new_home();
    let h = home.path().to_path_buf();
    // The test's own configuration is private, so that only what the phone creates is judged.
    let conf_dir = h.join("xdg-config/ctiphone");
    dir_with_mode(&conf_dir, 0o700);
    dir_with_mode(&h.join("xdg-config"), 0o700);
    let rec = h.join("recs/calls");
    let umask_out = h.join("child-umask.txt");
    let cfg = conf_dir.join("config.toml");
    file_with_mode(&cfg, &config(&rec, &umask_out), 0o600);
    let roots: Vec<PathBuf> = ["xdg-data", "xdg-config", "xdg-state", "xdg-runtime", "recs"]
        .iter()
        .map(|d| h.join(d))
        .collect();

    let mut p = Phone::start_in(home, &cfg, &["--auto-answer"], 0o022);
    let target = p.target();
    let uac = Sipp::spawn("uac_wait_bye.xml", &[target.as_str(), "-s", "0312345678"]);
    p.expect("answered", secs(5));
    let data = h.join("xdg-data/ctiphone");
    let part = || {
        std::fs::read_dir(&rec)
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().to_string_lossy().ends_with(".wav.part"))
            })
            .unwrap_or(false)
    };
    wait_for(secs(5), "the recording's .part file", part);
    wait_for(secs(5), "the history's -wal file", || {
        data.join("history.sqlite3-wal").exists()
    });
    let during = assert_private(&roots, "during the call");
    for what in [
        "history.sqlite3",
        "history.sqlite3-wal",
        "history.sqlite3-shm",
        "phone.pid",
        ".wav.part",
    ] {
        assert!(
            names(&during, what),
            "no {what} checked during the call: {during:#?}"
        );
    }

    p.send(json!({"cmd": "hangup"}));
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();
    let recorded = p.expect("recorded", secs(5));
    let wav = PathBuf::from(recorded["path"].as_str().unwrap_or_else(|| panic!("{recorded}")));
    wait_for(secs(10), "the CTI command's umask file", || {
        std::fs::read_to_string(&umask_out).is_ok_and(|t| !t.trim().is_empty())
    });
    p.send(json!({"cmd": "quit"}));
    assert!(
        p.wait_exit(secs(10)).is_some_and(|s| s.success()),
        "{}",
        p.diagnostics()
    );

    let after = assert_private(&roots, "after the phone quit");
    assert!(after.contains(&wav), "{} not checked: {after:#?}", wav.display());
    assert_eq!(mode(&wav), 0o600, "{}", wav.display());
    assert_eq!(mode(&rec), 0o700, "the recordings directory the phone created");
    assert_eq!(mode(&h.join("recs")), 0o700, "its parent, created too");
    assert_eq!(mode(&data), 0o700);
    // The programs the phone starts keep the agent's umask: what they make is theirs to share.
    let child = std::fs::read_to_string(&umask_out).unwrap();
    assert_eq!(child.trim(), "0022", "the CTI command's umask");
    assert_eq!(mode(&umask_out), 0o644, "the CTI command's file");
    // Nothing was open before, so there is nothing to warn about.
    let open: Vec<String> = warnings(&p)
        .into_iter()
        .filter(|w| w.contains("open to other users"))
        .collect();
    assert!(open.is_empty(), "{open:#?}");
}

#[test]
fn files_left_open_are_tightened_at_start_and_each_is_named() {
    let home = Phone::new_home();
    let h = home.path().to_path_buf();
    // What an earlier version left under umask 022.
    let data = h.join("xdg-data/ctiphone");
    dir_with_mode(&h.join("xdg-data"), 0o755);
    dir_with_mode(&data, 0o755);
    let history = data.join("history.sqlite3");
    file_with_mode(&history, "", 0o644);
    let log = data.join("ctiphone.log");
    file_with_mode(&log, "an old line naming a customer\n", 0o644);
    let cache = data.join("phonebook-shared-0123456789abcdef.cache");
    file_with_mode(&cache, "name,number\nTaro,0311112222\n", 0o644);
    let rec = h.join("recs");
    dir_with_mode(&rec, 0o755);
    let old_call = rec.join("old-call.wav");
    file_with_mode(&old_call, "RIFF", 0o644);
    let conf_dir = h.join("xdg-config/ctiphone");
    dir_with_mode(&h.join("xdg-config"), 0o755);
    dir_with_mode(&conf_dir, 0o755);
    let cfg = conf_dir.join("config.toml");
    file_with_mode(&cfg, &config(&rec, &h.join("child-umask.txt")), 0o644);
    // A link in the data directory to someone's file: neither followed nor changed.
    let outside = h.join("shared-notes.txt");
    file_with_mode(&outside, "for everyone\n", 0o644);
    std::os::unix::fs::symlink(&outside, data.join("notes-link")).unwrap();

    let mut p = Phone::start_in(home, &cfg, &[], 0o022);
    let got = warnings(&p);
    let stderr = p.stderr();
    let expect = [
        (&data, "0755 -> 0700"),
        (&history, "0644 -> 0600"),
        (&log, "0644 -> 0600"),
        (&cache, "0644 -> 0600"),
        (&rec, "0755 -> 0700"),
        (&old_call, "0644 -> 0600"),
        (&conf_dir, "0755 -> 0700"),
        (&cfg, "0644 -> 0600"),
    ];
    for (path, change) in expect {
        let shown = path.display().to_string();
        let named = |w: &str| w.contains(&format!("{shown} was open")) && w.contains(change);
        assert!(
            got.iter().any(|w| named(w)),
            "no warning event for {shown} ({change}):\n{got:#?}\n{}",
            p.diagnostics()
        );
        assert!(stderr.lines().any(named), "{shown} not in the log:\n{stderr}");
    }
    let open = got.iter().filter(|w| w.contains("open to other users")).count();
    assert_eq!(open, expect.len(), "one warning per path: {got:#?}");
    assert!(
        !got.iter()
            .any(|w| w.contains("shared-notes") || w.contains("notes-link")),
        "{got:#?}"
    );
    assert_eq!(mode(&outside), 0o644, "a link's target is not the phone's");
    let roots = [data.clone(), conf_dir.clone(), rec.clone()];
    assert_private(&roots, "after the start");
    assert_eq!(
        mode(&h.join("xdg-data")),
        0o755,
        "XDG_DATA_HOME itself is not the phone's"
    );
    // The emptied history file is the phone's history now.
    p.send(json!({"cmd": "quit"}));
    assert!(
        p.wait_exit(secs(10)).is_some_and(|s| s.success()),
        "{}",
        p.diagnostics()
    );
    let rows = common::peers::history_list(p.home());
    assert_eq!(rows, Vec::<Value>::new());
    assert_private(&roots, "after the phone quit");
}

#[test]
fn the_terminal_ui_under_umask_022_keeps_its_log_and_history_private() {
    let home = tempfile::Builder::new()
        .prefix("private-tui")
        .tempdir()
        .expect("temp dir");
    let port = free_udp_port();
    let cfg = home.path().join("ctiphone.toml");
    file_with_mode(
        &cfg,
        &format!(
            "[account]\nuri = \"sip:1001@127.0.0.1\"\nregistrar = \"\"\nlisten = \"127.0.0.1:{port}\"\n\n\
             [audio]\ninput = \"null\"\noutput = \"null\"\n\n[ui]\nlanguage = \"en\"\n"
        ),
        0o600,
    );
    let command = format!("umask 022; {}", tmux::phone_command(&cfg));
    let t = Tmux::start(home.path(), 100, 30, &command);
    let diag = || tmux::phone_log(home.path());
    t.wait_for("the idle screen", secs(15), |s| s.contains("No calls"), diag);
    // tmux's XDG directories are the test's; the phone's own directories are below them.
    let roots = [
        home.path().join("data/ctiphone"),
        home.path().join("config/ctiphone"),
    ];
    let running = assert_private(&roots, "while the terminal UI runs");
    for what in [
        "ctiphone.log",
        "history.sqlite3",
        "history.sqlite3-wal",
        "phone.pid",
    ] {
        assert!(
            names(&running, what),
            "no {what} checked: {running:#?}\n{}",
            diag()
        );
    }
    t.keys(&["q"]);
    let screen = t.wait_for(
        "ctiphone to exit",
        secs(10),
        |s| s.contains("ctiphone-exited-"),
        diag,
    );
    assert!(screen.contains("ctiphone-exited-0"), "{screen}\n{}", diag());
    assert_private(&roots, "after the terminal UI quit");
}
