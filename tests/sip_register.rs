//! Registration of `ctiphone headless` with a real Kamailio registrar on 127.0.0.1: digest auth,
//! a wrong password without a retry storm, re-registration after the registrar restarts, and
//! de-registration on quit.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::peers::{Kamailio, Phone, account_toml, secs};

fn phone(k: &Kamailio, password: &str, transport: &str, expires: u32) -> Phone {
    Phone::start(
        &account_toml("1001", password, &k.addr(), transport, expires),
        &[],
    )
}

#[test]
fn right_password_registers() {
    let k = Kamailio::start();
    let mut p = phone(&k, "pw1001", "udp", 60);
    assert_eq!(p.ready["transport"], "udp", "{}", p.ready);
    assert!(p.listen().starts_with("127.0.0.1:"), "{}", p.ready);
    assert_ne!(p.port(), 0);
    let ev = p.expect("registered", secs(10));
    let aor = ev["aor"].as_str().unwrap_or_default();
    assert!(aor.starts_with("sip:1001@127.0.0.1"), "{ev}");
    assert!(ev["expires"].as_u64().is_some_and(|e| e > 0 && e <= 60), "{ev}");
    // Kamailio logs the save after it answers: wait for the line rather than race it.
    k.wait_saved("1001", 1, secs(5));
    // The phone answered the 401 challenge: a REGISTER without and one with credentials.
    assert!(k.requests("REGISTER") >= 2, "{}", k.log());
}

#[test]
fn right_password_registers_over_tcp() {
    let k = Kamailio::start();
    let mut p = phone(&k, "pw1001", "tcp", 60);
    assert_eq!(p.ready["transport"], "tcp", "{}", p.ready);
    p.expect("registered", secs(10));
    let lines = k.request_lines("REGISTER");
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains("src=tcp:")),
        "{lines:?}"
    );
}

#[test]
fn wrong_password_fails_without_a_retry_storm() {
    let k = Kamailio::start();
    let mut p = phone(&k, "wrong-password", "udp", 60);
    let ev = p.expect("registration_failed", secs(10));
    let code = ev["code"].as_u64();
    assert!(matches!(code, Some(401) | Some(403)), "{ev}");
    assert!(ev["reason"].is_string(), "{ev}");
    let registers_at_failure = k.requests("REGISTER");
    // Watch for 5 s more: the phone may retry slowly, never in a loop.
    let later = p.drain(secs(5));
    assert_eq!(
        later.iter().filter(|e| e["event"] == "registered").count(),
        0,
        "{later:?}"
    );
    let failures = p.count("registration_failed");
    assert!(
        failures <= 2,
        "{failures} registration_failed events in ~5 s: {:?}",
        p.seen()
    );
    let registers = k.requests("REGISTER");
    assert!(
        registers <= 4,
        "{registers} REGISTERs reached kamailio in ~5 s ({registers_at_failure} at the first \
         failure): a retry storm\n{}",
        k.log()
    );
    assert_eq!(k.saved("1001"), 0);
}

#[test]
fn registers_again_by_itself_after_the_registrar_restarts() {
    let mut k = Kamailio::start();
    // A short registration (kamailio's minimum is 10 s) so the phone refreshes often.
    let mut p = phone(&k, "pw1001", "udp", 10);
    p.expect("registered", secs(10));

    k.stop();
    std::thread::sleep(secs(3));
    k.restart();
    assert_eq!(k.saved("1001"), 0, "the restarted registrar knows nobody");

    let started = Instant::now();
    p.expect("registered", secs(30));
    assert!(
        k.saved("1001") >= 1,
        "the phone said registered, but the restarted kamailio saved nothing:\n{}",
        k.log()
    );
    eprintln!("re-registered {:?} after the restart", started.elapsed());
}

#[test]
fn quit_unregisters_and_exits_0_within_2_s() {
    let k = Kamailio::start();
    let mut p = phone(&k, "pw1001", "udp", 60);
    p.expect("registered", secs(10));
    let saved = k.saved("1001");

    let t0 = Instant::now();
    p.send(json!({"cmd": "quit"}));
    p.expect("unregistered", secs(2));
    let status = p.wait_exit(secs(2).saturating_sub(t0.elapsed()) + Duration::from_millis(100));
    let status = status.unwrap_or_else(|| panic!("still running 2 s after quit\n{}", p.diagnostics()));
    assert_eq!(status.code(), Some(0), "{}", p.diagnostics());
    assert!(t0.elapsed() < Duration::from_millis(2100), "{:?}", t0.elapsed());
    // The de-registration (Expires 0) reached the registrar and was accepted.
    assert!(k.saved("1001") > saved, "no de-registration saved:\n{}", k.log());
    let lines = k.request_lines("REGISTER");
    assert!(
        lines.iter().any(|l| l.contains("expires=0")) || k.log().contains("expires=0"),
        "no REGISTER with Expires: 0 (or ;expires=0):\n{lines:#?}"
    );
}

#[test]
fn a_bad_command_line_is_an_error_event_not_an_exit() {
    let k = Kamailio::start();
    let mut p = phone(&k, "pw1001", "udp", 60);
    p.expect("registered", secs(10));
    p.send_raw("this is not json");
    p.expect("error", secs(2));
    p.send(json!({"cmd": "no-such-command"}));
    p.expect("error", secs(2));
    assert!(
        p.wait_exit(Duration::from_millis(200)).is_none(),
        "{}",
        p.diagnostics()
    );
    p.send(json!({"cmd": "quit"}));
    assert_eq!(p.wait_exit(secs(3)).and_then(|s| s.code()), Some(0));
}

#[test]
fn sigterm_unregisters_and_exits_0_like_quit() {
    let k = Kamailio::start();
    let mut p = phone(&k, "pw1001", "udp", 60);
    p.expect("registered", secs(10));
    let t0 = Instant::now();
    p.terminate();
    p.expect("unregistered", secs(2));
    let status = p.wait_exit(secs(2));
    let status = status.unwrap_or_else(|| panic!("still running 2 s after SIGTERM\n{}", p.diagnostics()));
    assert_eq!(status.code(), Some(0), "{}", p.diagnostics());
    assert!(t0.elapsed() < Duration::from_millis(2100), "{:?}", t0.elapsed());
}
