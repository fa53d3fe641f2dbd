//! The call history with real calls: sipp calls `ctiphone headless`; each result kind gives
//! exactly one row, read back by `ctiphone history list --json` from the same data directory;
//! a phone killed with SIGKILL during a call leaves its row, marked `interrupted` at the next
//! start.

mod common;

use serde_json::json;

use common::peers::{Phone, Sipp, account_toml, history_list, secs};

fn direct() -> String {
    format!(
        "{}\n[audio]\ninput = \"null\"\noutput = \"null\"\n",
        account_toml("1001", "pw1001", "", "udp", 60)
    )
}

#[test]
fn answered_rejected_and_missed_calls_each_leave_one_row() {
    let mut p = Phone::start(&direct(), &[]);
    let target = p.target();
    // Answered, then the caller hangs up.
    let uac = Sipp::spawn("uac_call_bye.xml", &[target.as_str(), "-s", "0312345678"]);
    p.expect("incoming", secs(5));
    p.send(json!({"cmd": "answer"}));
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();
    // Rejected.
    let uac = Sipp::spawn("uac_expect_decline.xml", &[target.as_str(), "-s", "0312345678"]);
    p.expect("incoming", secs(5));
    p.send(json!({"cmd": "reject"}));
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();
    // Missed: the caller cancels.
    let uac = Sipp::spawn("uac_cancel.xml", &[target.as_str(), "-s", "0312345678"]);
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();
    std::thread::sleep(secs(1));
    let rows = history_list(p.home());
    let results: Vec<&str> = rows.iter().map(|r| r["result"].as_str().unwrap_or("")).collect();
    assert_eq!(results, ["missed", "rejected", "answered"], "{rows:#?}");
    for r in &rows {
        assert_eq!(r["tel"], "0311112222", "{r}");
        assert_eq!(r["telname"], "Taro Yamada", "{r}");
        assert_eq!(r["called"], "0312345678", "{r}");
        assert_eq!(r["state"], "closed", "{r}");
        assert_eq!(r["direction"], "in", "{r}");
    }
    assert!(
        rows[2]["answer_at"].is_string() && rows[2]["duration_s"].is_number(),
        "{}",
        rows[2]
    );
}

#[test]
fn a_call_cut_by_kill_9_reads_interrupted_after_restart() {
    let mut p = Phone::start(&direct(), &["--auto-answer"]);
    let target = p.target();
    let uac = Sipp::spawn("uac_wait_bye.xml", &[target.as_str(), "-s", "0312345678"]);
    p.expect("answered", secs(5));
    let home = p.home().to_path_buf();
    p.kill9();
    drop(uac);
    // The next start (here `history list`, as the phone is gone) marks it.
    let rows = history_list(&home);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["state"], "interrupted", "{}", rows[0]);
    assert_eq!(rows[0]["result"], "interrupted", "{}", rows[0]);
    assert_eq!(rows[0]["tel"], "0311112222");
}
