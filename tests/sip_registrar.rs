//! Registration corner cases of `ctiphone headless` on 127.0.0.1: a registrar (SIPp) that
//! answers 423 Interval Too Brief, and a registrar (Kamailio) that is down when the phone
//! starts and comes up later.

mod common;

use std::time::Instant;

use common::peers::{Kamailio, Phone, Sipp, account_toml, free_port_both, is_bound, secs};

#[test]
fn interval_too_brief_423_retries_with_min_expires() {
    let reg = Sipp::spawn("uas_register_423.xml", &[]);
    let mut p = Phone::start(&account_toml("1001", "pw1001", &reg.addr(), "udp", 60), &[]);
    let ev = p.expect("registered", secs(5));
    assert_eq!(ev["expires"], 120, "{ev}");
    assert!(
        ev["aor"].as_str().is_some_and(|a| a.starts_with("sip:1001@")),
        "{ev}"
    );
    let r = reg.wait(secs(5));
    r.assert_ok();
    let regs = r.received_msgs("REGISTER ");
    assert_eq!(regs.len(), 2, "{}", r.report());
    assert_eq!(regs[0].header("Expires"), Some("60"), "{}", regs[0].text);
    assert_eq!(regs[1].header("Expires"), Some("120"), "{}", regs[1].text);
    let (n0, _) = regs[0].cseq().unwrap();
    assert_eq!(regs[1].cseq(), Some((n0 + 1, "REGISTER")), "{}", regs[1].text);
    assert_eq!(regs[0].header("Call-ID"), regs[1].header("Call-ID"));
    assert_eq!(p.count("registration_failed"), 0, "{:?}", p.seen());
}

#[test]
fn registers_by_itself_once_the_registrar_comes_up_without_a_storm() {
    let port = free_port_both();
    assert!(!is_bound("udp", port), "port {port} should be free");
    let mut p = Phone::start(
        &account_toml("1001", "pw1001", &format!("127.0.0.1:{port}"), "udp", 60),
        &[],
    );
    let t0 = Instant::now();
    // Nothing listens for a while: the phone keeps trying by itself.
    let early = p.drain(secs(3));
    assert!(
        early.iter().all(|e| e["event"] != "registered"),
        "registered with no registrar: {early:?}"
    );

    let k = Kamailio::start_on(port);
    let up = Instant::now();
    eprintln!("kamailio up {:?} after the phone started", up - t0);
    p.expect("registered", secs(20));
    let took = up.elapsed();
    eprintln!("registered {took:?} after kamailio came up");
    // Kamailio logs the save after it answers: wait for the line rather than race it.
    k.wait_saved("1001", 1, secs(5));

    // No storm: watch the registrar for a while after the registration, then count.
    let quiet = p.drain(secs(2));
    assert!(
        quiet.iter().all(|e| e["event"] != "registration_failed"),
        "{quiet:?}"
    );
    let window = up.elapsed().as_secs_f64();
    let registers = k.requests("REGISTER");
    let per_10s = registers as f64 * 10.0 / window.max(10.0);
    assert!(
        per_10s <= 15.0,
        "{registers} REGISTERs reached kamailio in {window:.1} s ({per_10s:.1} per 10 s): a retry storm\n{:#?}",
        k.request_lines("REGISTER")
    );
}
