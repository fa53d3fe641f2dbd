//! Network faults on 127.0.0.1, and the phone recovering by itself, saying so in its events:
//!
//! - the registrar (Kamailio, TCP) down when the phone starts: `registration_failed` events
//!   with a growing backoff, then `registered` on its own once Kamailio is up; over UDP the
//!   same, the failure said when the REGISTER transaction times out (32 s);
//! - Kamailio restarted mid-shift (TCP: the connection is reset, the new Kamailio knows
//!   nobody): a warning, registered again at once, calls through it work;
//! - Kamailio restarted during a call through it (every TCP connection reset): the call goes
//!   on and ends normally, the phone registers again, the next call works;
//! - a direct TCP caller (sipp `-t t1`) killed during the call: the phone notices, ends the
//!   call it cannot reach any more, and the next call works.
//!
//! Recovery times are printed.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::peers::{Kamailio, Phone, Sipp, account_toml, free_port_both, is_bound, ms, secs};

fn audio() -> &'static str {
    "\n[audio]\ninput = \"null\"\noutput = \"null\"\n"
}

/// A phone registering as `user` over TCP with the registrar at `registrar`, answering every
/// call.
fn tcp_phone(user: &str, registrar: &str) -> Phone {
    let cfg = format!(
        "{}{}",
        account_toml(user, &format!("pw{user}"), registrar, "tcp", 60),
        audio()
    );
    Phone::start(&cfg, &["--auto-answer"])
}

/// Every event within `window`, stamped with its arrival.
fn stamped(p: &mut Phone, until: impl Fn(&Value) -> bool, window: Duration) -> Vec<(Instant, Value)> {
    let end = Instant::now() + window;
    let mut out = Vec::new();
    while Instant::now() < end {
        for e in p.drain(ms(5)) {
            let stop = until(&e);
            out.push((Instant::now(), e));
            if stop {
                return out;
            }
        }
    }
    out
}

/// A call through Kamailio from sipp (user 1001, authenticated) to `user`, which must succeed.
fn call_through(k: &Kamailio, user: &str) {
    let r = common::peers::sipp("uac_auth_call_bye.xml", &[k.addr().as_str(), "-s", user]);
    r.assert_ok();
}

#[test]
fn registrar_down_at_start_then_up_registers_by_itself_with_backoff() {
    let port = free_port_both();
    assert!(!is_bound("tcp", port), "port {port} should be free");
    let t0 = Instant::now();
    let mut p = tcp_phone("1002", &format!("127.0.0.1:{port}"));
    // Nothing listens: connections are refused, each attempt fails at once and is retried
    // after a growing pause.
    let early = stamped(&mut p, |_| false, secs(5));
    let failures: Vec<f64> = early
        .iter()
        .filter(|(_, e)| e["event"] == "registration_failed")
        .map(|(t, _)| (*t - t0).as_secs_f64())
        .collect();
    assert!(
        early.iter().all(|(_, e)| e["event"] != "registered"),
        "registered with no registrar: {early:?}"
    );
    assert!(
        failures.len() >= 2,
        "expected 2+ registration_failed in 5 s: {early:?}"
    );
    assert!(failures.len() <= 4, "a retry storm: {failures:?}");
    let gaps: Vec<f64> = failures.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= 1.5,
        "retried after {:.2} s: no backoff ({failures:?})",
        gaps[0]
    );
    if gaps.len() > 1 {
        assert!(gaps[1] >= gaps[0] * 1.5, "the backoff does not grow: {gaps:?}");
    }
    let first = early
        .iter()
        .find(|(_, e)| e["event"] == "registration_failed")
        .unwrap();
    assert!(
        first.1["reason"].as_str().is_some_and(|r| r.contains("refused")),
        "{}",
        first.1
    );

    let k = Kamailio::start_on(port);
    let up = Instant::now();
    let later = stamped(&mut p, |e| e["event"] == "registered", secs(20));
    let registered = later
        .iter()
        .find(|(_, e)| e["event"] == "registered")
        .unwrap_or_else(|| panic!("not registered within 20 s of kamailio up\n{}", p.diagnostics()));
    let took = registered.0 - up;
    eprintln!(
        "registration_failed at {failures:.2?} s (gaps {gaps:.2?} s); kamailio up at {:.2} s; \
         registered {took:.2?} after it came up",
        (up - t0).as_secs_f64()
    );
    assert!(k.saved("1002") >= 1, "{}", k.log());
    // The next backoff step at most (the gaps so far doubled), plus a margin.
    let bound = gaps.last().copied().unwrap_or(2.0) * 2.0 + 2.0;
    assert!(
        took.as_secs_f64() <= bound,
        "registered {took:?} after kamailio came up (bound {bound} s)"
    );
    call_through(&k, "1002");
}

