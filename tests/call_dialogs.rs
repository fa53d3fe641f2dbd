//! Dialogs and transactions of the call layer (RFC 3261 §12, RFC 3262, RFC 3311, RFC 3325,
//! RFC 4028) against SIPp on 127.0.0.1, and spoofed requests from a plain UDP socket of the
//! test (another port):
//!
//! - in-dialog requests whose tags match no dialog (a BYE, a re-INVITE) get 481 and the call
//!   goes on; so does a CANCEL that matches no transaction;
//! - an in-dialog request with a CSeq lower than the last gets 500;
//! - reliable provisional responses: an INVITE requiring 100rel gets a reliable 180 (Require,
//!   RSeq), retransmitted until the PRACK, which gets 200; the phone advertises 100rel; when it
//!   dials and gets a reliable 180, it sends a PRACK with RAck;
//! - an UPDATE or a re-INVITE with a new P-Asserted-Identity updates the connected party: an
//!   `identity` event;
//! - a session interval below 90 s gets 422 with Min-SE: 90.

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use regex::Regex;
use serde_json::{Value, json};

use common::calls::{self, assert_header, config, lists_tag, response, responses, tag_of, wait_trace};
use common::peers::{Phone, Sipp, ms, secs};
use common::rtp::{RtpPeer, m_lines};
use common::wire::{Conn, Proto, Recv, first_line, status};

/// The dialog of a call SIPp placed, as a spoofer would learn it.
struct Dialog {
    call_id: String,
    /// SIPp's From tag.
    from_tag: String,
    /// The phone's To tag.
    to_tag: String,
    /// SIPp's SIP port.
    sipp: u16,
    phone: SocketAddr,
}

/// Waits until SIPp has ACKed the phone's 200 and reads the dialog from its trace.
fn dialog(p: &Phone, uac: &Sipp) -> Dialog {
    let r = wait_trace(uac, secs(5), "SIPp ACKs the phone's 200", |r| r.sent("ACK ") >= 1);
    let invite = calls::first(&r, true, "INVITE ");
    let ok = response(&r, 200, "INVITE");
    Dialog {
        call_id: invite.header("Call-ID").unwrap_or_default().to_owned(),
        from_tag: tag_of(invite.header("From").unwrap_or_default()).expect("SIPp's From tag"),
        to_tag: tag_of(ok.header("To").unwrap_or_default()).expect("the phone's To tag"),
        sipp: uac.port,
        phone: p.target().parse().unwrap(),
    }
}

/// A request as another host would forge it: the call's Call-ID with the given tags (an empty
/// To tag: none), CSeq `cseq`, the branch numbered `n`.
#[allow(clippy::too_many_arguments)]
fn forged(
    d: &Dialog,
    me: SocketAddr,
    method: &str,
    from_tag: &str,
    to_tag: &str,
    cseq: u32,
    n: u32,
    body: &str,
) -> String {
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_owned()
    };
    let to_tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    format!(
        "{method} sip:1001@{phone} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-cl-forged-{n}-{pid}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Taro Yamada\" <sip:0311112222@127.0.0.1:{sipp}>;tag={from_tag}\r\n\
         To: <sip:0312345678@{phone}>{to_tag}\r\n\
         Call-ID: {cid}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:0311112222@{me}>\r\n\
         {ct}Content-Length: {len}\r\n\r\n{body}",
        phone = d.phone,
        sipp = d.sipp,
        cid = d.call_id,
        pid = std::process::id(),
        len = body.len()
    )
}

/// Sends `req` and returns the phone's final response (provisional ones skipped).
#[track_caller]
fn final_response(conn: &mut Conn, req: &str) -> Vec<u8> {
    conn.send(req.as_bytes());
    let end = Instant::now() + secs(3);
    loop {
        match conn.recv(end) {
            Recv::Msg(m) if status(&m).is_some_and(|c| c >= 200) => return m,
            Recv::Msg(_) => continue,
            _ => panic!(
                "no final response within 3 s to:\n{}",
                req.lines().next().unwrap_or_default()
            ),
        }
    }
}

