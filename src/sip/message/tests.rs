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
