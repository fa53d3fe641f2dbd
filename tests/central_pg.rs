//! The central call log (issue 18) against a real PostgreSQL: a throwaway cluster started by
//! each test (Debian `postgresql`, loopback only). sipp calls `ctiphone headless`, whose
//! `[history] central` names the cluster: the rows arrive with the CRM side; PostgreSQL
//! stopped mid-call (immediate shutdown, like a crash) → the phone warns, the call goes on,
//! the outbox holds the changes, and after the restart the row arrives exactly once; two
//! phones that see the same Call-ID (a transferred call) give two rows, one per agent; a
//! schema of the previous version is migrated, and 200 phones migrating a new database at
//! once do it once; over TLS (`sslmode=verify-full` with the test's CA) the rows arrive on an
//! encrypted connection, and a CA that did not sign the server's certificate gets nothing
//! through, with the reason in `history sync`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ctiphone::central::cluster::Cluster;
use serde_json::{Value, json};

use common::peers::{Phone, Sipp, account_toml, ctiphone_bin, secs};

fn cluster() -> Cluster {
    Cluster::start().unwrap_or_else(|e| {
        panic!("PostgreSQL: {e}\nthis test needs the PostgreSQL server: apt-get install -y postgresql")
    })
}

fn config(url: &str, agent: &str) -> String {
    format!(
        "{}\n[audio]\ninput = \"null\"\noutput = \"null\"\n\n[history]\ncentral = \"{url}\"\nagent_id = \"{agent}\"\n",
        account_toml("1001", "pw1001", "", "udp", 60)
    )
}

/// Polls `sql` until it returns `want` (10 s), else fails with what it returned.
fn until(c: &Cluster, sql: &str, want: &str, timeout: Duration) {
    let end = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < end {
        match c.psql(sql) {
            Ok(v) if v == want => return,
            Ok(v) => last = v,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("`{sql}` gave {last:?}, expected {want:?}\n{}", c.log());
}

/// `ctiphone history sync --json` for the phone at `home`, and its exit code.
fn sync(home: &Path) -> (Value, i32) {
    let out = Command::new(ctiphone_bin())
        .arg("--config")
        .arg(home.join("config.toml"))
        .args(["history", "sync", "--json"])
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .output()
        .expect("history sync");
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (v, out.status.code().unwrap_or(-1))
}

#[test]
fn calls_arrive_in_postgres_with_their_result() {
    let pg = cluster();
    let mut p = Phone::start(&config(&pg.url(), "agent-7"), &["--auto-answer"]);
    let target = p.target();
    let uac = Sipp::spawn("uac_call_bye.xml", &[target.as_str(), "-s", "0312345678"]);
    let answered = p.expect("answered", secs(5));
    let call = answered["call"].as_str().unwrap_or_default().to_owned();
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();
    until(
        &pg,
        &format!(
            "SELECT agent || '|' || result || '|' || state || '|' || tel || '|' || direction \
             FROM ctiphone.calls WHERE call_id = '{call}'"
        ),
        "agent-7|answered|closed|0311112222|in",
        secs(10),
    );
    // The row is the local row: the same update sequence, the same times.
    let local = common::peers::history_list(p.home());
    assert_eq!(local.len(), 1, "{local:#?}");
    let seq = pg
        .psql(&format!("SELECT seq, duration_s IS NOT NULL, answer_at IS NOT NULL FROM ctiphone.calls WHERE call_id = '{call}'"))
        .expect("psql");
    let parts: Vec<&str> = seq.split('|').collect();
    assert!(parts[0].parse::<i64>().is_ok_and(|s| s >= 3), "seq {seq}");
    assert_eq!(&parts[1..], ["t", "t"], "{seq}");
    let (state, code) = sync(p.home());
    assert_eq!((state["outbox"].as_u64(), code), (Some(0), 0), "{state}");
    assert!(state["last_delivery"].is_string(), "{state}");
    // The agent's status changes go with the calls, in order.
    p.send(json!({"cmd": "status", "state": "not_ready", "reason": "Break"}));
    p.expect("status", secs(5));
    p.send(json!({"cmd": "status", "state": "ready"}));
    p.expect_where("status", secs(5), |v| v["state"] == "ready");
    until(
        &pg,
        "SELECT string_agg(status || ':' || reason, ',' ORDER BY seq) FROM          (SELECT * FROM ctiphone.status_changes WHERE agent = 'agent-7' ORDER BY seq DESC LIMIT 2) s",
        "not_ready:Break,ready:",
        secs(10),
    );
}

#[test]
fn postgres_stopped_mid_call_gets_the_row_after_its_restart_once() {
    let mut pg = cluster();
    let mut p = Phone::start(&config(&pg.url(), "agent-1"), &["--auto-answer"]);
    let target = p.target();
    let uac = Sipp::spawn("uac_wait_bye.xml", &[target.as_str(), "-s", "0312345678"]);
    let answered = p.expect("answered", secs(5));
    let call = answered["call"].as_str().unwrap_or_default().to_owned();
    let state_sql = format!("SELECT state FROM ctiphone.calls WHERE call_id = '{call}'");
    until(&pg, &state_sql, "open", secs(10));

    // PostgreSQL goes away mid-call; the agent hangs up meanwhile.
    pg.stop().expect("stop postgres");
    p.send(json!({"cmd": "hangup"}));
    p.expect("ended", secs(5));
    uac.wait(secs(10)).assert_ok();
    let warned = p.expect_where("warning", secs(10), |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("central log") && m.contains("not taking"))
    });
    let central = p.expect_where("central", secs(10), |v| {
        v["backlog"].as_u64().is_some_and(|n| n > 0)
    });
    assert!(central["error"].is_string(), "{central}");
    let (state, code) = sync(p.home());
    assert!(
        state["outbox"].as_u64().is_some_and(|n| n > 0) && code == 1,
        "{state} (exit {code})\n{warned}"
    );
    assert!(state["last_error"].is_string(), "{state}");
    // The phone still takes calls.
    let uac = Sipp::spawn("uac_call_bye.xml", &[target.as_str(), "-s", "0312345678"]);
    p.expect("answered", secs(5));
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();

    // Back: the outbox drains, each call once, the first one closed.
    pg.start_again().expect("restart postgres");
    p.expect_where("central", secs(45), |v| {
        v["backlog"] == 0 && v.get("error").is_none()
    });
    until(&pg, &state_sql, "closed", secs(10));
    until(
        &pg,
        "SELECT count(*) || '|' || count(DISTINCT call_id) FROM ctiphone.calls",
        "2|2",
        secs(10),
    );
    let (state, code) = sync(p.home());
    assert_eq!((state["outbox"].as_u64(), code), (Some(0), 0), "{state}");
}

