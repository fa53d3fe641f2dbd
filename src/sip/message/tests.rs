use super::*;

fn corpus(dir: &str) -> Vec<(String, String, Vec<u8>)> {
    let base = format!("{}/tests/fixtures/{dir}", env!("CARGO_MANIFEST_DIR"));
    let index = std::fs::read_to_string(format!("{base}/index.tsv")).expect("index.tsv");
    index
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let bytes = std::fs::read(format!("{base}/{}.dat", cols[0])).expect("corpus file");
            (cols[0].to_owned(), cols[2].to_owned(), bytes)
        })
        .collect()
}

/// Invalid RFC 4475 messages a user agent may tolerate (the RFC allows a liberal reading and
/// tolerating them harms nothing): each with why.
const TOLERATED: &[&str] = &[
    // An unparseable Date header: the RFC allows ignoring it; a phone never reads Date.
    "baddate",
];

#[test]
fn rfc4475_verdicts() {
    let mut wrong = Vec::new();
    for (name, expected, bytes) in corpus("rfc4475") {
        let got = Message::parse(&bytes);
        let ok = got.is_ok();
        if (expected == "valid") != ok && !TOLERATED.contains(&name.as_str()) {
            wrong.push(format!(
                "{name}: expected {expected}, got {:?}",
                got.err().map(|e| e.message)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn rfc5118_verdicts() {
    let mut wrong = Vec::new();
    for (name, expected, bytes) in corpus("rfc5118") {
        let got = Message::parse(&bytes);
        if (expected == "valid") != got.is_ok() {
            wrong.push(format!(
                "{name}: expected {expected}, got {:?}",
                got.err().map(|e| e.message)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn stream_framing_by_content_length() {
    let one = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n\
To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody";
    // Whole message, then a second one behind it: the first's length exactly.
    let mut two = one.to_vec();
    two.extend_from_slice(one);
    assert_eq!(frame(&two), Ok(Some(one.len())));
    let (m, used) = parse(&two[..one.len()], true).unwrap();
    assert_eq!((m.body.as_slice(), used), (&b"body"[..], one.len()));
    // Truncated: wait for more.
    assert_eq!(frame(&one[..one.len() - 2]), Ok(None));
    assert_eq!(frame(&one[..20]), Ok(None));
    // Oversize: refused, the connection is closed by the caller.
    let big = String::from_utf8_lossy(one).replace("Content-Length: 4", "Content-Length: 999999");
    assert!(frame(big.as_bytes()).is_err());
    let endless = vec![b'a'; MAX_MESSAGE + 10];
    assert!(frame(&endless).is_err());
    // Conflicting lengths cannot be framed.
    let bad = String::from_utf8_lossy(one).replace("Content-Length: 4", "Content-Length: 4\r\nl: 5");
    assert!(frame(bad.as_bytes()).is_err());
    // Found by the `sip_message` fuzz target: a length near usize::MAX overflowed the sum
    // with the header section (a panic with overflow checks, a wrapped short frame without).
    // `wraps_to_zero` made a 0-byte frame in release, on which the read loop would spin.
    let with_len = |n: usize| String::from_utf8_lossy(one).replace("Content-Length: 4", &format!("l: {n}"));
    // Its header section, with a 20-digit length like the one it will carry.
    let head_len = with_len(usize::MAX).find("\r\n\r\n").unwrap() + 4;
    let wraps_to_zero = usize::MAX - head_len + 1;
    assert_eq!(wraps_to_zero.to_string().len(), usize::MAX.to_string().len());
    for n in [usize::MAX, usize::MAX - 3, usize::MAX / 2 + 1, wraps_to_zero] {
        let huge = with_len(n);
        let e = frame(huge.as_bytes()).expect_err("a huge length cannot be framed");
        assert!(e.message.contains("64 KiB"), "{e}");
        assert!(parse(huge.as_bytes(), true).is_err());
        assert!(Message::parse(huge.as_bytes()).is_err());
    }
}

#[test]
fn writing_recomputes_content_length_and_keeps_binary_bodies() {
    let mut m = Message::request("MESSAGE", "sip:a@b");
    m.push("Content-Length", "99");
    m.with_body("application/octet-stream", vec![0, 159, 146, 150, b'\n', 0]);
    let bytes = m.to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("Content-Length: 6\r\n"), "{text}");
    assert!(!text.contains("99"));
    assert!(bytes.ends_with(&[0, 159, 146, 150, b'\n', 0]));
}

/// Found by the `sip_message` fuzz target: a request-line version whose fifth byte falls
/// inside a multi-byte character (`SI\u{fffd}P/2.0` after lossy decoding) made the version
/// check slice a `str` off a character boundary and panic.
#[test]
fn version_with_a_multibyte_character_is_refused_not_a_panic() {
    for version in ["SI\u{fffd}P/2.0", "SIP\u{e9}/2.0", "\u{1f4de}/2.0", "SIP/\u{e9}"] {
        let raw = format!(
            "REGISTER sip:example.com {version}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             To: <sip:a@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: c\r\n\
             CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
        );
        let e = Message::parse(raw.as_bytes()).expect_err(version);
        let want = if version.starts_with("SIP/") { 505 } else { 400 };
        assert_eq!(e.status, Some(want), "{version}: {e}");
    }
    // The same bytes as the fuzzer sent them: invalid UTF-8 inside `SIP`.
    let mut raw = b"OPTIONS sip:example.com SI\xe2\x82P/2.0\r\n".to_vec();
    raw.extend_from_slice(b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(Message::parse(&raw).map_err(|e| e.status), Err(Some(400)));
}
