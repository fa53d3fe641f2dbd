//! Outgoing calls that do not get answered, from `ctiphone headless` straight to a SIPp UAS on
//! 127.0.0.1: final responses mapped to `ended` reasons and codes, a proxy that keeps
//! challenging (one retry only), and the agent hanging up while the far end rings (CANCEL).

mod common;

use serde_json::{Value, json};

use common::peers::{Phone, Sipp, SippResult, account_toml, secs};

fn direct_phone() -> Phone {
    Phone::start(&account_toml("1001", "pw1001", "", "udp", 60), &[])
}

/// Dials `uas` as 1002; returns the Call-ID from the `outgoing` event.
fn dial(p: &mut Phone, uas: &Sipp) -> String {
    p.send(json!({"cmd": "dial", "to": uas.uri("1002")}));
    let out = p.expect("outgoing", secs(2));
    let id = out["call"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "{out}");
    id
}

/// The phone dials a UAS refusing its call (`scenario`); returns the `ended` event and SIPp's
/// run.
fn refused_by(scenario: &str) -> (Value, SippResult) {
    let mut p = direct_phone();
    let uas = Sipp::spawn(scenario, &[]);
    let id = dial(&mut p, &uas);
    let end = p.expect("ended", secs(5));
    assert_eq!(end["call"], id.as_str(), "{end}");
    let r = uas.wait(secs(10));
    r.assert_ok();
    // The ACK of a non-2xx answer belongs to the INVITE transaction (same branch).
    let inv = &r.received_msgs("INVITE ")[0];
    let ack = r
        .received_msgs("ACK ")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no ACK\n{}", r.report()));
    assert_eq!(ack.branch(), inv.branch(), "ACK branch\n{}", r.report());
    assert_eq!(p.count("answered"), 0, "{:?}", p.seen());
    (end, r)
}

fn md5_hex(s: &str) -> String {
    use md5::Digest;
    md5::Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks a Digest (RFC 2617, MD5, no qop) credential of user 1001, password pw1001.
#[track_caller]
fn assert_digest(header: &str, method: &str, nonce: &str) {
    let params: Vec<(String, String)> = header
        .trim_start_matches("Digest")
        .split(',')
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_owned(),
            ))
        })
        .collect();
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {k} in {header}"))
    };
    assert_eq!(get("username"), "1001", "{header}");
    assert_eq!(get("realm"), "127.0.0.1", "{header}");
    assert_eq!(get("nonce"), nonce, "{header}");
    let ha1 = md5_hex("1001:127.0.0.1:pw1001");
    let ha2 = md5_hex(&format!("{method}:{}", get("uri")));
    let want = match params.iter().find(|(n, _)| n == "qop") {
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
        Some((_, qop)) => md5_hex(&format!(
            "{ha1}:{nonce}:{}:{}:{qop}:{ha2}",
            get("nc"),
            get("cnonce")
        )),
    };
    assert_eq!(get("response"), want, "wrong digest response: {header}");
}

#[test]
fn busy_486_ends_busy() {
    let (end, _) = refused_by("uas_busy_486.xml");
    assert_eq!(end["reason"], "busy", "{end}");
    assert_eq!(end["code"], 486, "{end}");
}

#[test]
fn decline_603_ends_rejected() {
    let (end, _) = refused_by("uas_decline_603.xml");
    assert_eq!(end["reason"], "rejected", "{end}");
    assert_eq!(end["code"], 603, "{end}");
}

#[test]
fn not_found_404_ends_failed() {
    let (end, _) = refused_by("uas_not_found_404.xml");
    assert_eq!(end["reason"], "failed", "{end}");
    assert_eq!(end["code"], 404, "{end}");
}

#[test]
fn a_second_407_ends_failed_after_exactly_one_retry() {
    let mut p = direct_phone();
    let uas = Sipp::spawn("uas_407_twice.xml", &[]);
    let id = dial(&mut p, &uas);
    let end = p.expect("ended", secs(5));
    assert_eq!(end["call"], id.as_str(), "{end}");
    assert_eq!(end["reason"], "failed", "{end}");
    assert_eq!(end["code"], 407, "{end}");
    let r = uas.wait(secs(10));
    r.assert_ok();
    let invites = r.received_msgs("INVITE ");
    let mut cseqs: Vec<u32> = invites.iter().filter_map(|m| m.cseq()).map(|c| c.0).collect();
    cseqs.dedup();
    assert_eq!(
        cseqs.len(),
        2,
        "the first INVITE and exactly one retry with credentials\n{}",
        r.report()
    );
    assert!(cseqs[1] > cseqs[0], "{cseqs:?}");
    assert!(
        invites[0].header("Proxy-Authorization").is_none(),
        "{}",
        invites[0].text
    );
    let retry = invites
        .iter()
        .find(|m| m.cseq().map(|c| c.0) == Some(cseqs[1]))
        .unwrap();
    assert!(
        retry
            .header("Proxy-Authorization")
            .is_some_and(|a| a.starts_with("Digest ")),
        "{}",
        retry.text
    );
    assert_eq!(retry.header("Call-ID"), Some(id.as_str()), "same call");
    assert_digest(
        retry.header("Proxy-Authorization").unwrap(),
        "INVITE",
        "6f1c2ab0e9d34c7a",
    );
    assert_eq!(r.received("ACK "), 2, "each 407 ACKed once\n{}", r.report());
}

#[test]
fn hangup_while_the_far_end_rings_sends_cancel() {
    let mut p = direct_phone();
    let uas = Sipp::spawn("uas_ring_cancel.xml", &[]);
    let id = dial(&mut p, &uas);
    let ringing = p.expect("ringing", secs(5));
    assert_eq!(ringing["call"], id.as_str(), "{ringing}");
    p.send(json!({"cmd": "hangup"}));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["call"], id.as_str(), "{end}");
    assert_eq!(end["reason"], "cancelled", "{end}");
    let r = uas.wait(secs(10));
    r.assert_ok();
    let inv = &r.received_msgs("INVITE ")[0];
    let cancel = &r.received_msgs("CANCEL ")[0];
    let ack = &r.received_msgs("ACK ")[0];
    assert!(
        inv.branch().is_some_and(|b| b.starts_with("z9hG4bK")),
        "{}",
        inv.text
    );
    assert_eq!(cancel.branch(), inv.branch(), "CANCEL branch\n{}", r.report());
    assert_eq!(
        ack.branch(),
        inv.branch(),
        "ACK (to the 487) branch\n{}",
        r.report()
    );
    let inv_uri = inv.text.lines().next().unwrap().split(' ').nth(1);
    let cancel_uri = cancel.text.lines().next().unwrap().split(' ').nth(1);
    assert_eq!(cancel_uri, inv_uri, "CANCEL's Request-URI is the INVITE's");
    let (n, _) = inv.cseq().unwrap();
    assert_eq!(cancel.cseq(), Some((n, "CANCEL")), "{}", cancel.text);
    assert_eq!(ack.cseq(), Some((n, "ACK")), "{}", ack.text);
    assert_eq!(cancel.header("Call-ID"), Some(id.as_str()));
    assert_eq!(
        cancel.header("From"),
        inv.header("From"),
        "CANCEL From is the INVITE's"
    );
    assert_eq!(r.received("BYE "), 0, "{}", r.report());
    assert_eq!(p.count("answered"), 0, "{:?}", p.seen());
}
