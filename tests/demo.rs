//! `ctiphone demo` as a newcomer runs it, and its parts: the terminal UI end to end in tmux
//! (the popup shows the known customer's CRM record, the CRM link, answer with the caller's
//! audio heard, hang up, the history row, quit, the printed configuration valid for
//! check-config); the sample callers through a real headless phone; the demo CRM's API.

#[path = "common/tmux.rs"]
mod tmux;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctiphone::demo::caller::{self, Caller, HOSTILE_DISPLAY, UNKNOWN_TEL};
use ctiphone::demo::crm::{self, Crm, HOSTILE, KNOWN};
use ctiphone::demo::world;
use tmux::Tmux;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ctiphone")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The peak absolute sample of a mono 16-bit WAV file.
fn peak(path: &Path) -> i32 {
    let r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.into_samples::<i16>()
        .map(|s| i32::from(s.unwrap()).abs())
        .max()
        .unwrap_or(0)
}

#[test]
fn demo_in_tmux_popup_link_answer_hangup_history_and_quit() {
    let home = tempfile::Builder::new()
        .prefix("demo-tmux")
        .tempdir()
        .expect("temp dir");
    let dir = home.path().join("demo");
    let heard = home.path().join("heard.wav");
    // No graphical session: the CRM link is shown, not opened. A long interval: no second call
    // rings while the test quits.
    let command = format!(
        "env -u DISPLAY -u WAYLAND_DISPLAY CTIPHONE_LOG=debug '{}' demo --dir '{}' --interval 60 --audio-out '{}'; \
         echo ctiphone-exited-$?; sleep 30",
        bin(),
        dir.display(),
        heard.display()
    );
    let t = Tmux::start(home.path(), 110, 34, &command);
    let log = dir.join("data/ctiphone/ctiphone.log");
    let diag = || {
        format!(
            "---- log ----\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };

    // The first caller is the known customer: the popup shows the CRM's record.
    let screen = t.wait_for(
        "the popup with the known customer's CRM record",
        // A first call sent before the phone listened is placed again (after its INVITE
        // times out, 32 s): long enough for that on a loaded machine.
        SECS(45),
        |s| s.contains("Incoming call") && s.contains("ACME Trading") && s.contains("C-1001"),
        diag,
    );
    assert!(
        tmux::line_with(&screen, "CRM name").is_some_and(|l| l.contains(KNOWN.name)),
        "{screen}"
    );
    assert!(
        tmux::line_with(&screen, "│Number ").is_some_and(|l| l.contains(KNOWN.tel)),
        "{screen}"
    );
    // The caller's P-Asserted-Identity names it on the SIP side.
    assert!(screen.contains("YAMADA TARO"), "{screen}");

    // Enter: the click access; with no graphical session the popup shows the link.
    t.keys(&["Enter"]);
    let screen = t.wait_for(
        "the CRM link in the popup",
        SECS(10),
        |s| s.contains("/customers/C-1001"),
        diag,
    );
    let link = tmux::line_with(&screen, "http://127.0.0.1:")
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
        .expect("a link")
        .to_owned();
    let page = runtime().block_on(async {
        reqwest::get(&link)
            .await
            .expect("the link answers")
            .text()
            .await
            .expect("a page")
    });
    assert!(
        page.contains(KNOWN.company) && page.contains(KNOWN.note),
        "{page}"
    );

    // Answer: the caller's chime plays into the speaker (here a file).
    t.keys(&["a"]);
    t.wait_for(
        "the call to be active",
        SECS(10),
        |s| tmux::line_with(s, "active").is_some_and(|l| l.contains(KNOWN.tel)),
        diag,
    );
    std::thread::sleep(SECS(2));
    t.keys(&["x"]);
    let screen = t.wait_for(
        "the history row of the answered call",
        SECS(10),
        |s| tmux::line_with(s, "answered").is_some_and(|l| l.contains(KNOWN.tel)),
        diag,
    );
    assert!(
        tmux::line_with(&screen, "answered").is_some_and(|l| l.contains("ACME Trading")),
        "{screen}"
    );
    assert!(tmux::line_with(&screen, "active").is_none(), "{screen}");

    t.keys(&["q"]);
    let screen = t.wait_for(
        "the demo to exit",
        SECS(15),
        |s| s.contains("ctiphone-exited-"),
        diag,
    );
    assert!(screen.contains("ctiphone-exited-0"), "{screen}");
    assert!(screen.contains("its files stay in"), "{screen}");
    drop(t);

    assert!(
        peak(&heard) > 2000,
        "the caller's audio sample did not reach the speaker"
    );
    // The printed configuration is a valid template.
    let config = dir.join("config.toml");
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The history stayed in the demo's directory.
    let out = Command::new(bin())
        .args(["history", "list", "--json"])
        .env("XDG_DATA_HOME", dir.join("data"))
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["tel"], KNOWN.tel);
    assert_eq!(rows[0]["result"], "answered");
    assert_eq!(rows[0]["company"], KNOWN.company);
    assert!(!home.path().join("data/ctiphone/history.sqlite3").exists());
}

/// The headless phone's events of one call.
#[derive(Default, Debug)]
struct Seen {
    incoming: Option<serde_json::Value>,
    search: Option<serde_json::Value>,
    answered: bool,
    ended: Option<serde_json::Value>,
}

#[test]
fn each_sample_caller_reaches_a_real_phone_and_its_crm_search() {
    let rt = runtime();
    let home = tempfile::tempdir().unwrap();
    let crm = rt.block_on(Crm::start()).expect("the demo CRM");
    let config = home.path().join("config.toml");
    let listen = "127.0.0.1:0".parse().unwrap();
    std::fs::write(&config, world::config_text(&crm.url(), listen, home.path())).unwrap();
    let mut phone = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .args(["headless", "--auto-answer", "--audio-out"])
        .arg(home.path().join("heard.wav"))
        .env("XDG_DATA_HOME", home.path().join("data"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ctiphone headless");
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = phone.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str(&line) else {
                continue;
            };
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let ready = rx.recv_timeout(SECS(10)).expect("the ready event");
    assert_eq!(ready["event"], "ready", "{ready}");
    let phone_addr = ready["listen"].as_str().unwrap().parse().unwrap();

    let sample = home.path().join("sample.wav");
    caller::write_sample(&sample).unwrap();
    let caller = rt
        .block_on(Caller::start(caller::Settings {
            phone: phone_addr,
            called: world::CALLED.to_owned(),
            sample,
            first_after: Duration::from_millis(300),
            interval: Duration::from_millis(300),
            ring_for: SECS(10),
            talk_for: Duration::from_millis(1500),
        }))
        .expect("the demo caller");

    // Four calls, one per sample, each answered, searched and hung up by the caller.
    let mut calls: Vec<(String, Seen)> = Vec::new();
    let end = Instant::now() + SECS(60);
    while calls.iter().filter(|(_, s)| s.ended.is_some()).count() < 4 {
        let left = end.saturating_duration_since(Instant::now());
        let v = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("waited 60 s for four calls; saw {calls:#?}"));
        let Some(id) = v["call"].as_str().map(str::to_owned) else {
            continue;
        };
        let i = match calls.iter().position(|(c, _)| *c == id) {
            Some(i) => i,
            None => {
                calls.push((id, Seen::default()));
                calls.len() - 1
            }
        };
        let seen = &mut calls[i].1;
        match v["event"].as_str() {
            Some("incoming") => seen.incoming = Some(v),
            Some("answered") => seen.answered = true,
            Some("ended") => seen.ended = Some(v),
            Some("cti") if v["access"] == "search" && v["ok"].is_boolean() => seen.search = Some(v),
            _ => {}
        }
    }
    rt.block_on(caller.stop());
    let _ = std::io::Write::write_all(phone.stdin.as_mut().unwrap(), b"{\"cmd\":\"quit\"}\n");
    let _ = phone.wait();

    let samples = caller::samples();
    assert_eq!(calls.len(), samples.len(), "{calls:#?}");
    for (id, s) in &calls {
        assert!(s.answered, "{id}: {s:?}");
        assert_eq!(
            s.ended.as_ref().unwrap()["reason"],
            "remote_hangup",
            "{id}: {s:?}"
        );
        assert_eq!(s.incoming.as_ref().unwrap()["called"], world::CALLED, "{s:?}");
        assert_eq!(
            s.search.as_ref().map(|v| &v["ok"]),
            Some(&true.into()),
            "{id}: {s:?}"
        );
    }
    let incoming = |i: usize| calls[i].1.incoming.clone().unwrap();
    let vars = |i: usize| calls[i].1.search.clone().unwrap()["vars"].clone();
    // Known: P-Asserted-Identity names the caller, the CRM knows it.
    assert_eq!(incoming(0)["tel"], KNOWN.tel);
    assert_eq!(incoming(0)["telname"], "YAMADA TARO");
    assert_eq!(vars(0)["COMPANY"], KNOWN.company);
    assert_eq!(vars(0)["NAME"], KNOWN.name);
    assert_eq!(vars(0)["EXT_ID"], KNOWN.id);
    // Unknown: no display name, not in the CRM.
    assert_eq!(incoming(1)["tel"], UNKNOWN_TEL);
    assert_eq!(incoming(1)["telname"], "");
    assert_eq!(vars(1)["NAME"], crm::UNKNOWN_NAME);
    // Anonymous: Privacy: id.
    assert_eq!(incoming(2)["anonymous"], true);
    // Hostile: the display name arrives byte for byte, as data.
    assert_eq!(incoming(3)["telname"], HOSTILE_DISPLAY);
    assert_eq!(incoming(3)["tel"], HOSTILE.tel);
    assert_eq!(vars(3)["COMPANY"], HOSTILE.company);
    // One login for the whole session, a search per call.
    assert_eq!(crm.logins(), 1);
    assert_eq!(crm.searches(), 4);
}

#[test]
fn the_demo_crm_checks_the_login_and_the_token_and_serves_pages() {
    let rt = runtime();
    rt.block_on(async {
        let crm = Crm::start().await.expect("the demo CRM");
        let url = crm.url();
        let http = reqwest::Client::new();
        let login = |pw: &str| {
            http.post(format!("{url}api/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("id={}&pw={pw}", crm::AGENT_ID))
                .send()
        };
        assert_eq!(login("wrong").await.unwrap().status(), 401);
        let json = |text: String| serde_json::from_str::<serde_json::Value>(&text).expect("JSON");
        let token = json(login(crm::AGENT_PASSWORD).await.unwrap().text().await.unwrap());
        let token = token["token"].as_str().expect("a token").to_owned();
        assert_eq!(crm.logins(), 1);

        let search = |tel: &str, token: &str| {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("tel", tel)
                .append_pair("token", token)
                .finish();
            http.get(format!("{url}api/customers?{q}")).send()
        };
        assert_eq!(search(KNOWN.tel, "forged").await.unwrap().status(), 401);
        let known = json(
            search("+81311112222", &token)
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        assert_eq!(known["company"], KNOWN.company);
        assert_eq!(known["id"], KNOWN.id);
        let unknown = json(search(UNKNOWN_TEL, &token).await.unwrap().text().await.unwrap());
        assert_eq!(unknown["name"], crm::UNKNOWN_NAME);
        assert_eq!(unknown["id"], "");
        assert_eq!(crm.searches(), 2);

        let page = |path: String| async {
            let r = http.get(path).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        };
        let hostile = page(format!("{url}customers/{}", HOSTILE.id)).await;
        assert!(hostile.contains("&lt;script&gt;"), "{hostile}");
        assert!(!hostile.contains("<script>"), "{hostile}");
        let new = page(format!("{url}customers/?tel=%3Cb%3E")).await;
        assert!(new.contains("&lt;b&gt;") && new.contains("No record"), "{new}");
        let index = page(url.clone()).await;
        for c in crm::CUSTOMERS {
            assert!(index.contains(c.id), "{index}");
        }
        let missing = http.get(format!("{url}nothing")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
    });
}
