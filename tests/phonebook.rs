//! The phonebook end to end: `ctiphone phonebook` adds, imports, exports and looks up
//! entries under both number forms; a shared CSV served by a loopback HTTP server names the
//! callers of real sipp calls to `ctiphone headless` ({TELNAME}, {CALLEDNAME}), the local
//! entry wins over it, and once the server is stopped the names still resolve from the last
//! copy (in the running phone, and in a new process reading the cached copy).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;

use common::peers::{Phone, Sipp, account_toml, secs};

const COUNTRY: &str = "[phonebook]\ncountry_code = \"81\"\ninternational_prefix = \"010\"\n";

/// `ctiphone [--config F] phonebook ARGS` in `home`; (exit code, stdout, stderr).
fn phonebook(home: &Path, config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ctiphone"))
        .arg("--config")
        .arg(config)
        .arg("phonebook")
        .args(args)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .output()
        .expect("run ctiphone phonebook");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_adds_imports_exports_and_looks_up_both_number_forms() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("config.toml");
    std::fs::write(&cfg, COUNTRY).unwrap();
    let run = |args: &[&str]| phonebook(home.path(), &cfg, args);

    let (code, out, err) = run(&["add", "山田 太郎", "+81 3-1234-5678", "--company", "ACME"]);
    assert_eq!(code, 0, "{out}{err}");
    for form in ["0312345678", "03-1234-5678", "+81312345678", "010-81-3-1234-5678"] {
        let (code, out, err) = run(&["lookup", form]);
        assert_eq!(code, 0, "{form}: {out}{err}");
        assert!(
            out.starts_with("山田 太郎  (local; matched as 0312345678)"),
            "{form}: {out}"
        );
    }
    let (code, _, err) = run(&["lookup", "0312345679"]);
    assert_eq!(code, 2);
    assert!(err.contains("no entry for 0312345679"), "{err}");

    // Import a vCard (two numbers on one card) and a CSV with a Japanese header.
    let vcf = home.path().join("in.vcf");
    std::fs::write(
        &vcf,
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Jane Roe\r\nORG:Example Inc.\r\nTEL;TYPE=WORK:+81-6-1111-2222\r\nTEL;TYPE=CELL:090-1111-2222\r\nEND:VCARD\r\n",
    )
    .unwrap();
    let (code, out, _) = run(&["import", vcf.to_str().unwrap()]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "2 entries added, 0 skipped (no number, or no name and no company)\n"
        )
    );
    let csv = home.path().join("in.csv");
    std::fs::write(&csv, "氏名,電話番号\n佐藤 花子,0120-000-111\n,\n").unwrap();
    let (code, out, _) = run(&["import", csv.to_str().unwrap()]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "1 entries added, 1 skipped (no number, or no name and no company)\n"
        )
    );
    assert!(run(&["lookup", "06-1111-2222"]).1.starts_with("Jane Roe"));
    assert!(run(&["lookup", "+81 120 000 111"]).1.starts_with("佐藤 花子"));

    // Search as the contacts pane does, by name or by the start of a number.
    let (_, out, _) = run(&["list", "roe", "--json"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (_, out, _) = run(&["list", "+81 90", "--json"]);
    assert_eq!(out.lines().count(), 1, "{out}");

    // Export both ways; a new phonebook imports them back to the same entries.
    let out_vcf = home.path().join("out.vcf");
    let out_csv = home.path().join("out.csv");
    assert_eq!(run(&["export", out_vcf.to_str().unwrap()]).0, 0);
    assert_eq!(run(&["export", out_csv.to_str().unwrap()]).0, 0);
    let (_, all, _) = run(&["list", "--json"]);
    for file in [&out_vcf, &out_csv] {
        let other = tempfile::tempdir().unwrap();
        let (code, out, err) = phonebook(other.path(), &cfg, &["import", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.starts_with("4 entries added"), "{out}");
        let (_, again, _) = phonebook(other.path(), &cfg, &["list", "--json"]);
        assert_eq!(without_ids(&again), without_ids(&all), "{}", file.display());
    }

    // Edit and delete by id.
    let id = serde_json::from_str::<serde_json::Value>(all.lines().next().unwrap()).unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(run(&["edit", &id.to_string(), "--name", "Renamed"]).0, 0);
    assert!(run(&["list", "Renamed"]).1.contains("Renamed"));
    assert_eq!(run(&["delete", &id.to_string()]).0, 0);
    assert_eq!(run(&["delete", &id.to_string()]).0, 2);
}

/// `list --json` lines with their ids dropped (ids are per phonebook).
fn without_ids(lines: &str) -> Vec<serde_json::Value> {
    lines
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("id");
            v
        })
        .collect()
}

