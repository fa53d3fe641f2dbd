//! The central log's readers against a real PostgreSQL (a throwaway cluster per test, Debian
//! `postgresql`, loopback only), with rows written by `psql` as the phones write them:
//! `ctiphone report` gives each agent's figures exactly (JSON lines, CSV, the table), a
//! hostile agent id comes out cleaned (table) and defused (CSV), an unreachable server, a
//! database without the schema and a bad date exit 2 with a message. `ctiphone supervisor`
//! runs in tmux: a status change or a call inserted with `psql` is on the screen within 2 s
//! through the notification alone (its connection runs no query between changes), and when
//! PostgreSQL goes away and comes back, the status line says so and it reconnects; a real
//! phone (`ctiphone headless` with `[history] central`) called by sipp shows ringing,
//! then talking, then done with its counts.

mod common;
#[path = "common/tmux.rs"]
mod tmux;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ctiphone::central::cluster::Cluster;
use ctiphone::central::schema::MIGRATIONS;
use serde_json::{Value, json};

use common::peers::{Phone, Sipp, account_toml, secs};
use tmux::Tmux;

fn cluster() -> Cluster {
    Cluster::start().unwrap_or_else(|e| {
        panic!("PostgreSQL: {e}\nthis test needs the PostgreSQL server: apt-get install -y postgresql")
    })
}

/// The schema as the phones create it (every migration), without a phone.
fn with_schema() -> Cluster {
    let pg = cluster();
    let sql = format!(
        "CREATE SCHEMA ctiphone; CREATE TABLE ctiphone.schema_version (version BIGINT NOT NULL);
         INSERT INTO ctiphone.schema_version VALUES ({}); {}",
        MIGRATIONS.len(),
        MIGRATIONS.join(";\n")
    );
    pg.psql(&sql).expect("schema");
    pg
}

/// A row of `ctiphone.calls`; times are SQL expressions (`NULL` for none).
struct Call<'a> {
    agent: &'a str,
    id: &'a str,
    dir: &'a str,
    ring: &'a str,
    answer: &'a str,
    end: &'a str,
    wrapup: &'a str,
    result: &'a str,
    state: &'a str,
    crm_error: &'a str,
}

fn insert(pg: &Cluster, c: &Call) {
    let sql = format!(
        "INSERT INTO ctiphone.calls (agent, call_id, seq, direction, tel, telname, called,
            calledname, anonymous, ring_at, answer_at, end_at, wrapup_at, result, state, crm_error,
            name)
         VALUES ({}, '{}', 1, '{}', '0311112222', '', '', '', false, {}, {}, {}, {}, {}, '{}', '{}',
            'Taro Yamada')",
        c.agent, c.id, c.dir, c.ring, c.answer, c.end, c.wrapup, c.result, c.state, c.crm_error
    );
    pg.psql(&sql).unwrap_or_else(|e| panic!("{e}\n{sql}"));
}

fn t(s: &str) -> String {
    format!("'2026-01-10 {s}+00'")
}

/// The hostile agent id: a formula first, then an escape sequence and a bell.
const HOSTILE: &str = "=HYPERLINK(\"http://x\")\u{1b}]0;owned\u{7}\u{1b}[2J";
const HOSTILE_SQL: &str = "E'=HYPERLINK(\"http://x\")\\x1b]0;owned\\x07\\x1b[2J'";

