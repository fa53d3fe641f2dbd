//! SLOW (about 65 s): the call layer's long timers, against SIPp on 127.0.0.1. The three checks
//! wait on timers only (no CPU), so they run in parallel threads of one test (the slowest sets
//! the time, whatever `--test-threads` says); each one's failure is reported by name.
//!
//! - a 200 never ACKed: after 64·T1 (32 s) of retransmissions the phone ends the dialog with a
//!   BYE (RFC 3261 §13.3.1.4), and the call ends `failed` (~33 s);
//! - session timer, the caller the refresher (RFC 4028): `Session-Expires: 90;refresher=uac`
//!   is accepted in the 200 (`Session-Expires: 90;refresher=uac`, `Require: timer`); with no
//!   refresh, the phone sends BYE before the session expires: at 90 − min(32, 90/3) = 60 s
//!   (RFC 4028 §10) (~61 s);
//! - session timer, the phone the refresher (`refresher=uas`): it refreshes (UPDATE or
//!   re-INVITE, with Session-Expires) at half the interval, 45 s (~46 s).

mod common;

use std::time::Instant;

use common::calls::{self, assert_header, config, lists_tag, response, wait_trace};
use common::peers::{Phone, SippMsg, secs};

/// These peers send no RTP: the RTP timeout (30 s by default) would end the calls before the
/// signalling timers under test do.
const SILENT_PEER: &str = "[media]\nrtp_timeout_seconds = 0\n";

fn unacknowledged_200_ends_with_bye_after_64_t1() {
    let mut p = Phone::start(&config(SILENT_PEER), &["--auto-answer"]);
    let uac = calls::call(&p, "cl_uac_no_ack.xml", &["-timeout", "60s"]);
    let ans = p.expect("answered", secs(5));
    let end = calls::expect_seen_by(&mut p, "ended", secs(45), &uac);
    assert_eq!(end["call"], ans["call"], "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    let ok = response(&r, 200, "INVITE");
    let bye = calls::first(&r, false, "BYE ");
    let after = bye.at - ok.at;
    assert!(
        (31.0..=36.0).contains(&after),
        "BYE {after:.1} s after the unacknowledged 200, expected 64·T1 = 32 s"
    );
    assert_eq!(
        end["reason"], "failed",
        "a dialog that never got its ACK failed; it was not hung up by the agent: {end}"
    );
}

/// The 200's session timer: `Session-Expires: 90;refresher=<who>` and `Require: timer`.
#[track_caller]
fn assert_session_timer(ok: &SippMsg, who: &str) {
    assert_header(ok, "Session-Expires", &format!(r"^90\s*;\s*refresher={who}\s*$"));
    assert!(
        lists_tag(ok, "Require", "timer"),
        "RFC 4028 §9: the 2xx requires timer:\n{}",
        ok.text
    );
}

fn no_refresh_from_the_refresher_ends_the_call_before_expiry() {
    let mut p = Phone::start(&config(SILENT_PEER), &["--auto-answer"]);
    let uac = calls::call(&p, "cl_uac_timer_no_refresh.xml", &["-timeout", "120s"]);
    let ans = p.expect("answered", secs(5));
    let r = wait_trace(
        &uac,
        secs(5),
        "SIPp ACKs the 200 (its Session-Expires checked)",
        |r| r.sent("ACK ") >= 1,
    );
    assert_session_timer(&response(&r, 200, "INVITE"), "uac");
    let end = calls::expect_seen_by(&mut p, "ended", secs(95), &uac);
    assert_eq!(end["call"], ans["call"], "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    let ok = response(&r, 200, "INVITE");
    let bye = calls::first(&r, false, "BYE ");
    let after = bye.at - ok.at;
    assert!(
        (55.0..89.0).contains(&after),
        "BYE {after:.1} s after the 200; RFC 4028 §10: before the session expires (90 s), \
         60 s recommended"
    );
}

fn the_phone_refreshes_at_half_the_interval() {
    let mut p = Phone::start(&config(SILENT_PEER), &["--auto-answer"]);
    let uac = calls::call(&p, "cl_uac_timer_phone_refreshes.xml", &["-timeout", "120s"]);
    let ans = p.expect("answered", secs(5));
    let r = wait_trace(
        &uac,
        secs(5),
        "SIPp ACKs the 200 (its Session-Expires checked)",
        |r| r.sent("ACK ") >= 1,
    );
    assert_session_timer(&response(&r, 200, "INVITE"), "uas");
    let end = calls::expect_seen_by(&mut p, "ended", secs(75), &uac);
    assert_eq!(end["call"], ans["call"], "{end}");
    assert_eq!(end["reason"], "remote_hangup", "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    let ok = response(&r, 200, "INVITE");
    let refresh = r
        .parsed()
        .into_iter()
        .find(|m| !m.sent && (m.text.starts_with("UPDATE ") || m.text.starts_with("INVITE ")))
        .unwrap_or_else(|| panic!("no refresh\n{}", r.report()));
    let after = refresh.at - ok.at;
    assert!(
        (40.0..=50.0).contains(&after),
        "refreshed {after:.1} s after the 200, expected at half the interval (45 s)"
    );
    assert_header(&refresh, "Session-Expires", r"^90\s*;\s*refresher=uac\s*$");
}

#[test]
fn slow_timers_no_ack_session_expiry_and_refresh() {
    let t0 = Instant::now();
    let checks: [(&str, fn()); 3] = [
        (
            "unacknowledged_200_ends_with_bye_after_64_t1",
            unacknowledged_200_ends_with_bye_after_64_t1,
        ),
        (
            "no_refresh_from_the_refresher_ends_the_call_before_expiry",
            no_refresh_from_the_refresher_ends_the_call_before_expiry,
        ),
        (
            "the_phone_refreshes_at_half_the_interval",
            the_phone_refreshes_at_half_the_interval,
        ),
    ];
    let running: Vec<_> = checks
        .iter()
        .map(|(name, f)| {
            let f = *f;
            let h = std::thread::Builder::new()
                .name((*name).to_owned())
                .spawn(move || {
                    let t = Instant::now();
                    let r = std::panic::catch_unwind(f);
                    (r.is_ok(), t.elapsed())
                })
                .unwrap();
            (*name, h)
        })
        .collect();
    let mut failed = Vec::new();
    for (name, h) in running {
        let (ok, took) = h.join().unwrap_or((false, t0.elapsed()));
        println!(
            "{name}: {} in {:.1} s",
            if ok { "ok" } else { "FAILED" },
            took.as_secs_f64()
        );
        if !ok {
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "failed (messages above): {failed:?}; all three took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
