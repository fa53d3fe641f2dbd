//! `ctiphone bench audio` end to end, reduced: the 3 s reference, seed 1, PCMU at 0/0 and at
//! 10 % / 100 ms, into ctiphone and baresip at once, each phone's audio scored with PESQ.
//! Checks that the scores are sane (clean G.711 scores at least 3.5 on both phones, heavy
//! loss scores lower) and that the delay and CPU lines are there. Needs espeak-ng and
//! baresip (tests/run.sh installs both): without them it fails, saying which is missing.

use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

/// Held while a bench runs: the live one is a measurement, and the offline one beside it on 2
/// cores would be its load.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn which(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// Runs `ctiphone bench audio ARGS --json` (after checking espeak-ng, which speaks the
/// reference) and returns its JSON report; fails on a non-zero exit or output that is not JSON.
fn bench_json(args: &[&str]) -> Value {
    assert!(
        which("espeak-ng"),
        "espeak-ng is missing (Debian package espeak-ng): the bench's reference is spoken by it"
    );
    let bin = std::env::var_os("CTIPHONE_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_ctiphone").into());
    let _running = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = Command::new(bin)
        .args(["bench", "audio"])
        .args(args)
        .arg("--json")
        .output()
        .expect("ctiphone bench audio runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench audio {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {} / {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn mean(v: &Value, who: &str) -> f64 {
    v[who]["mean"]
        .as_f64()
        .unwrap_or_else(|| panic!("no {who} mean in {v}"))
}

#[test]
fn reduced_audio_bench_scores_both_phones_sanely() {
    assert!(
        which("baresip"),
        "baresip is missing (Debian package baresip-core): the bench compares against it"
    );
    let started = std::time::Instant::now();
    let v = bench_json(&["--short", "--seeds", "1", "--conditions", "0/0,10/100"]);
    assert_eq!(v["baresip"], "installed", "{v}");
    let rows = v["conditions"].as_array().expect("conditions");
    assert_eq!(rows.len(), 2, "{v}");
    let (clean, lossy) = (&rows[0], &rows[1]);
    assert_eq!(clean["loss_percent"], 0.0, "{v}");
    for who in ["ctiphone", "baresip"] {
        let c = mean(clean, who);
        let l = mean(lossy, who);
        assert!(c >= 3.5, "{who}: clean G.711 MOS {c:.2} < 3.5: {v}");
        assert!(l < c, "{who}: 10 % loss MOS {l:.2} not below clean {c:.2}: {v}");
        assert!(l >= 1.0, "{who}: MOS {l:.2} off the scale: {v}");
    }
    let delay = v["delay_added_at_0_jitter_ms"]["ctiphone"]
        .as_f64()
        .unwrap_or_else(|| panic!("no ctiphone delay: {v}"));
    // The figure's zero is the caller's receipt of the 200 OK, while the phone's file starts
    // when it answers: a debug build on a busy machine reads up to that transit early (-25 ms
    // seen), so only a figure far outside a call's playout is wrong here.
    assert!((-100.0..500.0).contains(&delay), "ctiphone delay {delay} ms: {v}");
    for who in ["ctiphone", "baresip"] {
        let cpu = v["cpu_in_call_percent"][who]
            .as_f64()
            .unwrap_or_else(|| panic!("no {who} CPU: {v}"));
        assert!(cpu > 0.0 && cpu.is_finite(), "{who} CPU {cpu}: {v}");
    }
    eprintln!("bench audio (reduced) took {:?}: {v}", started.elapsed());
}

/// `bench audio --offline`: ctiphone's own receive path (jitter buffer, concealment, Opus FEC)
/// run in-process on the bench's seeded packet timeline, against the bench's reference
/// receiver (a perfect buffer: every packet in time, lost PCMU zero-filled, lost Opus from the
/// next packet's FEC). Deterministic: the 3 s reference, seeds 1-3.
/// - Jitter alone (0 % / 100 ms, packets reordered) costs nothing: the buffer follows the
///   delay instead of dropping late packets.
/// - 10 % / 100 ms PCMU: the concealment beats the zero-fill by at least 0.4 MOS.
/// - 10 % / 100 ms Opus: within 0.1 of the perfect buffer with FEC, so the buffer waits for the
///   packet after a lost one (its FEC) and loses none to lateness.
#[test]
fn offline_receive_path_follows_jitter_conceals_and_uses_fec() {
    let v = bench_json(&[
        "--offline",
        "--short",
        "--seeds",
        "1,2,3",
        "--conditions",
        "0/0,0/100,10/100,opus:10/100",
    ]);
    let rows = v["conditions"].as_array().expect("conditions");
    assert_eq!(rows.len(), 4, "{v}");
    // No phone ran.
    assert!(
        rows.iter()
            .all(|r| r["ctiphone"]["mos"].as_array().is_some_and(Vec::is_empty)),
        "{v}"
    );
    let ours = |i: usize| mean(&rows[i], "ctiphone_in_process");
    let perfect = |i: usize| mean(&rows[i], "reference_receiver");
    assert!(
        (ours(0) - perfect(0)).abs() < 0.01,
        "clean: {} vs {}",
        ours(0),
        perfect(0)
    );
    assert!(
        ours(1) >= ours(0) - 0.02,
        "jitter alone costs: {} vs clean {}",
        ours(1),
        ours(0)
    );
    assert!(
        ours(2) >= perfect(2) + 0.4,
        "PCMU 10 %/100 ms: {} vs zero-fill {}",
        ours(2),
        perfect(2)
    );
    assert!(
        ours(3) >= perfect(3) - 0.1,
        "Opus 10 %/100 ms: {} vs perfect FEC {}",
        ours(3),
        perfect(3)
    );
}
