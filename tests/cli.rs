//! The admin commands as a user runs them: the real binary, a real loopback CRM.

mod common;

use std::process::Command;

use common::Crm;

fn ctiphone() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ctiphone"));
    c.env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_CONFIG_HOME", "/nonexistent-ctiphone");
    c
}

fn example() -> String {
    format!("{}/config.example.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_accepts_the_example_before_or_after_the_subcommand() {
    for args in [
        vec!["--config", &example(), "check-config"],
        vec!["check-config", "--config", &example()],
    ] {
        let out = ctiphone().args(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).unwrap();
        assert_eq!(line.lines().count(), 1);
        assert!(
            line.contains(": ok: target custom, 2 of 3 target numbers checked"),
            "{line}"
        );
    }
}

#[test]
fn check_config_locates_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[account]\ntransport = \"udpp\"\n[cti.search]\nmethod = \"get\"\ntemplate = \"https://h/?q=MD5({TEL}\"\ncaptures = { X = \"regex:[\" }\n",
    )
    .unwrap();
    let out = ctiphone()
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let f = file.display().to_string();
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with(&format!("{f}:2:13: unknown variant `udpp`")),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{f}:5:29: template: unbalanced `(` of MD5( at position 17"
        )),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&format!("{f}:6:18: capture `X`: invalid regular expression")),
        "{err}"
    );
    // A missing file is an error too.
    let out = ctiphone()
        .args(["check-config", "--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("/nonexistent/x.toml: cannot read the file"));
}

#[test]
fn expand_prints_the_raw_expansion_with_secrets_masked() {
    let out = ctiphone()
        .args([
            "cti",
            "expand",
            "--config",
            &example(),
            "--tel",
            "+81 3&x",
            "--id",
            "call-1",
        ])
        .arg("q={TEL}&id={ID}&a={AID}&p={APW}&t={TOKEN}&h=SHA256(abc)&ext={EXT}&sv={SVADDR}")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim_end(),
        "q=+81 3&x&id=call-1&a=agent201&p=***&t=***&h=BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD&ext=201&sv=https://crm.example:8000/"
    );
    let out = ctiphone().args(["cti", "expand", "x={NOPE}"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("template:3: unknown parameter `{NOPE}`"));
}

/// Runs the binary off the async runtime (the CRM serves on it meanwhile).
async fn fire(
    file: &std::path::Path,
    args: impl FnOnce(&mut Command, &std::path::Path) + Send + 'static,
) -> std::process::Output {
    let file = file.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut c = ctiphone();
        args(&mut c, &file);
        c.output().expect("run ctiphone")
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread")]
async fn fire_runs_the_accesses_for_real_and_prints_one_json_object() {
    let crm = Crm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            r#"[agent]
id = "a1"
password = "hunter2"
[cti]
target = "custom"
timeout_seconds = 1
server_address = "{url}/"
numbers = [{{ number = "0312345678" }}]
[cti.auth]
method = "post"
template = "{{SVADDR}}login?id={{AID}}&pw={{APW}}"
captures = {{ TOKEN = "json:/token" }}
[cti.search]
method = "get"
template = "{{SVADDR}}search?tel={{TEL}}&token={{TOKEN}}"
captures = {{ COMPANY = "json:/company", NAME = "json:/name", EXT_ID = "json:/id" }}
[cti.ring]
method = "browser_get"
template = "{{SVADDR}}customers/{{EXT_ID}}"
[cti.hangup]
method = "get"
template = "{{SVADDR}}status/500"
"#,
            url = crm.url()
        ),
    )
    .unwrap();
    let out = fire(&file, |c, f| {
        c.args(["cti", "fire", "ring", "--config"]).arg(f).args([
            "--tel",
            "0311112222",
            "--called",
            "0312345678",
        ]);
    })
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["event"], "ring");
    assert_eq!(v["skipped"], serde_json::Value::Null);
    let actions = v["actions"].as_array().unwrap();
    let names: Vec<_> = actions.iter().map(|a| a["access"].as_str().unwrap()).collect();
    assert_eq!(names, ["auth", "search", "ring"]);
    assert_eq!(actions[0]["target"]["body"], "id=a1&pw=***");
    assert_eq!(
        actions[1]["target"],
        format!("{}/search?tel=0311112222&token=***", crm.url())
    );
    assert_eq!(actions[1]["status"], 200);
    assert!(actions[1]["ms"].as_u64().is_some());
    assert_eq!(
        actions[2]["link"],
        format!("{}/customers/C-42", crm.url()),
        "no graphical session: a link"
    );
    assert_eq!(v["vars"]["COMPANY"], "ACME 株式会社");
    assert_eq!(v["vars"]["TOKEN"], "***");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));

    // A failing access: exit 1, the HTTP status and why.
    let out = fire(&file, |c, f| {
        c.arg("--config").arg(f).args([
            "cti",
            "fire",
            "hangup",
            "--tel",
            "0311112222",
            "--called",
            "0312345678",
        ]);
    })
    .await;
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["actions"][0]["status"], 500);
    assert_eq!(v["actions"][0]["ok"], false);
    assert_eq!(v["actions"][0]["error"], "HTTP 500 Internal Server Error");

    // Not a target: skipped, with why.
    let out = fire(&file, |c, f| {
        c.args(["cti", "fire", "ring", "--config"])
            .arg(f)
            .args(["--tel", "1", "--called", "999"]);
    })
    .await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["skipped"], "called number 999 is not a checked target number");
    assert_eq!(out.status.code(), Some(0));
}

