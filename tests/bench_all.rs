//! `ctiphone bench` as a comparison: with baresip installed (tests/run.sh installs it), every
//! figure of the combined run is a real measurement of both phones: each answered every call,
//! the floor (the bench's own minimal UAS) lies below both, the ratios are finite and positive.
//! The same for sipp's method (`bench sip --sipp`), and `bench sip` without baresip still
//! measures ctiphone and the floor. Few calls each: these check the figures exist and hold
//! together, not how fast anything is.
//!
//! The benches run one at a time: each is a measurement, and run side by side on 2 cores each
//! would be the other's load (a caller descheduled while its callee answers reads a time shorter
//! than the floor's; `bench sip --sipp` then said so, and the test failed on it).

use std::process::Command;
use std::sync::Mutex;

/// Held while a bench runs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

use serde_json::Value;

/// The binary under test: the worktree's copy in `$CTIPHONE_TEST_BIN` when set, as the other
/// tests.
fn ctiphone_bin() -> std::ffi::OsString {
    std::env::var_os("CTIPHONE_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_ctiphone").into())
}

/// `ctiphone ARGS`: its JSON and stderr. `path`: PATH for it (None: this one's).
fn bench(args: &[&str], path: Option<&str>) -> (Value, String) {
    let mut cmd = Command::new(ctiphone_bin());
    cmd.args(args);
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    // A test that failed while holding it does not make the others fail.
    let running = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = cmd.output().expect("ctiphone bench runs");
    drop(running);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ctiphone {args:?} failed: {stderr}");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ctiphone {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (v, stderr)
}

fn positive(v: &Value) -> f64 {
    let x = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "not a positive figure: {v}");
    x
}

/// A callee's failed, answered (200) and rung (180) calls.
fn counts(r: &Value) -> [Option<u64>; 3] {
    [r["failed"].as_u64(), r["answered"].as_u64(), r["rang"].as_u64()]
}

fn row<'a>(metrics: &'a [Value], name: &str) -> &'a Value {
    metrics
        .iter()
        .find(|m| m["metric"] == name)
        .unwrap_or_else(|| panic!("no `{name}` in {metrics:?}"))
}

#[test]
fn the_combined_bench_compares_ctiphone_with_baresip_above_the_floor() {
    let calls = 10;
    let (v, _) = bench(&["bench", "--calls", "10", "--secs", "5", "--json"], None);
    assert_eq!(
        v["baresip"], "installed",
        "the comparison needs baresip (apt-get install baresip-core): {v}"
    );
    for who in ["ctiphone", "baresip", "floor"] {
        assert_eq!(v["failed_calls"][who], 0, "{who}: {v}");
    }
    assert_eq!(v["failed_cti_searches"], 0, "{v}");
    assert_eq!(v["below_floor"], serde_json::json!([]), "{v}");
    assert_eq!(v["gap_ms"], 50, "{v}");
    let metrics = v["metrics"].as_array().expect("metrics");
    for series in ["", "back-to-back: "] {
        for resp in ["180 Ringing", "200 OK"] {
            for stat in ["median", "p99"] {
                let name = format!("{series}INVITE -> {resp} {stat}");
                let m = row(metrics, &name);
                // Both phones and the floor answered every call of the series.
                for who in ["ctiphone", "baresip", "floor"] {
                    assert_eq!(m["samples"][who], calls, "{name}, {who}: {m}");
                }
                let (ours, theirs, floor) = (
                    positive(&m["ctiphone"]),
                    positive(&m["baresip"]),
                    positive(&m["floor"]),
                );
                if stat == "median" {
                    assert!(
                        floor < ours && floor < theirs,
                        "{name}: the floor is not below both: {m}"
                    );
                    positive(&m["ctiphone_above_floor"]);
                    positive(&m["baresip_above_floor"]);
                    positive(&m["ratio_above_floor"]);
                    positive(&m["ratio"]);
                }
            }
        }
        // Neither phone sends a 100 for a call it rings at once (RFC 3261 §17.2.1): the row is
        // there, measured for whoever sends one, empty for both.
        let name = format!("{series}INVITE -> 100 Trying median");
        let m = row(metrics, &name);
        for who in ["ctiphone", "baresip"] {
            assert_eq!(m["samples"][who], 0, "{name}, {who}: {m}");
            assert!(m[who].is_null(), "{name}, {who}: {m}");
        }
    }
    for name in ["idle RSS", "CPU in a call (one core)", "RSS in a call"] {
        let m = row(metrics, name);
        positive(&m["ctiphone"]);
        positive(&m["baresip"]);
        positive(&m["ratio"]);
        assert!(m["floor"].is_null(), "{name}: {m}");
    }
    for name in [
        "RTP send interval |dev| p50",
        "RTP send interval |dev| p99",
        "RTP send interval |dev| max",
    ] {
        let m = row(metrics, name);
        for who in ["ctiphone", "baresip"] {
            assert!(m[who].as_f64().is_some_and(|x| x >= 0.0), "{name}, {who}: {m}");
        }
    }
    for name in [
        "ring -> CTI search result median",
        "ring -> CTI search result p99",
    ] {
        let m = row(metrics, name);
        positive(&m["ctiphone"]);
        assert!(m["baresip"].is_null() && m["ratio"].is_null(), "{name}: {m}");
    }
}