/// Three agents with known figures on 2026-01-10 (UTC), and one older call.
fn known_rows(pg: &Cluster) {
    let null = "NULL";
    let rows = [
        // alice: 4 offered, 2 answered (150 s and 60 s handled, one 30 s wrap-up), 2 missed,
        // 1 outgoing, 2 CRM failures.
        Call {
            agent: "'alice'",
            id: "a1",
            dir: "in",
            ring: &t("10:00:00"),
            answer: &t("10:00:10"),
            end: &t("10:02:10"),
            wrapup: &t("10:02:40"),
            result: "'answered'",
            state: "closed",
            crm_error: "",
        },
        Call {
            agent: "'alice'",
            id: "a2",
            dir: "in",
            ring: &t("11:00:00"),
            answer: &t("11:00:05"),
            end: &t("11:01:05"),
            wrapup: null,
            result: "'answered'",
            state: "closed",
            crm_error: "timeout",
        },
        Call {
            agent: "'alice'",
            id: "a3",
            dir: "in",
            ring: &t("12:00:00"),
            answer: null,
            end: &t("12:00:20"),
            wrapup: null,
            result: "'missed'",
            state: "closed",
            crm_error: "",
        },
        Call {
            agent: "'alice'",
            id: "a4",
            dir: "in",
            ring: &t("12:10:00"),
            answer: null,
            end: &t("12:10:03"),
            wrapup: null,
            result: "'cancelled'",
            state: "closed",
            crm_error: "",
        },
        Call {
            agent: "'alice'",
            id: "a5",
            dir: "out",
            ring: &t("13:00:00"),
            answer: &t("13:00:05"),
            end: &t("13:01:05"),
            wrapup: null,
            result: "'answered'",
            state: "closed",
            crm_error: "http 500",
        },
        // Before --since: left out.
        Call {
            agent: "'alice'",
            id: "a0",
            dir: "in",
            ring: "'2026-01-08 10:00:00+00'",
            answer: "'2026-01-08 10:00:01+00'",
            end: "'2026-01-08 10:09:01+00'",
            wrapup: null,
            result: "'answered'",
            state: "closed",
            crm_error: "x",
        },
        // bob: one still ringing (offered, neither answered nor missed), one rejected, one
        // answered (45 s talk + 15 s wrap-up).
        Call {
            agent: "'bob'",
            id: "b1",
            dir: "in",
            ring: &t("14:00:00"),
            answer: null,
            end: null,
            wrapup: null,
            result: null,
            state: "open",
            crm_error: "",
        },
        Call {
            agent: "'bob'",
            id: "b2",
            dir: "in",
            ring: &t("14:05:00"),
            answer: null,
            end: &t("14:05:02"),
            wrapup: null,
            result: "'rejected'",
            state: "closed",
            crm_error: "",
        },
        Call {
            agent: "'bob'",
            id: "b3",
            dir: "in",
            ring: &t("15:00:00"),
            answer: &t("15:00:00"),
            end: &t("15:00:45"),
            wrapup: &t("15:01:00"),
            result: "'answered'",
            state: "closed",
            crm_error: "",
        },
        // The hostile agent: one failed outgoing call.
        Call {
            agent: HOSTILE_SQL,
            id: "h1",
            dir: "out",
            ring: &t("16:00:00"),
            answer: null,
            end: &t("16:00:01"),
            wrapup: null,
            result: "'failed'",
            state: "closed",
            crm_error: "",
        },
    ];
    for r in &rows {
        insert(pg, r);
    }
}

fn expected() -> Vec<Value> {
    vec![
        json!({"agent": HOSTILE, "offered": 0, "answered": 0, "missed": 0, "outgoing": 1,
               "avg_handle_s": null, "avg_wrapup_s": null, "crm_failures": 0}),
        json!({"agent": "alice", "offered": 4, "answered": 2, "missed": 2, "outgoing": 1,
               "avg_handle_s": 105.0, "avg_wrapup_s": 30.0, "crm_failures": 2}),
        json!({"agent": "bob", "offered": 3, "answered": 1, "missed": 1, "outgoing": 0,
               "avg_handle_s": 60.0, "avg_wrapup_s": 15.0, "crm_failures": 0}),
    ]
}

