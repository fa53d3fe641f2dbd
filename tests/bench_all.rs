//! `ctiphone bench` (every figure in one run) on a machine without baresip: it still measures
//! ctiphone, says "not installed" for the peer, and its JSON has every metric.

use std::process::Command;

#[test]
fn the_combined_bench_runs_without_baresip_and_reports_every_metric() {
    // An empty PATH: baresip (and tmux) cannot be found.
    let out = Command::new(env!("CARGO_BIN_EXE_ctiphone"))
        .args(["bench", "--calls", "3", "--secs", "5", "--json"])
        .env("PATH", "/nonexistent")
        .output()
        .expect("ctiphone bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("baresip is not installed"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["baresip"], "not installed", "{v}");
    assert_eq!(v["failed_calls"]["ctiphone"], 0, "{v}");
    assert_eq!(v["failed_cti_searches"], 0, "{v}");
    let metrics = v["metrics"].as_array().expect("metrics");
    for name in [
        "INVITE -> first provisional median",
        "INVITE -> first provisional p99",
        "INVITE -> 200 OK median",
        "INVITE -> 200 OK p99",
        "idle RSS",
        "CPU in a call (one core)",
        "RSS in a call",
        "RTP send interval |dev| p50",
        "RTP send interval |dev| p99",
        "RTP send interval |dev| max",
        "ring -> CTI search result median",
        "ring -> CTI search result p99",
    ] {
        let m = metrics
            .iter()
            .find(|m| m["metric"] == name)
            .unwrap_or_else(|| panic!("no `{name}` in {v}"));
        assert!(m["ctiphone"].as_f64().is_some_and(|x| x >= 0.0), "{name}: {m}");
        assert!(m["baresip"].is_null(), "{name}: {m}");
        assert!(m["ratio"].is_null(), "{name}: {m}");
    }
}