/// Restarts Kamailio while watching the phone: stops it, collects the phone's events for
/// `down`, starts it again, then collects them until the phone registered. Returns the events
/// (stamped), when Kamailio stopped and when it was up again.
fn restart_watching(
    k: &mut Kamailio,
    p: &mut Phone,
    down: Duration,
) -> (Vec<(Instant, Value)>, Instant, Instant) {
    let stopped = Instant::now();
    k.stop();
    let mut events = stamped(p, |_| false, down);
    k.restart();
    let up = Instant::now();
    assert_eq!(k.saved("1002"), 0, "the restarted registrar knows nobody");
    events.extend(stamped(p, |e| e["event"] == "registered", secs(10)));
    (events, stopped, up)
}

/// The first event named `name` whose text holds `needle` (any string field).
fn find<'a>(events: &'a [(Instant, Value)], name: &str, needle: &str) -> Option<&'a (Instant, Value)> {
    events.iter().find(|(_, e)| {
        e["event"] == name
            && (needle.is_empty()
                || e.as_object()
                    .is_some_and(|o| o.values().any(|v| v.as_str().is_some_and(|s| s.contains(needle)))))
    })
}

#[test]
fn registrar_down_at_start_over_udp_fails_after_timer_f_then_registers_by_itself() {
    let port = free_port_both();
    let t0 = Instant::now();
    let cfg = format!(
        "{}{}",
        account_toml("1002", "pw1002", &format!("127.0.0.1:{port}"), "udp", 60),
        audio()
    );
    let mut p = Phone::start(&cfg, &[]);
    // Over UDP nothing says the registrar is not there: the REGISTER is retransmitted until
    // its transaction times out (Timer F, 64*T1 = 32 s), then the failure is said.
    let failed = p.expect("registration_failed", secs(40));
    let failed_at = t0.elapsed();
    assert_eq!(failed["code"], 408, "{failed}");
    assert!(failed_at >= secs(30), "{failed_at:?}");
    let k = Kamailio::start_on(port);
    let up = Instant::now();
    p.expect("registered", secs(10));
    eprintln!(
        "UDP registrar down at start: registration_failed ({}) {failed_at:.1?} after the start; \
         registered {:?} after kamailio came up",
        failed["reason"],
        up.elapsed()
    );
    assert!(k.saved("1002") >= 1, "{}", k.log());
}

#[test]
fn kamailio_restarted_mid_shift_the_phone_registers_again_and_says_so() {
    let mut k = Kamailio::start();
    let mut p = tcp_phone("1002", &k.addr());
    p.expect("registered", secs(10));
    call_through(&k, "1002");

    let (events, stopped, up) = restart_watching(&mut k, &mut p, secs(1));
    let warning = find(&events, "warning", "registering again").unwrap_or_else(|| {
        panic!(
            "no warning about the lost registrar connection\n{}",
            p.diagnostics()
        )
    });
    let registered = find(&events, "registered", "")
        .unwrap_or_else(|| panic!("not registered again within 10 s\n{}", p.diagnostics()));
    let failed = find(&events, "registration_failed", "");
    eprintln!(
        "kamailio restarted mid-shift: warning {} {:?} after it stopped; {}; registered again \
         {:?} after it was up",
        warning.1["message"],
        warning.0 - stopped,
        failed.map_or("no registration_failed".to_owned(), |f| format!(
            "registration_failed ({}) while it was down",
            f.1["reason"]
        )),
        registered.0 - up
    );
    assert!(warning.0 - stopped < secs(1), "{:?}", warning.0 - stopped);
    assert!(registered.0 - up < secs(3), "{:?}", registered.0 - up);
    k.wait_saved("1002", 1, secs(2));
    call_through(&k, "1002");
}