#[test]
fn the_same_call_id_at_two_agents_gives_one_row_each() {
    let pg = cluster();
    let mut a = Phone::start(&config(&pg.url(), "agent-a"), &["--auto-answer"]);
    let mut b = Phone::start(&config(&pg.url(), "agent-b"), &["--auto-answer"]);
    // The PBX transferred the customer's call from a to b: both see one Call-ID.
    let cid = "transferred-call-1@pbx.test";
    for p in [&mut a, &mut b] {
        let target = p.target();
        let uac = Sipp::spawn(
            "uac_call_bye.xml",
            &[target.as_str(), "-s", "0312345678", "-cid_str", cid],
        );
        p.expect("ended", secs(10));
        uac.wait(secs(10)).assert_ok();
    }
    until(
        &pg,
        &format!(
            "SELECT string_agg(agent || ':' || state, ',' ORDER BY agent) FROM ctiphone.calls WHERE call_id = '{cid}'"
        ),
        "agent-a:closed,agent-b:closed",
        secs(10),
    );
}

#[test]
fn the_previous_schema_is_migrated_and_many_phones_migrate_once() {
    let pg = cluster();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let target = ctiphone::central::target::parse(&pg.url(), "").expect("url");
    // A database left by the previous version (schema 1) with one row in it.
    rt.block_on(async {
        let mut c = target.connect().await.expect("connect");
        ctiphone::central::schema::migrate_to(&mut c, 1)
            .await
            .expect("schema 1");
    });
    pg.psql(
        "INSERT INTO ctiphone.calls (agent, call_id, seq, direction, tel, telname, called, calledname,
            anonymous, ring_at, state) VALUES ('old', 'old-call', 3, 'in', '0300000000', '', '1001', '',
            false, now(), 'closed')",
    )
    .expect("old row");
    let mut p = Phone::start(&config(&pg.url(), "agent-new"), &["--auto-answer"]);
    let uac = Sipp::spawn("uac_call_bye.xml", &[p.target().as_str(), "-s", "0312345678"]);
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();
    until(&pg, "SELECT version FROM ctiphone.schema_version", "2", secs(10));
    until(
        &pg,
        "SELECT string_agg(agent || ':' || crm_error || ':' || (wrapup_at IS NULL), ',' ORDER BY agent) FROM ctiphone.calls",
        "agent-new::true,old::true",
        secs(10),
    );

    // 200 phones meeting a new database at once: one of them creates it, none fails.
    pg.psql("DROP SCHEMA ctiphone CASCADE").expect("drop");
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let t = target.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = t.connect().await?;
                ctiphone::central::schema::migrate(&mut c).await
            }));
        }
        let mut found = Vec::new();
        for t in tasks {
            found.push(t.await.expect("task"));
        }
        found
    });
    let fresh = results.iter().filter(|r| matches!(r, Ok(0))).count();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(fresh, 1, "exactly one phone found an empty database: {results:?}");
    assert_eq!(
        pg.psql("SELECT version FROM ctiphone.schema_version").as_deref(),
        Ok("2")
    );
}

