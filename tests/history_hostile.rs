//! The 78 hostile caller IDs through the call history: stored and read back byte-exact, and
//! exported as CSV that a spreadsheet cannot run.

mod common;

use ctiphone::app::{CallEvent, CallParams, Event};
use ctiphone::history::History;

#[test]
fn hostile_caller_ids_round_trip_and_export_safely() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h.db")).unwrap();
    let corpus = common::hostile();
    for (n, (_, _, value)) in corpus.iter().enumerate() {
        let mut p = CallParams::incoming(&format!("h{n}"), value, "0312345678");
        p.telname = value.clone();
        h.record(&Event::Call(CallEvent::ring(p))).unwrap();
    }
    let rows = h.list(None, None, 1000).unwrap();
    assert_eq!(rows.len(), corpus.len());
    for r in &rows {
        let n: usize = r.call_id[1..].parse().unwrap();
        let (id, _, value) = &corpus[n];
        assert!(
            r.tel == *value && r.telname == *value,
            "{id} was not read back byte-exact"
        );
    }
    let mut out = Vec::new();
    h.export_csv(&mut out).unwrap();
    let mut rd = csv::Reader::from_reader(out.as_slice());
    let mut seen = 0;
    for rec in rd.records() {
        let rec = rec.unwrap();
        for cell in rec.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a formula cell: {:?}",
                &cell[..cell.len().min(40)]
            );
        }
        let n: usize = rec[15][1..].parse().unwrap();
        let value = &corpus[n].2;
        let tel = &rec[3];
        assert!(
            tel == value || tel.strip_prefix('\'') == Some(value.as_str()),
            "{} changed in the export",
            corpus[n].0
        );
        seen += 1;
    }
    assert_eq!(seen, corpus.len());
}