#[test]
fn tcp_connections_reset_during_a_call_through_kamailio() {
    let mut k = Kamailio::start();
    let mut p = tcp_phone("1002", &k.addr());
    p.expect("registered", secs(10));
    let uac = Sipp::spawn("uac_auth_call_wait_bye.xml", &[k.addr().as_str(), "-s", "1002"]);
    let answered = p.expect("answered", secs(10));
    let call = answered["call"].as_str().unwrap().to_owned();
    // The call is up at both ends: the caller has its 200 and ACKed it (one ACK for the 407,
    // one for the 200).
    let end = Instant::now() + secs(5);
    while uac.trace_now().sent("ACK ") < 2 {
        assert!(
            Instant::now() < end,
            "no ACK for the 200\n{}",
            uac.trace_now().report()
        );
        std::thread::sleep(ms(20));
    }
    std::thread::sleep(ms(100));

    // Every connection of the call and of the registration is reset.
    let (events, stopped, up) = restart_watching(&mut k, &mut p, secs(1));
    let reg_warning = find(&events, "warning", "registering again")
        .unwrap_or_else(|| panic!("no warning about the registrar connection\n{}", p.diagnostics()));
    let call_warning = find(&events, "warning", &call)
        .unwrap_or_else(|| panic!("no warning about the call's connection\n{}", p.diagnostics()));
    let registered = find(&events, "registered", "")
        .unwrap_or_else(|| panic!("not registered again within 10 s\n{}", p.diagnostics()));
    assert!(find(&events, "ended", "").is_none(), "the call ended: {events:?}");
    // The call goes on: the agent hangs up, the BYE reaches the caller over new connections.
    p.send(serde_json::json!({"cmd": "hangup"}));
    let ended = p.expect_where("ended", secs(10), |e| e["call"] == call.as_str());
    assert_eq!(ended["reason"], "local_hangup", "{ended}");
    uac.wait(secs(10)).assert_ok();
    eprintln!(
        "kamailio restarted during a call: {} and {} {:?} after it stopped; registered again \
         {:?} after it was up; the call went on and the agent's BYE reached the caller",
        reg_warning.1["message"],
        call_warning.1["message"],
        reg_warning.0 - stopped,
        registered.0 - up
    );
    assert!(registered.0 - up < secs(3), "{:?}", registered.0 - up);
    // The next call through the restarted Kamailio works.
    k.wait_saved("1002", 1, secs(2));
    call_through(&k, "1002");
    assert!(p.alive());
}

#[test]
fn a_direct_tcp_caller_killed_during_the_call_the_phone_recovers() {
    let cfg = format!("{}{}", account_toml("1001", "pw1001", "", "tcp", 60), audio());
    let mut p = Phone::start(&cfg, &["--auto-answer"]);
    let target = p.target();
    let mut uac = Sipp::spawn(
        "uac_wait_bye.xml",
        &[target.as_str(), "-t", "t1", "-s", "0312345678"],
    );
    let answered = p.expect("answered", secs(10));
    let call = answered["call"].as_str().unwrap().to_owned();

    // The caller crashes: its TCP connection goes, nothing answers at its address any more.
    uac.kill9();
    let killed = Instant::now();
    let ended = p.expect_where("ended", secs(10), |e| e["call"] == call.as_str());
    let took = killed.elapsed();
    let warning = p
        .seen()
        .iter()
        .find(|e| e["event"] == "warning" && e["message"].as_str().is_some_and(|m| m.contains(&call)))
        .cloned()
        .unwrap_or_else(|| panic!("no warning naming the call\n{}", p.diagnostics()));
    eprintln!(
        "direct TCP caller killed: the phone ended the call {took:?} after ({}), warning {}",
        ended["reason"], warning["message"]
    );
    assert_eq!(ended["reason"], "failed", "{ended}");
    assert!(took < secs(2), "{took:?}");

    // The next call works.
    let r = common::peers::sipp(
        "uac_call_bye.xml",
        &[target.as_str(), "-t", "t1", "-s", "0312345678"],
    );
    r.assert_ok();
    p.expect("answered", secs(5));
    assert!(p.alive());
}