#[track_caller]
fn assert_481(resp: &[u8], what: &str) {
    assert_eq!(
        status(resp),
        Some(481),
        "{what}: expected 481 Call/Transaction Does Not Exist, got {:?}:\n{}",
        first_line(resp),
        String::from_utf8_lossy(resp)
    );
}

/// A phone in a call with SIPp (which hangs up after `hold_ms`), and the call's dialog.
fn in_a_call(hold_ms: u32) -> (Phone, Sipp, Dialog, RtpPeer, Value) {
    let mut p = Phone::start(&config(""), &["--auto-answer"]);
    let peer = RtpPeer::bind();
    let (port, hold) = (peer.port().to_string(), hold_ms.to_string());
    let uac = calls::call(
        &p,
        "cl_uac_call_hold.xml",
        &["-key", "rtp_port", &port, "-set", "hold", &hold],
    );
    let ans = p.expect("answered", secs(5));
    let d = dialog(&p, &uac);
    (p, uac, d, peer, ans)
}

/// The call is still up after the forgeries: no `ended` until SIPp's own BYE, which gets 200.
fn the_call_goes_on(mut p: Phone, uac: Sipp, ans: &Value) {
    p.expect_none("ended", ms(500));
    let end = p.expect("ended", secs(10));
    assert_eq!(end["call"], ans["call"], "{end}");
    assert_eq!(end["reason"], "remote_hangup", "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    assert_eq!(responses(&r, 200, "BYE").len(), 1, "{}", r.report());
}

#[test]
fn bye_with_the_call_id_but_wrong_tags_gets_481_and_the_call_goes_on() {
    let (p, uac, d, _peer, ans) = in_a_call(3000);
    let mut conn = Conn::open(Proto::Udp, d.phone);
    let me = conn.local();
    let cases = [
        (
            "both tags wrong",
            "forged-from".to_owned(),
            "forged-to".to_owned(),
        ),
        ("the From tag wrong", "forged-from".to_owned(), d.to_tag.clone()),
        ("the To tag wrong", d.from_tag.clone(), "forged-to".to_owned()),
    ];
    for (n, (what, from, to)) in cases.iter().enumerate() {
        let resp = final_response(&mut conn, &forged(&d, me, "BYE", from, to, 2, n as u32, ""));
        assert_481(&resp, &format!("a BYE with {what}"));
    }
    the_call_goes_on(p, uac, &ans);
}

#[test]
fn re_invite_with_wrong_tags_gets_481_and_the_call_goes_on() {
    let (p, uac, d, _peer, ans) = in_a_call(3000);
    let mut conn = Conn::open(Proto::Udp, d.phone);
    let me = conn.local();
    // A hold offer that would silence the call, were it taken.
    let sdp = "v=0\r\no=x 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
               m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n";
    let resp = final_response(
        &mut conn,
        &forged(&d, me, "INVITE", "forged-from", &d.to_tag, 2, 7, sdp),
    );
    assert_481(&resp, "a re-INVITE with a forged From tag");
    // ACK the failure on its branch, as a UAC must (the 481 keeps the request's To tag).
    conn.send(forged(&d, me, "ACK", "forged-from", &d.to_tag, 2, 7, "").as_bytes());
    let resp = final_response(
        &mut conn,
        &forged(&d, me, "INVITE", "forged-from", "forged-to", 2, 8, sdp),
    );
    assert_481(&resp, "a re-INVITE with both tags forged");
    the_call_goes_on(p, uac, &ans);
}

#[test]
fn cancel_matching_no_transaction_gets_481_and_the_call_goes_on() {
    let (p, uac, d, _peer, ans) = in_a_call(3000);
    let mut conn = Conn::open(Proto::Udp, d.phone);
    let me = conn.local();
    // The call's Call-ID and tags, but a branch no INVITE of this call had.
    let req = forged(&d, me, "CANCEL", &d.from_tag, "", 1, 9, "");
    let resp = final_response(&mut conn, &req);
    assert_481(&resp, "a CANCEL that matches no transaction");
    the_call_goes_on(p, uac, &ans);
}

#[test]
fn in_dialog_requests_with_a_lower_cseq_get_500() {
    // RFC 3261 §12.2.2. SIPp's INVITE has CSeq 10 and its BYE 20; the requests below carry the
    // dialog's own tags (from another port: a proxy may send them), in the order the test
    // chooses. (SIPp itself drops a response whose CSeq is lower than one it has seen, so it
    // cannot send the out-of-order requests.)
    let (mut p, uac, d, _peer, ans) = in_a_call(3000);
    let mut conn = Conn::open(Proto::Udp, d.phone);
    let me = conn.local();
    let ok = final_response(
        &mut conn,
        &forged(&d, me, "INFO", &d.from_tag, &d.to_tag, 15, 101, ""),
    );
    assert_eq!(status(&ok), Some(200), "{}", String::from_utf8_lossy(&ok));
    let lower = final_response(
        &mut conn,
        &forged(&d, me, "INFO", &d.from_tag, &d.to_tag, 12, 102, ""),
    );
    assert_eq!(
        status(&lower),
        Some(500),
        "an INFO with CSeq 12 after 15: {}",
        String::from_utf8_lossy(&lower)
    );
    let sdp = "v=0\r\no=x 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
               m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n";
    let reinvite = final_response(
        &mut conn,
        &forged(&d, me, "INVITE", &d.from_tag, &d.to_tag, 13, 103, sdp),
    );
    assert_eq!(
        status(&reinvite),
        Some(500),
        "a re-INVITE with CSeq 13 after 15: {}",
        String::from_utf8_lossy(&reinvite)
    );
    conn.send(forged(&d, me, "ACK", &d.from_tag, &d.to_tag, 13, 103, "").as_bytes());
    // The refused re-INVITE (a hold) changed nothing: no `held`, and the call goes on.
    p.expect_none("held", ms(300));
    the_call_goes_on(p, uac, &ans);
}

#[test]
fn invite_requiring_100rel_gets_a_reliable_180_retransmitted_until_the_prack() {
    // The phone answers 2 s after the INVITE: the 180 is retransmitted meanwhile.
    let mut p = Phone::start(&config(""), &["--auto-answer", "2000"]);
    let uac = calls::call(&p, "cl_uac_100rel.xml", &["-nr"]);
    let ans = calls::expect_seen_by(&mut p, "answered", secs(5), &uac);
    let end = p.expect("ended", secs(10));
    assert_eq!(end["call"], ans["call"], "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    let ringing = responses(&r, 180, "INVITE");
    let prack = calls::first(&r, true, "PRACK ");
    let rseq_re = Regex::new(r"^[1-9]\d{0,9}$").unwrap();
    let rseq = ringing[0].header("RSeq").unwrap_or_default().to_owned();
    assert!(rseq_re.is_match(&rseq), "RSeq {rseq:?}:\n{}", ringing[0].text);
    for m in &ringing {
        assert!(
            lists_tag(m, "Require", "100rel"),
            "a reliable 180 has Require: 100rel:\n{}",
            m.text
        );
        assert_eq!(
            m.header("RSeq"),
            Some(rseq.as_str()),
            "a retransmission keeps its RSeq:\n{}",
            m.text
        );
    }
    let before: Vec<_> = ringing.iter().filter(|m| m.at <= prack.at).collect();
    assert!(before.len() >= 2, "the 180 was not retransmitted\n{}", r.report());
    let gap = before[1].at - before[0].at;
    assert!(
        (0.35..1.2).contains(&gap),
        "RFC 3262 §3: retransmitted after T1 (500 ms), here after {gap:.3} s"
    );
    let after = ringing.iter().filter(|m| m.at > prack.at + 0.2).count();
    assert_eq!(after, 0, "180 retransmitted after the PRACK\n{}", r.report());
    let prack_ok = response(&r, 200, "PRACK");
    assert_eq!(
        prack_ok.cseq().map(|c| c.0),
        prack.cseq().map(|c| c.0),
        "{}",
        prack_ok.text
    );
    let ok = response(&r, 200, "INVITE");
    assert!(
        lists_tag(&ok, "Supported", "100rel") || lists_tag(&ok, "Require", "100rel"),
        "the 200 advertises 100rel:\n{}",
        ok.text
    );
}

#[test]
fn answered_call_responses_advertise_100rel() {
    let mut p = Phone::start(&config(""), &["--auto-answer"]);
    let uac = calls::call(&p, "uac_call_bye.xml", &[]);
    p.expect("ended", secs(10));
    let r = uac.wait(secs(10));
    r.assert_ok();
    let ok = response(&r, 200, "INVITE");
    assert!(
        lists_tag(&ok, "Supported", "100rel"),
        "RFC 3262 §3: the phone supports 100rel and says so (Supported):\n{}",
        ok.text
    );
}

#[test]
fn outgoing_call_sends_prack_with_rack_for_a_reliable_180() {
    let mut p = Phone::start(&config(""), &[]);
    let uas = Sipp::spawn("cl_uas_100rel.xml", &[]);
    p.send(json!({"cmd": "dial", "to": uas.uri("1002")}));
    p.expect("ringing", secs(5));
    let ans = calls::expect_seen_by(&mut p, "answered", secs(10), &uas);
    std::thread::sleep(ms(300));
    p.send(json!({"cmd": "hangup"}));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["call"], ans["call"], "{end}");
    assert_eq!(end["reason"], "local_hangup", "{end}");
    let r = uas.wait(secs(10));
    r.assert_ok();
    let invite = calls::first(&r, false, "INVITE ");
    assert!(
        lists_tag(&invite, "Supported", "100rel"),
        "RFC 3262 §4: the phone's INVITE says Supported: 100rel:\n{}",
        invite.text
    );
    let prack = calls::first(&r, false, "PRACK ");
    let (n, _) = invite.cseq().expect("INVITE CSeq");
    assert_header(&prack, "RAck", &format!(r"^4711\s+{n}\s+INVITE$"));
    let (pn, pm) = prack.cseq().expect("PRACK CSeq");
    assert!(pm == "PRACK" && pn > n, "PRACK CSeq {pn} {pm} after INVITE {n}");
    assert_eq!(prack.header("Call-ID"), invite.header("Call-ID"));
    assert!(
        prack
            .header("To")
            .and_then(tag_of)
            .is_some_and(|t| t.contains("SIPpTag01")),
        "the PRACK is in the early dialog (SIPp's To tag):\n{}",
        prack.text
    );
}

/// The `identity` events: exactly `{"event":"identity","call":…,"tel":…,"telname":…}`.
fn identities(p: &Phone) -> Vec<Value> {
    p.seen()
        .iter()
        .filter(|v| v["event"] == "identity")
        .cloned()
        .collect()
}

#[test]
fn update_and_re_invite_with_a_new_asserted_identity_report_the_connected_party() {
    let mut p = Phone::start(&config(""), &["--auto-answer"]);
    let uac = calls::call(&p, "cl_uac_update_pai.xml", &[]);
    let ans = p.expect("answered", secs(5));
    let id = ans["call"].as_str().unwrap_or_default().to_owned();
    let first = p.expect("identity", secs(5));
    let second = p.expect("identity", secs(5));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["reason"], "remote_hangup", "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    for (ev, tel, name) in [
        (&first, "0399998888", "Hanako Suzuki"),
        (&second, "0355556666", "Jiro Sato"),
    ] {
        let want = json!({"event": "identity", "call": id, "tel": tel, "telname": name});
        assert_eq!(ev, &want, "events: {:?}", identities(&p));
    }
    // The UPDATE carried no offer: its 200 carries no answer (RFC 3311 §5.2).
    let ok = response(&r, 200, "UPDATE");
    assert!(
        m_lines(ok.body()).is_empty(),
        "a 200 to an UPDATE without SDP has no SDP:\n{}",
        ok.text
    );
}

#[test]
fn session_interval_below_the_minimum_gets_422_with_min_se_90() {
    let mut p = Phone::start(&config(""), &["--auto-answer"]);
    let r = calls::call(&p, "cl_uac_timer_too_small.xml", &[]).wait(secs(10));
    r.assert_ok();
    let refusal = response(&r, 422, "INVITE");
    assert_header(&refusal, "Min-SE", r"^90\s*(;.*)?$");
    p.expect_none("incoming", ms(300));
}
