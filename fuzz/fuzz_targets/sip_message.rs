//! SIP messages from the wire (`ctiphone::sip::message`), datagram and stream.
//!
//! Checks, besides "never panics":
//! - a parsed message written back with `to_bytes` parses again to the same start line,
//!   headers (Content-Length aside) and body, and frames as exactly one stream message;
//! - the stream loop of the TCP/TLS transport (skip keep-alive CRLFs, `frame`, `parse`)
//!   always makes progress and never reads past what it framed;
//! - every typed header reader (`NameAddr`, `Uri`, `Via`, CSeq, digest challenges) and the
//!   caller identity of an INVITE run on every value; the Authorization answering a hostile
//!   challenge and a 400/505 built from a refused request carry no line break of their own.
#![no_main]

use ctiphone::sip::addr::{NameAddr, Uri, Via, split_host_port};
use ctiphone::sip::auth::{Challenge, authorization, pick};
use ctiphone::sip::message::{self, Message, canonical, split_commas};
use ctiphone::sip::transport::error_response;
use ctiphone::call::identity::caller_identity;
use libfuzzer_sys::fuzz_target;

/// Headers whose values are addresses.
const ADDRESS_HEADERS: &[&str] = &[
    "From",
    "To",
    "Contact",
    "P-Asserted-Identity",
    "P-Called-Party-ID",
    "Remote-Party-ID",
    "Refer-To",
    "Referred-By",
    "Route",
    "Record-Route",
];

fuzz_target!(|data: &[u8]| {
    datagram(data);
    stream(data);
});

fn datagram(data: &[u8]) {
    match Message::parse(data) {
        Ok(msg) => {
            read_everything(&msg);
            round_trip(&msg);
        }
        Err(e) => {
            if let Some(status) = e.status {
                assert!(matches!(status, 400 | 505), "status {status} for {e}");
                if let Some(resp) = error_response(data, status, &e.message) {
                    // One message, whatever the request's header values held.
                    assert_eq!(
                        message::frame(&resp),
                        Ok(Some(resp.len())),
                        "error response frames as one message: {:?}",
                        String::from_utf8_lossy(&resp)
                    );
                }
            }
        }
    }
}

/// The transport's read loop over a byte stream.
fn stream(data: &[u8]) {
    let mut buf = data.to_vec();
    loop {
        let skip = buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
        buf.drain(..skip);
        match message::frame(&buf) {
            Ok(None) | Err(_) => break,
            Ok(Some(len)) => {
                assert!(len > 0 && len <= buf.len(), "framed {len} of {}", buf.len());
                let bytes: Vec<u8> = buf.drain(..len).collect();
                if let Ok((msg, used)) = message::parse(&bytes, true) {
                    assert!(used <= bytes.len(), "used {used} of {}", bytes.len());
                    read_everything(&msg);
                }
            }
        }
    }
}

fn round_trip(msg: &Message) {
    let bytes = msg.to_bytes();
    let again = match Message::parse(&bytes) {
        Ok(m) => m,
        Err(e) => panic!(
            "a parsed message written back does not parse: {e}\n{:?}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert_eq!(again.start, msg.start);
    assert_eq!(again.body, msg.body);
    let without_length = |m: &Message| -> Vec<(String, String)> {
        m.headers
            .iter()
            .filter(|(n, _)| n != "Content-Length")
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    };
    assert_eq!(without_length(&again), without_length(msg));
    assert_eq!(message::frame(&bytes), Ok(Some(bytes.len())));
    let (streamed, used) = message::parse(&bytes, true).expect("parses as a stream message");
    assert_eq!(used, bytes.len());
    assert_eq!(streamed.body, msg.body);
}

fn read_everything(msg: &Message) {
    let _ = (msg.method(), msg.code(), msg.uri(), msg.is_request());
    let _ = (msg.cseq(), msg.call_id());
    if let Some(uri) = msg.uri() {
        let _ = Uri::parse(uri);
    }
    for (name, value) in &msg.headers {
        assert_eq!(&canonical(name), name, "stored header names are canonical");
        assert!(!value.contains(['\n']), "a header value holds a line break");
        let _ = msg.get(name);
        let _ = msg.get_all(name);
        let _ = split_commas(value);
    }
    for h in ADDRESS_HEADERS {
        for v in msg.get_all(h) {
            for part in split_commas(v) {
                if let Ok(a) = NameAddr::parse(part) {
                    let _ = (a.tag(), a.param("expires"));
                    if let Ok(u) = Uri::parse(&a.uri) {
                        let _ = (u.param("transport"), u.param("user"));
                    }
                    // Written back, an address parses again to the same URI.
                    let shown = a.to_string();
                    let back = NameAddr::parse(&shown)
                        .unwrap_or_else(|e| panic!("{part:?} -> {shown:?} does not parse: {e}"));
                    assert_eq!(back.uri, a.uri, "{part:?} -> {shown:?}");
                }
            }
        }
    }
    for v in msg.get_all("Via") {
        if let Ok(via) = Via::parse(v) {
            let _ = (via.branch(), via.param("rport"), via.param("received"));
            if let Some(r) = via.param("received") {
                let _ = split_host_port(r);
            }
        }
    }
    let challenges: Vec<Challenge> = ["WWW-Authenticate", "Proxy-Authenticate"]
        .iter()
        .flat_map(|h| msg.get_all(h))
        .filter_map(|v| Challenge::parse(v).ok())
        .collect();
    if let Some(ch) = pick(&challenges) {
        let uri = msg.uri().unwrap_or("sip:pbx.example");
        let auth = authorization(ch, "1000", "secret", "REGISTER", uri, 1, "0a4f113b", &msg.body);
        assert!(
            !auth.contains(['\r', '\n']),
            "Authorization answering {ch:?} breaks the header: {auth:?}"
        );
    }
    if msg.method() == Some("INVITE") {
        let p = caller_identity(msg);
        let _ = (p.tel.len(), p.telname.len(), p.called.len(), p.anonymous);
    }
}