/// HTTPS accesses are checked against the system's trust store (`SSL_CERT_FILE` here: the
/// test's CA), read only when an HTTPS server is first met: with no CA certificate on the
/// host at all, plain `http://` accesses still work and an `https://` one fails with the
/// reason (the client used to be unbuildable there).
#[tokio::test(flavor = "multi_thread")]
async fn https_accesses_use_the_system_trust_store_read_when_first_needed() {
    let crm = Crm::start().await;
    let (tls, ca) = common::tls_server_of_a_test_ca().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let empty_file = dir.path().join("empty.pem");
    std::fs::write(&empty_file, "").unwrap();
    let empty_dir = dir.path().join("certs");
    std::fs::create_dir(&empty_dir).unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            r#"[cti]
target = "custom"
timeout_seconds = 5
numbers = [{{ number = "0312345678" }}]
[cti.search]
method = "get"
template = "{url}/search?tel={{TEL}}"
captures = {{ NAME = "json:/name" }}
[cti.ring]
method = "get"
template = "https://{tls}/ring?tel={{TEL}}"
"#,
            url = crm.url()
        ),
    )
    .unwrap();
    let run = |roots: std::path::PathBuf, dir: std::path::PathBuf| {
        fire(&file, move |c, f| {
            c.args(["cti", "fire", "ring", "--config"])
                .arg(f)
                .args(["--tel", "0311112222", "--called", "0312345678"])
                .env("SSL_CERT_FILE", roots)
                .env("SSL_CERT_DIR", dir);
        })
    };
    let out = run(ca_file, empty_dir.clone()).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let actions = v["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{v}");
    assert_eq!(actions[1]["access"], "ring", "{v}");
    assert_eq!(actions[1]["status"], 200, "the test CA is trusted: {v}");
    assert_eq!(actions[1]["ok"], true, "{v}");

    let out = run(empty_file, empty_dir).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let actions = v["actions"].as_array().unwrap();
    assert_eq!(actions[0]["access"], "search", "{v}");
    assert_eq!(actions[0]["status"], 200, "plain HTTP needs no trust store: {v}");
    assert_eq!(v["vars"]["NAME"], "Taro Yamada", "{v}");
    assert_eq!(actions[1]["ok"], false, "{v}");
    let error = actions[1]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("TLS: ") && error.contains("No CA certificates"),
        "{v}"
    );
}
