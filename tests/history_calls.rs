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

/// REC-2 end to end: a recorded call's finished file fires the `recorded` access with
/// {REC_PATH}, {REC_FILE}, {DURATION}, {RESULT} (a real program's argv), and the history row
/// holds the same path.
#[test]
fn a_finished_recording_fires_the_recorded_access_and_lands_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("recorded.jsonl");
    let config = format!(
        "{}[recording]\nauto = true\n\n[cti]\ntarget = \"custom\"\nnumbers = [{{ number = \"0312345678\" }}]\n\n[cti.recorded]\nmethod = \"command\"\ntemplate = \"python3 {} {} {{REC_PATH}} {{REC_FILE}} {{DURATION}} {{RESULT}} {{TEL}}\"\n",
        direct(),
        common::recorder().display(),
        out.display()
    );
    let mut p = Phone::start(&config, &["--auto-answer"]);
    let target = p.target();
    let uac = Sipp::spawn("uac_call_bye.xml", &[target.as_str(), "-s", "0312345678"]);
    p.expect("answered", secs(5));
    p.expect("ended", secs(10));
    uac.wait(secs(10)).assert_ok();
    let ev = p.expect("recorded", secs(5));
    let deadline = std::time::Instant::now() + secs(10);
    while common::recorded(&out).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let runs = common::recorded(&out);
    assert_eq!(runs.len(), 1, "{ev}");
    let argv = &runs[0].0;
    assert_eq!(argv.len(), 5, "{argv:?}");
    assert_eq!(Some(argv[0].as_str()), ev["path"].as_str(), "{ev}");
    assert!(std::path::Path::new(&argv[0]).is_file(), "{argv:?}");
    assert!(
        argv[0].ends_with(&format!("/{}", argv[1])) && argv[1].ends_with(".wav"),
        "{argv:?}"
    );
    assert!(argv[2].parse::<u64>().is_ok(), "{argv:?}");
    assert_eq!((argv[3].as_str(), argv[4].as_str()), ("answered", "0311112222"));
    let rows = history_list(p.home());
    assert_eq!(
        rows[0]["recording"].as_str(),
        Some(argv[0].as_str()),
        "{}",
        rows[0]
    );
}
