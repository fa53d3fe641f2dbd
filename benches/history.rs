//! History and phonebook at scale (issue 6): 100 000 calls and 100 000 contacts in one
//! database, then the newest 50 calls, a text filter, a result filter, a date jump, a
//! number lookup (local, and shared from a 100 000-entry CSV), and a search as you type.
//! Run with `cargo bench --bench history`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ctiphone::app::CallResult;
use ctiphone::config::PhonebookConfig;
use ctiphone::history::{History, Query};
use ctiphone::phonebook::Phonebook;

const N: usize = 100_000;

/// A realistic spread of names, numbers and results.
fn fill_calls(path: &std::path::Path) {
    drop(History::open(path).expect("open history"));
    let mut db = rusqlite::Connection::open(path).expect("open");
    let tx = db.transaction().expect("tx");
    {
        let mut ins = tx
            .prepare(
                "INSERT INTO calls (call_id, direction, tel, telname, called, calledname, anonymous, ring_at,
                 end_at, duration_s, result, company, name, state)
                 VALUES (?1, 'in', ?2, ?3, '0312345678', '', 0, ?4, ?4, ?5, ?6, ?7, ?3, 'closed')",
            )
            .expect("prepare");
        let results: Vec<&str> = CallResult::ALL
            .iter()
            .filter(|r| **r != CallResult::Interrupted)
            .map(|r| r.name())
            .collect();
        let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1)
            .unwrap()
            .and_hms_opt(8, 0, 0)
            .unwrap();
        for i in 0..N {
            let at = start + chrono::Duration::minutes(5 * i as i64);
            ins.execute(rusqlite::params![
                format!("call-{i}@bench"),
                format!("03{:08}", (i * 7919) % 100_000_000),
                format!("Customer {i} Yamada"),
                at.format("%Y-%m-%dT%H:%M:%S%.3f+09:00").to_string(),
                (i % 600) as f64,
                results[i % results.len()],
                format!("Company {}", i % 5000),
            ])
            .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn contacts_csv(n: usize) -> String {
    let mut s = String::from("name,number,company\n");
    for i in 0..n {
        s.push_str(&format!(
            "Contact {i},+81 3-{:04}-{:04},Company {}\n",
            i / 10_000,
            i % 10_000,
            i % 5000
        ));
    }
    s
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("history.sqlite3");
    fill_calls(&db);
    let h = History::open(&db).expect("history");
    let q = |text: &str, result: Option<CallResult>, until: Option<&str>| Query {
        text: text.into(),
        result,
        until: until.map(str::to_owned),
        limit: 50,
        ..Query::default()
    };
    assert_eq!(h.query(&q("", None, None)).unwrap().len(), 50);
    c.bench_function("history: newest 50 of 100k", |b| {
        b.iter(|| h.query(black_box(&q("", None, None))).unwrap())
    });
    c.bench_function("history: text filter over 100k (a rare name)", |b| {
        b.iter(|| h.query(black_box(&q("Customer 4242 ", None, None))).unwrap())
    });
    c.bench_function("history: text filter over 100k (common, first 50)", |b| {
        b.iter(|| h.query(black_box(&q("yamada", None, None))).unwrap())
    });
    c.bench_function("history: result filter, first 50", |b| {
        b.iter(|| h.query(black_box(&q("", Some(CallResult::Busy), None))).unwrap())
    });
    c.bench_function("history: jump to a date, first 50", |b| {
        b.iter(|| h.query(black_box(&q("", None, Some("2025-06-01")))).unwrap())
    });

    let cfg = PhonebookConfig {
        country_code: "81".into(),
        ..PhonebookConfig::default()
    };
    let pb = Phonebook::open(&db, &cfg).expect("phonebook");
    let (added, _) = pb.import(contacts_csv(N).as_bytes()).expect("import");
    assert_eq!(added, N);
    assert_eq!(pb.name_for("+81 3-0009-9999").as_deref(), Some("Contact 99999"));
    c.bench_function("phonebook: lookup among 100k local (other number form)", |b| {
        b.iter(|| pb.name_for(black_box("+81 3-0009-9999")).unwrap())
    });
    c.bench_function("phonebook: search as you type among 100k local", |b| {
        b.iter(|| pb.search(black_box("Contact 9999"), 200).unwrap())
    });

    // A shared phonebook of 100k entries (read from a file, as from a URL), no local entries.
    let dir2 = tempfile::tempdir().expect("temp dir");
    let file = dir2.path().join("shared.csv");
    std::fs::write(&file, contacts_csv(N)).expect("write");
    let shared = Phonebook::open(
        &dir2.path().join("h.sqlite3"),
        &PhonebookConfig {
            shared: file.display().to_string(),
            ..cfg.clone()
        },
    )
    .expect("phonebook");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    assert_eq!(rt.block_on(shared.refresh()).expect("refresh"), N);
    c.bench_function("phonebook: lookup among 100k shared", |b| {
        b.iter(|| shared.name_for(black_box("03-0009-9999")).unwrap())
    });
    c.bench_function("phonebook: load a 100k-entry shared CSV", |b| {
        b.iter(|| rt.block_on(shared.refresh()).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
