//! The daemon and what talks to it, with real processes: `ctiphone daemon` for two
//! configurations side by side (one daemon each; a second one for the same configuration is
//! refused, naming the first's PID), `ctiphone dial` and `ctiphone open tel:…` reaching SIPp
//! UASes as INVITEs (the link's number normalised), `hangup` and `status`, a `headless
//! --attach` front end seeing what another front end did, and a connection from another uid
//! refused — by the directory's mode, and by SO_PEERCRED when the test opens the modes.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::peers::Sipp;
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A test HOME: XDG directories below it.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("daemon")
            .tempdir()
            .expect("temp dir");
        for d in ["config", "data", "runtime"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("xdg dir");
        }
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn runtime(&self) -> PathBuf {
        self.path().join("runtime")
    }

    /// `ctiphone ARGS` with this HOME.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ctiphone"));
        c.args(args)
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env("XDG_RUNTIME_DIR", self.runtime())
            .env_remove("CTIPHONE_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run ctiphone")
    }

    /// A configuration calling through to `sipp` (a bare number dials `sip:N@sipp`).
    fn config(&self, name: &str, sipp: &Sipp) -> String {
        let text = format!(
            "[account]\nuri = \"sip:1001@127.0.0.1:{}\"\nregistrar = \"\"\nlisten = \"127.0.0.1:0\"\n\
             [audio]\ninput = \"null\"\noutput = \"null\"\ncodecs = [\"PCMU\"]\nring = false\n",
            sipp.port
        );
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("write config");
        path.display().to_string()
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Starts `ctiphone --config CONFIG daemon` and waits for its socket.
fn start_daemon(home: &Home, config: &str, sockets_before: usize) -> Child {
    let child = home
        .cmd(&["--config", config, "daemon"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let end = Instant::now() + SECS(10);
    while sockets(home).len() <= sockets_before {
        assert!(Instant::now() < end, "the daemon made no socket in 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn sockets(home: &Home) -> Vec<PathBuf> {
    std::fs::read_dir(daemon::dir(&home.runtime()))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                .collect()
        })
        .unwrap_or_default()
}

fn lines(child: &mut Child) -> std::sync::mpsc::Receiver<Value> {
    daemon::lines(child)
}

fn expect_event(rx: &std::sync::mpsc::Receiver<Value>, event: &str, timeout: Duration) -> Value {
    daemon::expect(rx, |v| v["event"] == event, &format!("`{event}` event"), timeout)
}

#[test]
fn remote_commands_reach_the_running_phone_and_one_daemon_runs_per_configuration() {
    let home = Home::new();
    let _guard = daemon::Guard(home.runtime());
    let uas_a = Sipp::spawn("uas_answer.xml", &["-timeout", "40s"]);
    let uas_b = Sipp::spawn("uas_answer.xml", &["-timeout", "40s"]);
    let config_a = home.config("a.toml", &uas_a);
    let config_b = home.config("b.toml", &uas_b);

    // Nothing runs yet: `status` says so (exit 3), `dial` too.
    let o = home.run(&["--config", &config_a, "status"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = home.run(&["--config", &config_a, "dial", "1002"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no phone is running"),
        "{}",
        text(&o)
    );

    let mut daemon_a = start_daemon(&home, &config_a, 0);
    let mut daemon_b = start_daemon(&home, &config_b, 1);
    assert_eq!(sockets(&home).len(), 2, "one socket per configuration");
    let dir_mode = std::fs::metadata(daemon::dir(&home.runtime())).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(dir_mode.ok(), Some(0o700));
    for s in sockets(&home) {
        let mode = std::fs::metadata(&s).map(|m| m.permissions().mode() & 0o777).ok();
        assert_eq!(mode, Some(0o600), "{}", s.display());
    }

    // A second daemon for configuration A is refused, naming the first.
    let o = home.run(&["--config", &config_a, "daemon"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("(PID {})", daemon_a.id())) && err.contains("already running"),
        "{}",
        text(&o)
    );

    // A front end attached to A sees what the command line does.
    let mut watcher = home
        .cmd(&["--config", &config_a, "headless", "--attach"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("headless --attach");
    let events = lines(&mut watcher);
    let snap = expect_event(&events, "snapshot", SECS(5));
    assert_eq!(snap["snapshot"]["pid"], daemon_a.id(), "{snap}");
    assert_eq!(snap["snapshot"]["calls"], serde_json::json!([]), "{snap}");

    let o = home.run(&["--config", &config_a, "dial", "1002"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("dialling 1002 (call "),
        "{}",
        text(&o)
    );
    let out = expect_event(&events, "outgoing", SECS(5));
    assert_eq!(out["to"], "1002", "{out}");
    expect_event(&events, "answered", SECS(5));
    // Either front end may act: the watcher mutes, and everyone's view says so.
    if let Some(stdin) = watcher.stdin.as_mut() {
        writeln!(stdin, "{{\"cmd\":\"mute\"}}").expect("mute");
    }
    let muted = expect_event(&events, "muted", SECS(5));
    assert_eq!(muted["muted"], true, "{muted}");
    let o = home.run(&["--config", &config_a, "status", "--json"]);
    let status: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(status["running"], true, "{}", text(&o));
    assert_eq!(status["calls"][0]["state"], "active", "{status}");
    assert_eq!(status["calls"][0]["muted"], true, "{status}");
    let o = home.run(&["--config", &config_a, "status"]);
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains("calls: 1") && shown.contains("active"),
        "{}",
        text(&o)
    );

    let o = home.run(&["--config", &config_a, "hangup"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    expect_event(&events, "ended", SECS(5));
    let r = uas_a.wait(SECS(10));
    r.assert_ok();
    let invite = &r.received_msgs("INVITE ")[0];
    assert!(
        invite.text.starts_with("INVITE sip:1002@127.0.0.1:"),
        "{}",
        invite.text
    );
    assert_eq!(r.received("BYE "), 1, "{}", r.report());
    // Nothing to hang up now: said, exit 1.
    let o = home.run(&["--config", &config_a, "hangup"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // A click-to-call link dials the normalised number on configuration B's phone; links a
    // web page could abuse are refused before the phone hears of them.
    let o = home.run(&["--config", &config_b, "open", "tel:+81-3-1234-5678"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for bad in [
        "tel:12`id`34",
        "tel:1234%0d%0aBYE",
        "javascript:alert(1)",
        "sip:1002@<x>",
    ] {
        let o = home.run(&["--config", &config_b, "open", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
    }
    std::thread::sleep(SECS(1));
    let o = home.run(&["--config", &config_b, "hangup"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let port_b = uas_b.port;
    let r = uas_b.wait(SECS(10));
    r.assert_ok();
    let invites = r.received_msgs("INVITE ");
    assert_eq!(invites.len(), 1, "{}", r.report());
    assert!(
        invites[0]
            .text
            .starts_with(&format!("INVITE sip:+81312345678@127.0.0.1:{} ", port_b)),
        "{}",
        invites[0].text
    );

    // `quit` from a front end stops that daemon; the other goes on.
    if let Some(mut stdin) = watcher.stdin.take() {
        writeln!(stdin, "{{\"cmd\":\"quit\"}}").expect("quit");
    }
    let end = Instant::now() + SECS(10);
    while daemon_a.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < end, "daemon A still runs after quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(daemon_a.wait().ok().and_then(|s| s.code()), Some(0));
    let _ = watcher.wait();
    let o = home.run(&["--config", &config_a, "status"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = home.run(&["--config", &config_b, "status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // SIGTERM stops B cleanly, its socket removed.
    // SAFETY: our own child.
    unsafe { libc::kill(daemon_b.id() as i32, libc::SIGTERM) };
    assert_eq!(daemon_b.wait().ok().and_then(|s| s.code()), Some(0));
    assert!(sockets(&home).is_empty(), "{:?}", sockets(&home));
}

/// A client run as uid 65534 (`setpriv`): what it reads from the socket, or its error.
fn connect_as_other_user(socket: &Path) -> String {
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_UNIX)\n\
        s.settimeout(5)\n\
        try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n    print('connect-error', e.errno); sys.exit(0)\n\
        data=b''\n\
        try:\n    s.sendall(b'{\"cmd\":\"dial\",\"to\":\"1002\"}\\n')\n    data=s.recv(65536)\nexcept OSError:\n    pass\n\
        print('closed' if not data else 'read %d %r' % (len(data), data[:80]))\n";
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            script,
        ])
        .arg(socket)
        .output()
        .expect("setpriv (util-linux) and python3 are needed");
    assert!(out.status.success(), "setpriv: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn another_user_cannot_use_the_socket() {
    let home = Home::new();
    let _guard = daemon::Guard(home.runtime());
    let uas = Sipp::spawn("uas_answer.xml", &["-timeout", "20s"]);
    let config = home.config("a.toml", &uas);
    let mut d = start_daemon(&home, &config, 0);
    let socket = sockets(&home).remove(0);

    // As made: the directory is the daemon's user's alone.
    let said = connect_as_other_user(&socket);
    assert_eq!(said, format!("connect-error {}", libc::EACCES), "{said}");

    // Opened up by mistake (modes loosened by hand): the kernel lets the connection through,
    // SO_PEERCRED tells the daemon who it is, and it is closed unanswered, its command unread.
    for (p, mode) in [
        (home.path().to_path_buf(), 0o711),
        (home.runtime(), 0o711),
        (daemon::dir(&home.runtime()), 0o711),
        (socket.clone(), 0o666),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let said = connect_as_other_user(&socket);
    assert_eq!(said, "closed", "the daemon answered another user: {said}");
    let log = std::fs::read_to_string(home.path().join("data/ctiphone/ctiphone.log")).unwrap_or_default();
    assert!(log.contains("refused a connection from uid 65534"), "log:\n{log}");
    // The phone never dialled for them, and still serves its own user.
    let o = home.run(&["--config", &config, "status", "--json"]);
    let status: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(status["calls"], serde_json::json!([]), "{}", text(&o));
    let _ = d.kill();
    let _ = d.wait();
}

#[test]
fn bad_lines_on_the_socket_get_an_error_and_the_daemon_goes_on() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let home = Home::new();
    let _guard = daemon::Guard(home.runtime());
    let uas = Sipp::spawn("uas_answer.xml", &["-timeout", "20s"]);
    let config = home.config("a.toml", &uas);
    let mut d = start_daemon(&home, &config, 0);
    let socket = sockets(&home).remove(0);

    let s = UnixStream::connect(&socket).expect("connect");
    s.set_read_timeout(Some(SECS(5))).expect("timeout");
    let mut reader = BufReader::new(s.try_clone().expect("clone"));
    let mut w = s;
    let mut line = String::new();
    reader.read_line(&mut line).expect("snapshot");
    assert!(line.starts_with("{\"event\":\"snapshot\""), "{line}");
    // A second front end must not hear the first one's mistakes.
    let other = UnixStream::connect(&socket).expect("connect");
    other
        .set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let mut other_reader = BufReader::new(other);
    let mut other_line = String::new();
    other_reader.read_line(&mut other_line).expect("snapshot");

    for bad in [
        &b"not json\n"[..],
        b"{\"cmd\":\"explode\"}\n",
        b"{\"cmd\":\"dial\"}\n",
        b"{\"cmd\":\"dial_as\",\"to\":\"1\"}\n",
        b"\xff\xfe\x00garbage\n",
        b"[1,2,3]\n",
    ] {
        w.write_all(bad).expect("write");
        line.clear();
        reader.read_line(&mut line).expect("error line");
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["event"], "error", "{:?} → {line}", String::from_utf8_lossy(bad));
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("bad command")),
            "{line}"
        );
    }
    other_line.clear();
    assert!(
        other_reader.read_line(&mut other_line).is_err() || other_line.is_empty(),
        "another front end got: {other_line}"
    );
    // A line without end (over 64 KiB): an error, and that connection is closed.
    w.write_all(&vec![b'x'; 100 * 1024]).expect("write");
    line.clear();
    reader.read_line(&mut line).expect("error line");
    assert!(line.contains("longer than 64 KiB"), "{line}");
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    // The daemon still serves a well-behaved front end.
    let o = home.run(&["--config", &config, "status", "--json"]);
    let status: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(status["running"], true, "{}", text(&o));
    let _ = d.kill();
    let _ = d.wait();
}

#[test]
fn a_recorded_call_through_the_daemon_under_umask_022_leaves_nothing_open() {
    use std::os::unix::process::CommandExt;
    let home = Home::new();
    let _guard = daemon::Guard(home.runtime());
    // What the test made itself is private, so that only what the phone creates is judged.
    for d in ["", "config", "data", "runtime"] {
        std::fs::set_permissions(home.path().join(d), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let rec = home.path().join("recs/calls");
    let config = home.path().join("config/phone.toml");
    std::fs::write(
        &config,
        "[account]\nuri = \"sip:1001@127.0.0.1\"\nregistrar = \"\"\nlisten = \"127.0.0.1:0\"\n\
         [audio]\ninput = \"null\"\noutput = \"null\"\ncodecs = [\"PCMU\"]\nring = false\n"
            .to_owned()
            + &format!("[recording]\nauto = true\ndir = \"{}\"\n", rec.display()),
    )
    .expect("config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = config.display().to_string();
    let mut cmd = home.cmd(&["--config", &config, "daemon"]);
    // SAFETY: umask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    let mut d = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    let end = Instant::now() + SECS(10);
    while sockets(&home).is_empty() {
        assert!(Instant::now() < end, "no socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut watcher = home
        .cmd(&["--config", &config, "headless", "--attach"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("headless --attach");
    let events = lines(&mut watcher);
    let snap = expect_event(&events, "snapshot", SECS(5));
    let listen = snap["snapshot"]["listen"].as_str().unwrap_or_default().to_owned();
    assert!(listen.starts_with("127.0.0.1:"), "{snap}");
    let uac = Sipp::spawn(
        "uac_wait_bye.xml",
        &[listen.as_str(), "-s", "0312345678", "-timeout", "30s"],
    );
    expect_event(&events, "incoming", SECS(5));
    let o = home.run(&["--config", &config, "answer"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    expect_event(&events, "recording", SECS(5));
    std::thread::sleep(SECS(1));
    let o = home.run(&["--config", &config, "hangup"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let recorded = expect_event(&events, "recorded", SECS(10));
    uac.wait(SECS(10)).assert_ok();
    let roots: Vec<PathBuf> = ["data", "config", "runtime", "recs"]
        .iter()
        .map(|r| home.path().join(r))
        .collect();
    let checked = common::private::assert_private(&roots, "after a recorded call through the daemon");
    let wav = PathBuf::from(recorded["path"].as_str().unwrap_or_default());
    for must in [
        wav.clone(),
        home.path().join("data/ctiphone/history.sqlite3"),
        sockets(&home).remove(0),
    ] {
        assert!(
            checked.contains(&must),
            "{} was not checked: {checked:#?}",
            must.display()
        );
    }
    if let Some(stdin) = watcher.stdin.as_mut() {
        writeln!(stdin, "{{\"cmd\":\"quit\"}}").expect("quit");
    }
    assert_eq!(d.wait().ok().and_then(|s| s.code()), Some(0));
    let _ = watcher.wait();
    common::private::assert_private(&roots, "after the daemon stopped");
}