/// A CA, and a certificate it signed for localhost / 127.0.0.1, as PEM text.
fn pki() -> (String, String, String) {
    let p = common::test_pki();
    (p.ca_pem, p.cert.pem(), p.key.serialize_pem())
}

#[test]
fn over_tls_the_server_is_verified_and_the_rows_arrive_encrypted() {
    let mut pg = cluster();
    let (ca, cert, key) = pki();
    pg.use_tls(&cert, &key).expect("tls");
    pg.stop().expect("stop");
    pg.start_again().expect("start with TLS");
    let dir = tempfile::tempdir().expect("tmp");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).expect("ca");
    let (other, _, _) = pki();
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_file, other).expect("other ca");
    let url = |ca: &Path| {
        format!(
            "postgresql://ctiphone@localhost:{}/ctiphone?sslmode=verify-full&sslrootcert={}",
            pg.port(),
            ca.display()
        )
    };

    let mut p = Phone::start(&config(&url(&ca_file), "agent-tls"), &["--auto-answer"]);
    let uac = Sipp::spawn("uac_call_bye.xml", &[p.target().as_str(), "-s", "0312345678"]);
    let call = p.expect("answered", secs(5))["call"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();
    until(
        &pg,
        &format!("SELECT state FROM ctiphone.calls WHERE call_id = '{call}'"),
        "closed",
        secs(10),
    );
    // The phone's connection (application_name ctiphone) is a TLS one.
    until(
        &pg,
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'ctiphone'",
        "t",
        secs(5),
    );

    // A CA that did not sign the server's certificate: nothing goes through, and the phone
    // says why.
    let mut q = Phone::start(&config(&url(&other_file), "agent-wrong-ca"), &["--auto-answer"]);
    let uac = Sipp::spawn("uac_call_bye.xml", &[q.target().as_str(), "-s", "0312345678"]);
    q.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();
    let central = q.expect_where("central", secs(10), |v| v.get("error").is_some());
    let (state, code) = sync(q.home());
    assert_eq!(code, 1, "{state}");
    let error = state["last_error"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        error.contains("certificate") || error.contains("issuer"),
        "{state}\n{central}"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM ctiphone.calls WHERE agent = 'agent-wrong-ca'")
            .as_deref(),
        Ok("0")
    );
}

#[test]
fn the_password_comes_from_central_password_command() {
    let pg = cluster();
    pg.add_password_user("agentpw", "s3cret-pw").expect("role");
    // The schema is created by a phone with the rights to; this one only writes rows.
    let url = format!("postgresql://agentpw@127.0.0.1:{}/ctiphone", pg.port());
    let with =
        |cmd: &str, agent: &str| format!("{}central_password_command = \"{cmd}\"\n", config(&url, agent));
    let mut p = Phone::start(&with("printf s3cret-pw", "agent-pw"), &["--auto-answer"]);
    let uac = Sipp::spawn("uac_call_bye.xml", &[p.target().as_str(), "-s", "0312345678"]);
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();
    until(
        &pg,
        "SELECT count(*) FROM ctiphone.calls WHERE agent = 'agent-pw'",
        "1",
        secs(10),
    );
    // A wrong password: refused, said, and never shown.
    let mut q = Phone::start(&with("printf wrong-pw-42", "agent-bad"), &["--auto-answer"]);
    let uac = Sipp::spawn("uac_call_bye.xml", &[q.target().as_str(), "-s", "0312345678"]);
    q.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();
    let central = q.expect_where("central", secs(10), |v| v.get("error").is_some());
    let (state, _) = sync(q.home());
    let error = state["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("password authentication failed"),
        "{state}\n{central}"
    );
    assert!(!error.contains("wrong-pw-42") && !central.to_string().contains("wrong-pw-42"));
}
