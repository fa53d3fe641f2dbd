//! The call history and the contacts pane end to end in a real terminal (tmux): after a
//! missed and an answered call, `f` filters the list by result, `o` runs the click access
//! again for the past call with the CRM values stored for it (HIS-2: the recorded argv has
//! them, and the CRM is not searched again), `g` jumps to a date, and the contacts pane adds
//! an entry that `ctiphone phonebook lookup` then finds under the other number form.

mod common;
#[path = "common/tmux.rs"]
mod tmux;

use std::path::Path;
use std::time::Duration;

use common::peers::{Sipp, free_udp_port, wait_bound};
use tmux::Tmux;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn write_config(dir: &Path, port: u16, crm: &str, out: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"[account]
uri = "sip:1001@127.0.0.1"
registrar = ""
listen = "127.0.0.1:{port}"

[audio]
input = "null"
output = "null"

[ui]
language = "en"

[phonebook]
country_code = "81"

[cti]
target = "custom"
numbers = [{{ number = "0312345678" }}]

[cti.search]
method = "get"
template = "{crm}/search?tel={{TEL}}"
captures = {{ COMPANY = "json:/company", NAME = "json:/name", EXT_ID = "json:/id" }}

[cti.click]
method = "command"
template = "python3 {recorder} {out} {{TEL}} {{NAME}} {{COMPANY}} {{RESULT}}"
"#,
        recorder = common::recorder().display(),
        out = out.display(),
    );
    let path = dir.join("ctiphone.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn history_filter_reclick_jump_and_contacts_in_tmux() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let crm = rt.block_on(common::Crm::start());
    let home = tempfile::Builder::new()
        .prefix("ui-hist")
        .tempdir()
        .expect("temp dir");
    let out = home.path().join("clicks.jsonl");
    let port = free_udp_port();
    let config = write_config(home.path(), port, &crm.url(), &out);
    let cmd = tmux::phone_command(&config);
    let t = Tmux::start(home.path(), 100, 30, &cmd);
    let diag = || std::fs::read_to_string(home.path().join("data/ctiphone/ctiphone.log")).unwrap_or_default();
    t.wait_for("the idle screen", SECS(15), |s| s.contains("No calls"), diag);
    wait_bound("udp", port, SECS(10), "the phone's SIP socket");
    let target = format!("127.0.0.1:{port}");

    // A missed call (the caller gives up), then an answered one.
    Sipp::spawn("uac_cancel.xml", &[target.as_str(), "-s", "0312345678"])
        .wait(SECS(15))
        .assert_ok();
    t.wait_for(
        "the missed call's row",
        SECS(10),
        |s| tmux::line_with(s, "missed").is_some(),
        diag,
    );
    let uac = Sipp::spawn(
        "uac_wait_bye.xml",
        &[target.as_str(), "-s", "0312345678", "-timeout", "40s"],
    );
    t.wait_for(
        "the second call to ring",
        SECS(15),
        |s| s.contains("Incoming call") && tmux::line_with(s, "ringing").is_some(),
        diag,
    );
    t.keys(&["a"]);
    t.wait_for(
        "the active call",
        SECS(10),
        |s| tmux::line_with(s, "active").is_some(),
        diag,
    );
    t.keys(&["x"]);
    t.wait_for(
        "the answered row",
        SECS(10),
        |s| tmux::line_with(s, "answered").is_some(),
        diag,
    );
    uac.wait(SECS(15)).assert_ok();
    assert_eq!(crm.seen_path("/search").len(), 2);

    // `f`: answered calls only.
    t.keys(&["f"]);
    let screen = t.wait_for(
        "the list filtered to answered calls",
        SECS(10),
        |s| s.contains("result: answered") && tmux::line_with(s, "missed").is_none(),
        diag,
    );
    assert!(
        screen
            .lines()
            .any(|l| l.contains("answered") && l.contains("0311112222")),
        "{screen}"
    );

    // `o` on the answered row: the click access with the stored CRM values, no new search.
    t.keys(&["o"]);
    let deadline = std::time::Instant::now() + SECS(10);
    let recorded = loop {
        let r = common::recorded(&out);
        if !r.is_empty() || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(recorded.len(), 1, "{}", diag());
    let argv: Vec<String> = recorded[0].0.clone();
    assert_eq!(
        argv,
        ["0311112222", "Taro Yamada", "ACME 株式会社", "answered"],
        "{}",
        diag()
    );
    assert_eq!(
        crm.seen_path("/search").len(),
        2,
        "a past call is not searched again"
    );

    // `g`: a day long before these calls shows none of them.
    t.keys(&["g"]);
    t.keys(&["2", "0", "0", "0", "-", "0", "1", "-", "0", "1", "Enter"]);
    t.wait_for(
        "an empty list up to 2000-01-01",
        SECS(10),
        |s| s.contains("until 2000-01-01") && s.contains("No calls"),
        diag,
    );

    // The contacts pane: a new entry, saved to the local phonebook.
    t.keys(&["c"]);
    t.wait_for("the contacts pane", SECS(10), |s| s.contains("Search:"), diag);
    t.keys(&["C-n"]);
    t.wait_for("the form", SECS(10), |s| s.contains("New contact"), diag);
    t.keys(&[
        "H", "a", "n", "a", "k", "o", "Tab", "+", "8", "1", " ", "3", "-", "1", "2", "3", "4", "-", "5", "6",
        "7", "8", "Enter",
    ]);
    let screen = t.wait_for(
        "the saved contact",
        SECS(10),
        |s| s.contains("contact saved"),
        diag,
    );
    assert!(
        tmux::line_with(&screen, "Hanako").is_some_and(|l| l.contains("+81 3-1234-5678")),
        "{screen}"
    );
    t.keys(&["Escape"]);
    let lookup = std::process::Command::new(env!("CARGO_BIN_EXE_ctiphone"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "phonebook",
            "lookup",
            "03-1234-5678",
        ])
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .output()
        .expect("ctiphone phonebook lookup");
    assert!(
        String::from_utf8_lossy(&lookup.stdout).starts_with("Hanako  (local"),
        "{lookup:?}"
    );

    t.keys(&["q"]);
    t.wait_for(
        "ctiphone to exit",
        SECS(10),
        |s| s.contains("ctiphone-exited-0"),
        diag,
    );
    drop(t);
    drop(rt);
}