/// `ctiphone report ARGS` with no configuration of its own, in UTC (so `--since` is UTC
/// midnight).
fn report(args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("home");
    Command::new(env!("CARGO_BIN_EXE_ctiphone"))
        .arg("report")
        .args(args)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("TZ", "UTC")
        .output()
        .expect("ctiphone report")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn report_counts_each_agent_exactly_in_json_csv_and_the_table() {
    let pg = with_schema();
    known_rows(&pg);
    let url = pg.url();

    let out = report(&["--central", &url, "--since", "2026-01-10", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let got: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(got, expected());

    // CSV: the same numbers, the formula defused.
    let out = report(&["--central", &url, "--since", "2026-01-10", "--csv"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        rd.headers().expect("header").iter().collect::<Vec<_>>(),
        [
            "agent",
            "offered",
            "answered",
            "missed",
            "outgoing",
            "avg_handle_s",
            "avg_wrapup_s",
            "crm_failures"
        ]
    );
    let recs: Vec<Vec<String>> = rd
        .records()
        .map(|r| r.expect("record").iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(recs.len(), 3, "{text}");
    assert_eq!(recs[0][0], format!("'{HOSTILE}"), "defused");
    assert_eq!(recs[0][1..], ["0", "0", "0", "1", "", "", "0"]);
    assert_eq!(recs[1], ["alice", "4", "2", "2", "1", "105", "30", "2"]);
    assert_eq!(recs[2], ["bob", "3", "1", "1", "0", "60", "15", "0"]);

    // The table: aligned, no control character, the figures in words a person reads.
    let out = report(&["--central", &url, "--since", "2026-01-10"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("agent "), "{text}");
    let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        words(lines[2]),
        ["alice", "4", "2", "2", "1", "1:45", "0:30", "2"],
        "{text}"
    );
    assert_eq!(
        words(lines[3]),
        ["bob", "3", "1", "1", "0", "1:00", "0:15", "0"],
        "{text}"
    );
    assert!(lines[1].starts_with("=HYPERLINK"), "{text}");
    // Right-aligned columns end where the header's do.
    let end = |l: &str| l.chars().count();
    assert_eq!(end(lines[2]), end(lines[0]), "{text}");
    assert_eq!(end(lines[3]), end(lines[0]), "{text}");

    // A later date leaves every call out: nothing but the header.
    let out = report(&["--central", &url, "--since", "2026-01-11", "--json"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    // An earlier one takes alice's older call in.
    let out = report(&["--central", &url, "--since", "2026-01-08", "--json"]);
    let first_alice = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["agent"] == "alice")
        .expect("alice");
    assert_eq!(first_alice["offered"], 5, "{first_alice}");
    assert_eq!(first_alice["crm_failures"], 3, "{first_alice}");
}

#[test]
fn report_failures_exit_2_with_a_message() {
    // Nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let url = format!("postgresql://ctiphone@127.0.0.1:{port}/ctiphone?sslmode=disable");
    let started = Instant::now();
    let out = report(&["--central", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        err.contains("ctiphone report") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(out.stdout.is_empty(), "{out:?}");

    // A database no phone has written to.
    let pg = cluster();
    let out = report(&["--central", &pg.url(), "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(err.contains("no central log in this database"), "{err}");

    // A bad date, a URL with a password, no URL at all.
    for (args, want) in [
        (
            vec!["--central", "postgresql://a@127.0.0.1/d", "--since", "last week"],
            "expected a date YYYY-MM-DD",
        ),
        (vec!["--central", "postgresql://a:secret@127.0.0.1/d"], "password"),
        (vec![], "no central log: give --central"),
    ] {
        let out = report(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("secret"), "{err}");
    }
}

/// The supervisor's backend in `pg_stat_activity`: when its last query started.
fn supervisor_query_start(pg: &Cluster) -> String {
    pg.psql(
        "SELECT query_start FROM pg_stat_activity WHERE application_name = 'ctiphone' \
         AND backend_type = 'client backend'",
    )
    .expect("pg_stat_activity")
}

#[test]
fn supervisor_follows_notifications_and_reconnects() {
    let mut pg = with_schema();
    pg.psql(
        "INSERT INTO ctiphone.status_changes (agent, seq, at, status) VALUES
            ('alice', 1, now() - interval '65 seconds', 'ready'),
            ('bob', 1, now(), 'not_ready')",
    )
    .expect("status");
    let home = tempfile::tempdir().expect("home");
    let cmd = format!(
        "'{}' supervisor --central '{}'; echo supervisor-exited-$?; sleep 30",
        env!("CARGO_BIN_EXE_ctiphone"),
        pg.url()
    );
    let tm = Tmux::start(home.path(), 100, 16, &cmd);
    let log = || tmux::phone_log(home.path());
    let line = |screen: &str, who: &str| tmux::line_with(screen, who).unwrap_or("").to_owned();
    let screen = tm.wait_for(
        "both agents, live",
        Duration::from_secs(10),
        |s| s.contains("alice") && s.contains("bob") && s.contains("live, updated"),
        log,
    );
    // Ready first; alice's clock runs from her status change.
    let a = screen.find("alice").unwrap_or(usize::MAX);
    let b = screen.find("bob").unwrap_or(0);
    assert!(a < b, "ready first:\n{screen}");
    assert!(line(&screen, "alice").contains("Ready"), "{screen}");
    assert!(line(&screen, "alice").contains("1:0"), "{screen}");
    assert!(line(&screen, "bob").contains("Not ready"), "{screen}");

    // No polling: between changes the supervisor's connection runs no query.
    let before = supervisor_query_start(&pg);
    assert!(
        !before.is_empty(),
        "the supervisor's backend is not in pg_stat_activity"
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        supervisor_query_start(&pg),
        before,
        "a query ran with nothing changed"
    );

    // A status change: on the screen within 2 s, by notification.
    let changed = Instant::now();
    pg.psql(
        "INSERT INTO ctiphone.status_changes (agent, seq, at, status, reason) VALUES
            ('bob', 2, now(), 'ready', ''), ('alice', 2, now(), 'not_ready', 'lunch')",
    )
    .expect("status");
    let screen = tm.wait_for(
        "bob ready and alice at lunch",
        Duration::from_secs(2),
        |s| {
            tmux::line_with(s, "bob").is_some_and(|l| l.contains("Ready"))
                && tmux::line_with(s, "alice").is_some_and(|l| l.contains("Not ready (lunch)"))
        },
        log,
    );
    eprintln!("status change on the screen after {:?}", changed.elapsed());
    let a = screen.find("alice").unwrap_or(0);
    let b = screen.find("bob").unwrap_or(usize::MAX);
    assert!(b < a, "re-sorted:\n{screen}");

    // A call ringing at carol (no status yet): her line, with the number and the CRM name.
    insert(
        &pg,
        &Call {
            agent: "'carol'",
            id: "c1",
            dir: "in",
            ring: "now()",
            answer: "NULL",
            end: "NULL",
            wrapup: "NULL",
            result: "NULL",
            state: "open",
            crm_error: "",
        },
    );
    tm.wait_for(
        "carol's call",
        Duration::from_secs(2),
        |s| {
            tmux::line_with(s, "carol")
                .is_some_and(|l| l.contains("ringing") && l.contains("0311112222 Taro"))
        },
        log,
    );

    // A burst: 40 commits in about a second, each notifying; the supervisor reads at most
    // every 200 ms (the server's statement log counts its reads), and shows the last one.
    pg.psql("ALTER SYSTEM SET log_statement = 'all'")
        .expect("log_statement");
    pg.psql("SELECT pg_reload_conf()").expect("reload");
    std::thread::sleep(Duration::from_millis(300));
    let reads = |pg: &Cluster| pg.log().matches("WITH RECURSIVE agents AS").count();
    let before = reads(&pg);
    let burst = Instant::now();
    pg.psql(
        "DO $$ BEGIN FOR i IN 1..40 LOOP
            INSERT INTO ctiphone.status_changes (agent, seq, at, status, reason)
                VALUES ('erin', i, now(), 'not_ready', 'burst-' || i);
            COMMIT;
            PERFORM pg_sleep(0.025);
        END LOOP; END $$",
    )
    .expect("burst");
    let took = burst.elapsed();
    tm.wait_for(
        "the burst's last change",
        Duration::from_secs(2),
        |s| tmux::line_with(s, "erin").is_some_and(|l| l.contains("burst-40")),
        log,
    );
    std::thread::sleep(Duration::from_millis(500));
    let n = reads(&pg) - before;
    let most = (took.as_millis() / 200) as usize + 3;
    eprintln!("burst of 40 commits in {took:?}: {n} reads");
    assert!(
        (1..=most).contains(&n),
        "{n} reads for a burst of {took:?} (at most {most})"
    );
    pg.psql("ALTER SYSTEM RESET log_statement")
        .expect("log_statement");
    pg.psql("SELECT pg_reload_conf()").expect("reload");

    // PostgreSQL goes away: the status line says so; back, it reconnects by itself.
    pg.stop().expect("stop");
    tm.wait_for(
        "the lost connection in the status line",
        Duration::from_secs(10),
        |s| s.contains("PostgreSQL unreachable, trying again in"),
        log,
    );
    pg.start_again().expect("start");
    pg.psql("INSERT INTO ctiphone.status_changes (agent, seq, at, status) VALUES ('dave', 1, now(), 'after_call')")
        .expect("status");
    tm.wait_for(
        "live again, with dave",
        Duration::from_secs(20),
        |s| {
            s.contains("live, updated")
                && tmux::line_with(s, "dave").is_some_and(|l| l.contains("After-call work"))
        },
        log,
    );

    tm.keys(&["q"]);
    tm.wait_for(
        "the supervisor to quit",
        Duration::from_secs(5),
        |s| s.contains("supervisor-exited-0"),
        log,
    );
}

/// `ctiphone supervisor` on `url` in a tmux of its own (120 columns, the wide table).
fn supervisor(url: &str) -> (tempfile::TempDir, Tmux) {
    let home = tempfile::tempdir().expect("home");
    let cmd = format!(
        "'{}' supervisor --central '{url}'; echo supervisor-exited-$?; sleep 30",
        env!("CARGO_BIN_EXE_ctiphone"),
    );
    let tm = Tmux::start(home.path(), 120, 12, &cmd);
    (home, tm)
}

#[test]
fn supervisor_shows_a_real_phone_ringing_talking_and_done() {
    let pg = with_schema();
    let config = format!(
        "{}\n[audio]\ninput = \"null\"\noutput = \"null\"\n\n[history]\ncentral = \"{}\"\nagent_id = \"agent-7\"\n",
        account_toml("1001", "pw1001", "", "udp", 60),
        pg.url()
    );
    let mut p = Phone::start(&config, &[]);
    let (home, tm) = supervisor(&pg.url());
    let log = || tmux::phone_log(home.path());
    tm.wait_for("live", secs(10), |s| s.contains("live, updated"), log);
    let agent = |s: &str| tmux::line_with(s, "agent-7").unwrap_or("").to_owned();

    let target = p.target();
    let uac = Sipp::spawn("uac_wait_bye.xml", &[target.as_str(), "-s", "0312345678"]);
    p.expect("incoming", secs(5));
    tm.wait_for(
        "agent-7 ringing",
        secs(5),
        |s| agent(s).contains("ringing") && agent(s).contains("0311112222 Taro Yamada"),
        log,
    );
    p.send(json!({"cmd": "answer"}));
    p.expect("answered", secs(5));
    tm.wait_for(
        "agent-7 talking",
        secs(5),
        |s| !agent(s).contains("ringing") && agent(s).contains("0311112222 Taro Yamada"),
        log,
    );
    p.send(json!({"cmd": "hangup"}));
    p.expect("ended", secs(5));
    uac.wait(secs(10)).assert_ok();
    // Done: no current call; today 1 offered, 1 answered, 0 missed, and a handle time.
    let counts = |s: &str| {
        let line = agent(s).replace('│', " ");
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        words[words.len().saturating_sub(4)..].to_vec()
    };
    let screen = tm.wait_for(
        "agent-7's call over",
        secs(5),
        |s| {
            !agent(s).contains("0311112222")
                && counts(s).get(..3) == Some(&["1", "1", "0"].map(String::from)[..])
        },
        log,
    );
    let handle = counts(&screen)[3].clone();
    assert!(handle.starts_with("0:0"), "handle time {handle}:\n{screen}");
}
