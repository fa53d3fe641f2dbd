//! What `contrib/` installs, checked by the tools that read it: the desktop file
//! (`desktop-file-validate`) and, end to end, a `tel:` link opened with `xdg-open` after
//! `xdg-mime default` made it the handler — the running daemon dials the normalised number
//! to a SIPp UAS; the systemd user unit (`systemd-analyze verify`, with ExecStart pointed at
//! the built binary).

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::peers::Sipp;

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib").join(name)
}

fn tool(name: &str, package: &str) -> Command {
    let found = ["/usr/bin", "/bin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is missing: apt-get install -y {package}"));
    Command::new(found)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_desktop_file_is_valid_and_handles_the_call_links() {
    let file = contrib("ctiphone-open.desktop");
    let o = tool("desktop-file-validate", "desktop-file-utils")
        .arg(&file)
        .output()
        .expect("desktop-file-validate");
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "{}",
        text(&o)
    );
    let body = std::fs::read_to_string(&file).expect("read");
    assert!(body.lines().any(|l| l == "Exec=ctiphone open %u"), "{body}");
    for scheme in ["tel", "callto", "sip", "sips"] {
        assert!(
            body.contains(&format!("x-scheme-handler/{scheme};")),
            "{scheme}: {body}"
        );
    }
}

#[test]
fn the_systemd_user_unit_verifies() {
    let body = std::fs::read_to_string(contrib("ctiphone.service")).expect("read");
    assert!(
        body.contains("ExecStart=%h/.cargo/bin/ctiphone daemon\n"),
        "{body}"
    );
    assert!(body.contains("Restart=on-failure\n"), "{body}");
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("ctiphone.service");
    let built = body.replace("%h/.cargo/bin/ctiphone", env!("CARGO_BIN_EXE_ctiphone"));
    std::fs::write(&unit, built).expect("write");
    let o = tool("systemd-analyze", "systemd")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("verify");
    // A misspelt setting is only a warning to systemd: any word on stderr fails the test.
    assert!(o.status.success() && o.stderr.is_empty(), "{}", text(&o));
}

#[test]
fn a_tel_link_opened_on_the_desktop_dials_on_the_running_phone() {
    let home = tempfile::Builder::new().prefix("xdg").tempdir().expect("tempdir");
    let h = home.path();
    for d in ["bin", "config/ctiphone", "data/applications", "runtime"] {
        std::fs::create_dir_all(h.join(d)).expect("mkdir");
    }
    let _guard = daemon::Guard(h.join("runtime"));
    // `ctiphone` on the PATH, the desktop file where a user installs it, the default config.
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ctiphone"), h.join("bin/ctiphone")).expect("symlink");
    std::fs::copy(
        contrib("ctiphone-open.desktop"),
        h.join("data/applications/ctiphone-open.desktop"),
    )
    .expect("copy");
    let uas = Sipp::spawn("uas_answer.xml", &["-timeout", "30s"]);
    std::fs::write(
        h.join("config/ctiphone/config.toml"),
        format!(
            "[account]\nuri = \"sip:1001@127.0.0.1:{}\"\nregistrar = \"\"\nlisten = \"127.0.0.1:0\"\n\
             [audio]\ninput = \"null\"\noutput = \"null\"\ncodecs = [\"PCMU\"]\nring = false\n",
            uas.port
        ),
    )
    .expect("config");
    let path = format!(
        "{}:{}",
        h.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = |c: &mut Command| {
        c.env("HOME", h)
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("XDG_DATA_HOME", h.join("data"))
            .env("XDG_RUNTIME_DIR", h.join("runtime"))
            .env("PATH", &path)
            // xdg-open's generic mode asks the x-scheme-handler only in a graphical session;
            // nothing here draws on it.
            .env("DISPLAY", ":99")
            .env_remove("XDG_CURRENT_DESKTOP")
            .env_remove("BROWSER");
    };
    let mut d = Command::new(env!("CARGO_BIN_EXE_ctiphone"));
    env(&mut d);
    let mut daemon_child = d
        .arg("daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    daemon::socket(&h.join("runtime"), Duration::from_secs(10));

    let mut m = tool("xdg-mime", "xdg-utils");
    env(&mut m);
    let o = m
        .args(["default", "ctiphone-open.desktop", "x-scheme-handler/tel"])
        .output()
        .expect("xdg-mime");
    assert!(o.status.success(), "{}", text(&o));
    let mut q = tool("xdg-mime", "xdg-utils");
    env(&mut q);
    let o = q
        .args(["query", "default", "x-scheme-handler/tel"])
        .output()
        .expect("xdg-mime");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "ctiphone-open.desktop",
        "{}",
        text(&o)
    );

    let mut open = tool("xdg-open", "xdg-utils");
    env(&mut open);
    let o = open.arg("tel:+81-3-1234-5678").output().expect("xdg-open");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("dialling +81312345678"),
        "{}",
        text(&o)
    );
    // Answered by SIPp; hung up from the command line.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = Command::new(env!("CARGO_BIN_EXE_ctiphone"));
        env(&mut s);
        let o = s.args(["status", "--json"]).output().expect("status");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if v["calls"][0]["state"] == "active" {
            break;
        }
        assert!(Instant::now() < end, "the call was not answered: {}", text(&o));
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut hang = Command::new(env!("CARGO_BIN_EXE_ctiphone"));
    env(&mut hang);
    let o = hang.arg("hangup").output().expect("hangup");
    assert!(o.status.success(), "{}", text(&o));
    let port = uas.port;
    let r = uas.wait(Duration::from_secs(10));
    r.assert_ok();
    let invite = &r.received_msgs("INVITE ")[0];
    assert!(
        invite
            .text
            .starts_with(&format!("INVITE sip:+81312345678@127.0.0.1:{port} ")),
        "{}",
        invite.text
    );
    let _ = daemon_child.kill();
    let _ = daemon_child.wait();
}
