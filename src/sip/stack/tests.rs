//! The stack's checks of requests before their method's handling, and its timer values.

use std::time::Duration;

use super::*;
use crate::sip::transaction::{acked_lifetime, server_tx_lifetime};

fn request(first: &str, extra: &str) -> Message {
    let method = first.split(' ').next().unwrap();
    let raw = format!(
        "{first} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: c1\r\n\
         CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    Message::parse(raw.as_bytes()).unwrap()
}

#[test]
fn requests_refused_before_their_method_is_handled() {
    // RFC 4475 §3.3.7 and friends: REGISTER to a phone is a method it knows but does not
    // take (405); an unknown method is 501; both list what is allowed.
    let r = precheck(&request("REGISTER sip:example.com", "")).unwrap();
    assert_eq!((r.0, r.2[0].0, r.2[0].1.as_str()), (405, "Allow", ALLOW));
    assert_eq!(
        precheck(&request("NEWMETHOD sip:b@127.0.0.1", "")).unwrap().0,
        501
    );
    // §3.3.2, §3.3.3: a Request-URI scheme the phone cannot serve, whatever the method.
    let opaque = request("OPTIONS nobodyKnowsThisScheme:totallyopaquecontent", "");
    assert_eq!(precheck(&opaque).unwrap().0, 416);
    let beep = request("OPTIONS soap.beep://192.0.2.103:3002", "");
    assert_eq!(precheck(&beep).unwrap().0, 416);
    assert_eq!(
        precheck(&request("INVITE http://example.com/", "")).unwrap().0,
        416
    );
    // §3.3.5: Require of an unknown extension: 420 naming every required tag; Proxy-Require
    // is for proxies.
    let ext = request(
        "OPTIONS sip:b@127.0.0.1",
        "Require: nothingSupportsThis, nothingSupportsThisEither\r\nProxy-Require: x\r\n",
    );
    let r = precheck(&ext).unwrap();
    assert_eq!(r.0, 420);
    assert_eq!(
        r.2,
        vec![(
            "Unsupported",
            "nothingSupportsThis, nothingSupportsThisEither".to_owned()
        )]
    );
    assert_eq!(
        precheck(&request("OPTIONS sip:b@127.0.0.1", "Proxy-Require: x\r\n")),
        None
    );
    // CANCEL's Require is ignored; ACK is never answered.
    assert_eq!(
        precheck(&request("CANCEL sip:b@127.0.0.1", "Require: foo\r\n")),
        None
    );
    assert_eq!(
        precheck(&request("ACK nobodyKnowsThisScheme:x", "Require: foo\r\n")),
        None
    );
    // What the phone takes passes.
    for m in ["INVITE", "BYE", "OPTIONS", "INFO", "NOTIFY", "UPDATE", "CANCEL"] {
        assert_eq!(
            precheck(&request(&format!("{m} sip:b@127.0.0.1"), "")),
            None,
            "{m}"
        );
    }
    assert_eq!(precheck(&request("INVITE tel:+81312345678", "")), None);
}

#[test]
fn a_warning_quotes_little_of_what_the_peer_sent() {
    let huge = format!(
        "line 4: unsupported network type \"{}\"\r\n",
        "\u{fffd}".repeat(60_000)
    );
    let w = warning_text(&huge);
    assert_eq!(w.chars().count(), 120);
    assert!(!w.contains(['"', '\r', '\n']));
    assert_eq!(warning_text("m= needs media"), "m= needs media");
}

#[test]
fn server_transactions_live_as_rfc_3261_says() {
    // Timer J: a non-INVITE's answer absorbs retransmissions for 64×T1 over UDP, and is
    // not kept over a stream; an INVITE's stays until its ACK (Timer H), then T4 (Timer I).
    assert_eq!(server_tx_lifetime(false, Proto::Udp), Duration::from_secs(32));
    assert_eq!(server_tx_lifetime(false, Proto::Tcp), Duration::ZERO);
    assert_eq!(server_tx_lifetime(true, Proto::Tcp), Duration::from_secs(32));
    assert_eq!(acked_lifetime(Proto::Udp), Duration::from_secs(5));
    assert_eq!(acked_lifetime(Proto::Tls), Duration::ZERO);
}

#[test]
fn an_offer_needs_a_caller_that_accepts_sdp() {
    let inv = |accept: &str| request("INVITE sip:b@127.0.0.1", accept);
    assert!(accepts_sdp(&inv("")));
    assert!(accepts_sdp(&inv("Accept: application/sdp\r\n")));
    assert!(accepts_sdp(&inv(
        "Accept: text/plain, Application/SDP;level=1\r\n"
    )));
    assert!(accepts_sdp(&inv(
        "Accept: text/plain\r\nAccept: application/*\r\n"
    )));
    assert!(accepts_sdp(&inv("Accept: */*\r\n")));
    assert!(accepts_sdp(&inv("Accept: \r\n")));
    // RFC 4475 §3.3.15 (sdp01): 406.
    assert!(!accepts_sdp(&inv("Accept: text/nobodyKnowsThis\r\n")));
    assert!(!accepts_sdp(&inv("Accept: application/sdpx, text/*\r\n")));
}

#[test]
fn sips_uris_mean_tls_on_5061() {
    for (uri, sips, tls, port) in [
        ("sips:1002@pbx.example", true, true, 5061),
        ("SIPS:1002@pbx.example:5071", true, true, 5071),
        ("sip:1002@pbx.example;transport=TLS", false, true, 5061),
        ("sip:1002@pbx.example", false, false, 5060),
        ("sip:1002@pbx.example;transport=tcp", false, false, 5060),
    ] {
        assert_eq!(is_sips(uri), sips, "{uri}");
        assert_eq!(wants_tls(uri), tls, "{uri}");
        assert_eq!(uri_host_port(uri), Some(("pbx.example".into(), port)), "{uri}");
    }
}

#[test]
fn a_tls_failure_is_not_buried_under_where_it_was_going() {
    let to: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let tls = std::io::Error::other("TLS: the certificate of pbx.example has expired");
    assert_eq!(
        send_failure(&tls, to, Proto::Tls),
        "TLS: the certificate of pbx.example has expired (at 127.0.0.1:5061)"
    );
    let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    assert_eq!(
        send_failure(&reset, to, Proto::Tcp),
        "cannot send to 127.0.0.1:5061 over TCP: reset"
    );
}