/// A loopback HTTP server for the shared phonebook; dropped = stopped.
struct BookServer {
    url: String,
    hits: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    rt: tokio::runtime::Runtime,
}

impl BookServer {
    fn start(csv: &'static str) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}/book.csv", listener.local_addr().unwrap());
        let app = Router::new().route(
            "/book.csv",
            get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                async move { ([("content-type", "text/csv")], csv) }
            }),
        );
        rt.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            url,
            hits,
            stop: Some(stop),
            rt,
        }
    }

    fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.rt.shutdown_timeout(secs(2));
    }
}

/// The cached copy of the shared phonebook in a phone's data directory.
fn cached_copy(home: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(home.join("xdg-data/ctiphone"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("phonebook-shared-") && n.ends_with(".cache"))
        })
}

#[test]
fn a_shared_csv_names_callers_and_outlives_its_server() {
    let server = BookServer::start(
        "name,number,company\n山田 太郎,03-1234-5678,ACME\nShared Taro,+81 3-1111-2222,\nSupport line,0120-000-111,\n",
    );
    let config = format!(
        "{}\n[audio]\ninput = \"null\"\noutput = \"null\"\n{COUNTRY}shared = \"{}\"\nrefresh_minutes = 60\n",
        account_toml("1001", "pw1001", "", "udp", 60),
        server.url
    );
    let mut p = Phone::start(&config, &[]);
    let deadline = std::time::Instant::now() + secs(10);
    while cached_copy(p.home()).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the shared phonebook was never fetched"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    let target = p.target();

    // P-Asserted-Identity "Hanako" <sip:+81312345678@pbx> calling 0120000111: both named by
    // the shared phonebook, the display name replaced.
    let uac = Sipp::spawn("uac_pai_cancel.xml", &[target.as_str(), "-s", "0120000111"]);
    let ev = p.expect("incoming", secs(5));
    assert_eq!(
        (
            ev["tel"].as_str(),
            ev["telname"].as_str(),
            ev["calledname"].as_str()
        ),
        (Some("+81312345678"), Some("山田 太郎"), Some("Support line")),
        "{ev}"
    );
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();

    // A local entry for the same number wins over the shared one.
    let cfg = p.home().join("config.toml");
    let (code, out, err) = phonebook(p.home(), &cfg, &["add", "Local Yamada", "0312345678"]);
    assert_eq!(code, 0, "{out}{err}");
    let uac = Sipp::spawn("uac_pai_cancel.xml", &[target.as_str(), "-s", "0120000111"]);
    let ev = p.expect("incoming", secs(5));
    assert_eq!(ev["telname"].as_str(), Some("Local Yamada"), "{ev}");
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();

    // The server goes away: the running phone keeps its copy ("Taro Yamada" <0311112222>
    // is named from it), and a new process reads the cached copy.
    server.stop();
    let uac = Sipp::spawn("uac_cancel.xml", &[target.as_str(), "-s", "0120000111"]);
    let ev = p.expect("incoming", secs(5));
    assert_eq!(ev["telname"].as_str(), Some("Shared Taro"), "{ev}");
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();
    let (code, out, err) = phonebook(p.home(), &cfg, &["lookup", "+81 3 1111 2222"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("Shared Taro  (shared;"), "{out}");
    let (code, _, err) = phonebook(p.home(), &cfg, &["refresh"]);
    assert_eq!(code, 2, "refreshing from a stopped server fails");
    assert!(!err.contains("book.csv"), "errors never carry the URL: {err}");
    let (code, out, _) = phonebook(p.home(), &cfg, &["lookup", "0311112222"]);
    assert_eq!((code, out.starts_with("Shared Taro")), (0, true), "{out}");
}