#[test]
fn sipp_measures_both_phones_and_the_floor_the_same_way() {
    let (v, _) = bench(&["bench", "sip", "--sipp", "--calls", "5", "--json"], None);
    assert_eq!(v["method"], "sipp", "{v}");
    assert!(
        v["sipp_version"].as_str().is_some_and(|s| s.contains("SIPp")),
        "{v}"
    );
    assert_eq!(v["gap_ms"], 50, "{v}");
    for who in ["ctiphone", "baresip", "floor"] {
        let r = &v[who];
        assert_eq!(counts(r), [Some(0), Some(5), Some(5)], "{who}: {r}");
        assert!(r["invite_to_100_us"].is_null(), "sipp does not time the 100: {r}");
        // sipp's own RTDs counted the same calls.
        for rtd in ["180", "200"] {
            let name = format!("{who}_{rtd}");
            assert_eq!(v["sipp_rtd_us"]["rtds"][&name]["values"], 5, "{name}: {v}");
        }
    }
    assert_eq!(v["below_floor"], serde_json::json!([]), "{v}");
    for key in ["invite_to_180_us", "invite_to_200_us"] {
        let floor = positive(&v["floor"][key]["median"]);
        for who in ["ctiphone", "baresip"] {
            assert!(
                floor < positive(&v[who][key]["median"]),
                "{key}: the floor is not below {who}: {v}"
            );
            positive(&v[who]["above_floor"][key]["median"]);
        }
        positive(&v["ratio_above_floor"][key.trim_end_matches("_us")]["median"]);
    }
    assert!(v["back_to_back"].is_null(), "{v}");
}

#[test]
fn without_baresip_the_sip_bench_still_measures_ctiphone_and_the_floor() {
    // A PATH where baresip cannot be found.
    let (v, stderr) = bench(&["bench", "sip", "--calls", "3", "--json"], Some("/nonexistent"));
    assert!(stderr.contains("baresip is not installed"), "{stderr}");
    assert_eq!(v["baresip_installed"], false, "{v}");
    assert!(v["baresip"].is_null(), "{v}");
    for series in [&v, &v["back_to_back"]] {
        for who in ["ctiphone", "floor"] {
            let r = &series[who];
            assert_eq!(counts(r), [Some(0), Some(3), Some(3)], "{who}: {r}");
            positive(&r["invite_to_180_us"]["median"]);
            positive(&r["invite_to_200_us"]["p99"]);
        }
        // A call rung at once gets no 100 Trying.
        assert!(
            series["ctiphone"]["invite_to_100_us"]["median"].is_null(),
            "{series}"
        );
        assert!(
            series["ctiphone"]["above_floor"]["invite_to_180_us"]["median"].is_f64(),
            "{series}"
        );
        assert!(
            series["ratio_above_floor"]
                .as_object()
                .is_some_and(|o| o.is_empty()),
            "{series}"
        );
    }
    assert_eq!(v["back_to_back"]["gap_ms"], 0, "{v}");
    positive(&v["ctiphone"]["idle_rss_kib"]);
}

