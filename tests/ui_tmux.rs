//! The terminal UI end to end in a real terminal (tmux): a SIPp caller rings the phone, the
//! loopback CRM's record shows in the popup, `a` answers, `x` hangs up, the history row says
//! "answered", `q` quits and the terminal is given back (no alternate screen left). The help
//! overlay and the dial line, driven by keys. An attended transfer by keys: `T`, the
//! colleague's address, Enter, `C`.

mod common;
#[path = "common/tmux.rs"]
mod tmux;

use std::path::Path;
use std::time::Duration;

use common::peers::{Sipp, free_udp_port, wait_bound};
use tmux::Tmux;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Writes the phone's config into `dir` and returns its path.
fn write_config(dir: &Path, listen_port: u16, crm: &str) -> std::path::PathBuf {
    let text = format!(
        r#"[account]
uri = "sip:1001@127.0.0.1"
registrar = ""
listen = "127.0.0.1:{listen_port}"

[audio]
input = "null"
output = "null"

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

#[test]
fn incoming_call_popup_answer_hangup_history_and_quit_in_tmux() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let crm = rt.block_on(common::Crm::start());

    let home = tempfile::Builder::new()
        .prefix("ui-tmux")
        .tempdir()
        .expect("temp dir");
    let port = free_udp_port();
    let config = write_config(home.path(), port, &crm.url());
    let t = Tmux::start(home.path(), 100, 30, &tmux::phone_command(&config));
    let diag = || tmux::phone_log(home.path());

    t.wait_for(
        "the idle screen",
        SECS(15),
        |s| s.contains("No calls") && s.contains(&format!("127.0.0.1:{port}")),
        diag,
    );
    wait_bound("udp", port, SECS(10), "the phone's SIP socket");
    assert_eq!(
        t.display("#{alternate_on}"),
        "1",
        "the UI runs on the alternate screen"
    );

    // "Taro Yamada" <0311112222> calls 0312345678; SIPp waits for the phone's BYE.
    let target = format!("127.0.0.1:{port}");
    let uac = Sipp::spawn(
        "uac_wait_bye.xml",
        &[target.as_str(), "-s", "0312345678", "-timeout", "40s"],
    );

    let screen = t.wait_for(
        "the popup with the CRM's record",
        SECS(15),
        |s| s.contains("Incoming call") && s.contains("ACME 株式会社") && s.contains("CRM name"),
        diag,
    );
    assert!(screen.contains("0311112222"), "{screen}");
    // The display name and the CRM's name are both "Taro Yamada".
    assert!(screen.matches("Taro Yamada").count() >= 2, "{screen}");
    assert!(
        tmux::line_with(&screen, "ringing").is_some_and(|l| l.contains("0311112222")),
        "{screen}"
    );
    let searches = crm.seen_path("/search");
    assert_eq!(searches.len(), 1, "{searches:?}");
    assert_eq!(searches[0].query.as_deref(), Some("tel=0311112222"));

    t.keys(&["a"]);
    let screen = t.wait_for(
        "the call to be active",
        SECS(10),
        |s| tmux::line_with(s, "active").is_some_and(|l| l.contains("0311112222")),
        diag,
    );
    assert!(
        tmux::line_with(&screen, "active").is_some_and(|l| l.contains("ACME 株式会社")),
        "{screen}"
    );

    t.keys(&["x"]);
    let screen = t.wait_for(
        "the history row of the answered call",
        SECS(10),
        |s| tmux::line_with(s, "answered").is_some_and(|l| l.contains("0311112222")),
        diag,
    );
    assert!(tmux::line_with(&screen, "active").is_none(), "{screen}");
    assert!(!screen.contains("Incoming call"), "the popup stays:\n{screen}");
    let r = uac.wait(SECS(15));
    r.assert_ok();
    assert_eq!(r.received("BYE "), 1, "{}", r.report());

    t.keys(&["q"]);
    let screen = t.wait_for(
        "ctiphone to exit",
        SECS(10),
        |s| s.contains("ctiphone-exited-"),
        diag,
    );
    assert!(screen.contains("ctiphone-exited-0"), "{screen}\n{}", diag());
    assert_eq!(
        t.display("#{alternate_on}"),
        "0",
        "the alternate screen is still on after ctiphone exited:\n{screen}"
    );
    // The shell's screen is back: the UI's frame is gone with the alternate screen.
    assert!(!screen.contains("Call history"), "{screen}");
    drop(t);
    drop(rt);
}

#[test]
fn attended_transfer_by_keys_in_tmux() {
    let home = tempfile::Builder::new()
        .prefix("ui-tmux")
        .tempdir()
        .expect("temp dir");
    let port = free_udp_port();
    let config = write_config(home.path(), port, "http://127.0.0.1:9");
    let t = Tmux::start(home.path(), 100, 30, &tmux::phone_command(&config));
    let diag = || tmux::phone_log(home.path());
    t.wait_for("the idle screen", SECS(15), |s| s.contains("No calls"), diag);
    wait_bound("udp", port, SECS(10), "the phone's SIP socket");

    let target = format!("127.0.0.1:{port}");
    let customer = Sipp::spawn(
        "uac_customer_attended.xml",
        &[target.as_str(), "-s", "0312345678", "-timeout", "40s"],
    );
    let colleague = Sipp::spawn("uas_answer.xml", &["-timeout", "40s"]);
    t.wait_for("the ring", SECS(10), |s| s.contains("Incoming call"), diag);
    t.keys(&["a"]);
    t.wait_for(
        "the call to be active",
        SECS(10),
        |s| tmux::line_with(s, "active").is_some_and(|l| l.contains("0311112222")),
        diag,
    );
    // Esc and T apart: together a terminal reads them as Alt+T.
    t.keys(&["Escape"]);
    t.wait_for(
        "the popup closed",
        SECS(5),
        |s| !s.contains("Incoming call"),
        diag,
    );
    t.keys(&["T"]);
    t.keys(&["-l", &colleague.uri("1003")]);
    t.wait_for(
        "the consult line",
        SECS(5),
        |s| s.lines().any(|l| l.starts_with("consult") && l.contains("1003")),
        diag,
    );
    t.keys(&["Enter"]);
    let screen = t.wait_for(
        "the customer on hold and the colleague answered",
        SECS(10),
        |s| {
            tmux::line_with(s, "on hold").is_some_and(|l| l.contains("0311112222"))
                && tmux::line_with(s, "active").is_some_and(|l| l.contains("1003"))
        },
        diag,
    );
    assert!(screen.contains("C complete transfer"), "{screen}");
    t.keys(&["C"]);
    t.wait_for(
        "both calls over",
        SECS(10),
        |s| tmux::line_with(s, "on hold").is_none() && tmux::line_with(s, "active").is_none(),
        diag,
    );
    customer.wait(SECS(10)).assert_ok();
    colleague.wait(SECS(10)).assert_ok();
    t.keys(&["q"]);
    t.wait_for(
        "ctiphone to exit",
        SECS(10),
        |s| s.contains("ctiphone-exited-0"),
        diag,
    );
}

#[test]
fn help_overlay_and_dial_line_in_tmux() {
    let home = tempfile::Builder::new()
        .prefix("ui-tmux")
        .tempdir()
        .expect("temp dir");
    let port = free_udp_port();
    // No CRM in this test: the search access points at a closed port and is never used.
    let config = write_config(home.path(), port, "http://127.0.0.1:9");
    let t = Tmux::start(home.path(), 100, 30, &tmux::phone_command(&config));
    let diag = || tmux::phone_log(home.path());
    t.wait_for("the idle screen", SECS(15), |s| s.contains("No calls"), diag);

    // The help overlay: its box lists each action by its key.
    let help_row = |s: &str| {
        s.lines()
            .any(|l| l.contains("│a ") && l.contains("answer") && !l.contains("x hang"))
    };
    t.keys(&["?"]);
    let screen = t.wait_for(
        "the help overlay",
        SECS(5),
        |s| s.contains("Keys") && s.contains("hang up / reject") && help_row(s),
        diag,
    );
    assert!(screen.contains("dial a number"), "{screen}");
    t.keys(&["Escape"]);
    t.wait_for("the help overlay to close", SECS(5), |s| !help_row(s), diag);
    let screen = t.capture();
    assert!(!screen.contains("hold / resume"), "{screen}");
    assert!(screen.contains("No calls"), "{screen}");

    // The dial line.
    t.keys(&["d"]);
    t.keys(&["-l", "1002"]);
    let screen = t.wait_for(
        "the dial line with 1002",
        SECS(5),
        |s| s.lines().any(|l| l.starts_with("Dial:") && l.contains("1002")),
        diag,
    );
    let line = tmux::line_with(&screen, "1002").unwrap_or_default();
    assert!(line.trim_end().ends_with("1002▏"), "{line:?}");
    // Esc leaves the dial line without dialling; q quits.
    t.keys(&["Escape"]);
    t.wait_for(
        "the key help back in the bottom line",
        SECS(5),
        |s| s.contains("q quit") && !s.contains("1002"),
        diag,
    );
    t.keys(&["q"]);
    let screen = t.wait_for(
        "ctiphone to exit",
        SECS(10),
        |s| s.contains("ctiphone-exited-"),
        diag,
    );
    assert!(screen.contains("ctiphone-exited-0"), "{screen}");
    assert_eq!(t.display("#{alternate_on}"), "0", "{screen}");
}

#[test]
fn a_setting_edited_in_the_ui_is_saved_with_the_comments_kept() {
    let home = tempfile::Builder::new()
        .prefix("ui-tmux")
        .tempdir()
        .expect("temp dir");
    let port = free_udp_port();
    // The documented example, made local: every comment of it must survive the save.
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml")).unwrap();
    let text = example
        .replace("registrar = \"pbx.example\"", "registrar = \"\"")
        .replace(
            "listen = \"0.0.0.0:5060\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace("input = \"\"", "input = \"null\"")
        .replace("output = \"\"", "output = \"null\"")
        .replace("language = \"\"", "language = \"en\"");
    let config = home.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    let t = Tmux::start(home.path(), 100, 30, &tmux::phone_command(&config));
    let diag = || tmux::phone_log(home.path());
    t.wait_for("the idle screen", SECS(15), |s| s.contains("No calls"), diag);
    // Settings → Basic → the fifth field (integration timeout) → 7 → save.
    t.keys(&["s"]);
    t.wait_for(
        "the settings",
        SECS(5),
        |s| s.contains("Integration timeout"),
        diag,
    );
    t.keys(&[
        "Down", "Down", "Down", "Down", "Enter", "BSpace", "BSpace", "BSpace", "BSpace",
    ]);
    t.keys(&["-l", "7"]);
    t.keys(&["Enter", "w"]);
    t.wait_for("the save", SECS(5), |s| s.contains("saved to"), diag);
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(
        saved.lines().any(|l| l.starts_with("timeout_seconds = 7")),
        "{saved}"
    );
    for line in example.lines().filter(|l| l.trim_start().starts_with('#')) {
        assert!(saved.contains(line), "comment lost: {line}");
    }
    // An invalid template is refused, and the file stays as it was.
    t.keys(&["Tab", "Tab", "Tab", "Down", "Enter"]);
    t.keys(&["-l", "{NOPE}"]);
    t.keys(&["Enter", "w"]);
    t.wait_for(
        "the refusal",
        SECS(5),
        |s| s.contains("not saved") && s.contains("{NOPE}"),
        diag,
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        saved,
        "nothing is written when invalid"
    );
    t.keys(&["Escape", "Escape", "q"]);
}

/// The colleagues' lamps in a real terminal, through Kamailio's presence server: the `b`
/// panel shows Sato (1002) idle, then ringing and in a call while a SIPp caller calls them
/// (another ctiphone, answering after a second), then idle again.
#[test]
fn busy_lamps_in_tmux_through_kamailio() {
    let k = common::peers::Kamailio::start_presence();
    let home = tempfile::Builder::new()
        .prefix("ui-tmux")
        .tempdir()
        .expect("temp dir");
    let config = home.path().join("ctiphone.toml");
    std::fs::write(
        &config,
        format!(
            "[account]\nuri = \"sip:1001@{0}\"\nusername = \"1001\"\npassword = \"pw1001\"\n\
             registrar = \"{0}\"\nlisten = \"127.0.0.1:0\"\nexpires = 60\n\
             [audio]\ninput = \"null\"\noutput = \"null\"\n[ui]\nlanguage = \"en\"\n\
             [blf]\nwatch = [{{ number = \"1002\", name = \"Sato\" }}]\n",
            k.addr()
        ),
    )
    .expect("write config");
    let mut callee = common::peers::Phone::start(
        &common::calls::config_with(
            &common::peers::account_toml("1002", "pw1002", &k.addr(), "udp", 60),
            "",
        ),
        &["--auto-answer=1000"],
    );
    callee.expect("registered", SECS(10));
    let t = Tmux::start(home.path(), 100, 30, &tmux::phone_command(&config));
    let diag = || tmux::phone_log(home.path());
    t.wait_for("registered", SECS(15), |s| s.contains("registered"), diag);
    t.keys(&["b"]);
    let lamp = |s: &str, state: &str| {
        tmux::line_with(s, "Sato").is_some_and(|l| l.contains("1002") && l.contains(state))
    };
    t.wait_for("Sato idle in the panel", SECS(10), |s| lamp(s, "idle"), diag);
    let caller = std::thread::spawn({
        let addr = k.addr();
        move || common::peers::sipp("uac_auth_call_bye.xml", &[&addr, "-s", "1002"])
    });
    t.wait_for("Sato ringing", SECS(10), |s| lamp(s, "ringing"), diag);
    t.wait_for("Sato in a call", SECS(10), |s| lamp(s, "in a call"), diag);
    t.wait_for("Sato idle again", SECS(10), |s| lamp(s, "idle"), diag);
    caller.join().expect("sipp thread").assert_ok();
    t.keys(&["Escape"]);
    t.keys(&["q"]);
    t.wait_for(
        "ctiphone to exit",
        SECS(10),
        |s| s.contains("ctiphone-exited-0"),
        diag,
    );
}
