//! `ctiphone completions SHELL` and `ctiphone man`: generated from the command line's
//! definition, so every subcommand is in them.

use std::process::Command;

const SUBCOMMANDS: [&str; 7] = [
    "check-config",
    "cti",
    "history",
    "bench",
    "headless",
    "demo",
    "man",
];

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ctiphone"))
        .args(args)
        .output()
        .expect("ctiphone runs");
    assert!(
        out.status.success(),
        "ctiphone {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn completion_scripts_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = run(&["completions", shell]);
        assert!(!script.trim().is_empty(), "{shell}");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completion lacks `{sub}`");
        }
    }
    // Options of subcommands too.
    let bash = run(&["completions", "bash"]);
    for opt in [
        "--interval",
        "--auto-answer",
        "--json",
        "--calls",
        "--agents",
        "--outage",
    ] {
        assert!(bash.contains(opt), "bash completion lacks `{opt}`");
    }
}

#[test]
fn the_man_page_lists_every_subcommand_and_pages_are_written_per_subcommand() {
    let page = run(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH ctiphone 1"),
        "{page}"
    );
    assert!(page.contains(".TH ctiphone 1"), "{page}");
    for sub in SUBCOMMANDS {
        let roff = sub.replace('-', "\\-");
        assert!(
            page.contains(&format!("ctiphone\\-{roff}(1)")),
            "man page lacks `{sub}`"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    run(&["man", "--dir", d]);
    for name in [
        "ctiphone.1",
        "ctiphone-demo.1",
        "ctiphone-bench.1",
        "ctiphone-bench-sip.1",
        "ctiphone-bench-fleet.1",
        "ctiphone-bench-audio.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        assert!(text.contains(".TH"), "{name} missing or empty");
    }
    let demo = std::fs::read_to_string(dir.path().join("ctiphone-demo.1")).unwrap();
    assert!(demo.contains("interval"), "{demo}");
}