/// `bench ui` times ring → the CRM's values on a real terminal (tmux, which tests/run.sh
/// installs) against its own CRM: every call's values showed, the last one on the screen, and
/// each figure is a measurement: the total above the method's floor and above the CRM's own
/// time, which it contains.
#[test]
fn the_ui_bench_times_ring_to_crm_values_in_tmux() {
    let (v, stderr) = bench(
        &[
            "bench",
            "ui",
            "--calls",
            "5",
            "--tmux-calls",
            "4",
            "--crm-ms",
            "5",
            "--json",
        ],
        None,
    );
    let e = &v["ring_to_crm_values_on_screen_ms"];
    assert_eq!(e["calls"], 4, "{v} {stderr}");
    assert_eq!(e["failed"], 0, "{v}");
    assert_eq!(e["last_on_screen"], true, "{v}");
    let total = positive(&e["total"]["median"]);
    let crm = positive(&e["crm_reply"]["median"]);
    let floor = positive(&e["floor"]["median"]);
    positive(&e["phone"]["median"]);
    // The CRM waited 5 ms over each search: its own time holds them, the total holds it.
    assert!(crm >= 5.0 && total > crm, "CRM {crm} ms, total {total} ms");
    assert!(total > floor, "total {total} ms, floor {floor} ms");
    // Idle, as an agent runs it: the TUI and the daemon it started, each read; and the daemon
    // ended with the bench (it outlives its TUI by design).
    for who in ["tui", "daemon"] {
        positive(&v["idle"][who]["rss_kib"]);
        assert!(v["idle"][who]["cpu_ticks_10s"].is_u64(), "{who}: {v}");
    }
    assert_eq!(
        positive(&v["idle_rss_kib"]),
        positive(&v["idle"]["tui"]["rss_kib"]) + positive(&v["idle"]["daemon"]["rss_kib"]),
        "{v}"
    );
    let left = daemons_of_this_binary();
    assert!(left.is_empty(), "the bench left daemons running: {left:?}");
}

/// `ctiphone … daemon` processes of the binary under test still running.
fn daemons_of_this_binary() -> Vec<String> {
    let bin = ctiphone_bin().to_string_lossy().into_owned();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| {
            c.split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
        })
        .filter(|args| args.first() == Some(&bin) && args.iter().any(|a| a == "daemon"))
        .map(|args| args.join(" "))
        .collect()
}

/// `bench media --srtp` (issue 19's "Speed"): ctiphone plain, ctiphone SRTP and baresip SRTP
/// called at once; each figure is a measurement, both SRTP callees answered `RTP/SAVP` and
/// every packet they sent authenticated at the bench's caller (and ours at ctiphone). No
/// goal is asserted here: a 5 s round on a shared machine says nothing about speed.
#[test]
fn the_srtp_media_bench_measures_plain_and_srtp_calls_at_once() {
    let (v, stderr) = bench(
        &[
            "bench", "media", "--srtp", "--secs", "5", "--rounds", "1", "--json",
        ],
        None,
    );
    assert_eq!(v["rounds"], 1, "{v} {stderr}");
    for who in ["ctiphone_plain", "ctiphone_srtp", "baresip_srtp"] {
        let c = &v[who];
        assert!(c.is_object(), "{who} was not measured (baresip installed?): {v}");
        positive(&c["cpu_percent"]);
        positive(&c["rss_in_call_kib"]);
        assert!(c["rtp_packets"].as_u64().is_some_and(|n| n > 100), "{who}: {c}");
        assert!(
            c["send_interval_deviation_p99_ms"]
                .as_f64()
                .is_some_and(|x| x >= 0.0),
            "{who}: {c}"
        );
        if who == "ctiphone_plain" {
            assert!(c["srtp"].is_null(), "{c}");
            continue;
        }
        let s = &c["srtp"];
        assert_eq!(s["answer_proto"], "RTP/SAVP", "{who}: {c}");
        assert_eq!(s["suite"], "AES_CM_128_HMAC_SHA1_80", "{who}: {c}");
        assert_eq!(s["rejected"], 0, "{who}: {c}");
        assert_eq!(s["authenticated"], c["rtp_packets"], "{who}: {c}");
    }
    let e = &v["ctiphone_srtp"]["callee_events"];
    assert_eq!(e["answered_srtp"], 1, "{v}");
    assert_eq!(e["srtp_auth_failed"], 0, "{v}");
    for ratio in ["ctiphone_srtp_over_plain", "ctiphone_srtp_over_baresip_srtp"] {
        positive(&v["ratios"][ratio]["cpu_percent"]);
    }
    assert!(
        v["floor"]["cpu_percent"].as_f64().is_some_and(|x| x >= 0.0),
        "{v}"
    );
}
