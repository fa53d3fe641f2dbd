//! browser_post (MET-3) with a real browser: Chromium under Xvfb opens the one-shot loopback
//! page and POSTs the exact form to a real CRM; the page is gone after that one fetch. And the
//! links given with no graphical session: the one-shot page when `form_listen` pins its port,
//! never a secret of the form otherwise.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::outputs::params;
use common::{Crm, engine, no_browser};
use ctiphone::app::CallEvent;
use ctiphone::cti::exec::BrowserEnv;

/// A process group started by the test, killed with everything in it when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(self.0.id());
        let _ = self.0.wait();
    }
}

fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: killpg only sends a signal; a group already gone is ESRCH.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
}

/// The full path of a program the test needs, or a failure naming its Debian package.
fn need(program: &str, package: &str) -> String {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => p.display().to_string(),
        None => panic!("`{program}` is missing: install the Debian package `{package}` (tests/run.sh does)"),
    }
}

/// Xvfb on a display number it picks itself (a free one); the group and the display.
fn xvfb() -> (Group, String) {
    let xvfb = need("Xvfb", "xvfb");
    let mut child = Command::new(xvfb)
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1024x768x24",
            "-nolisten",
            "tcp",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start Xvfb");
    let out = child.stdout.take().expect("Xvfb's stdout");
    let group = Group(child);
    // Xvfb writes the display number once it accepts clients.
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("Xvfb's display number");
    let n = line.trim();
    assert!(
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        "Xvfb gave no display number: {line:?}"
    );
    (group, format!(":{n}"))
}

fn base(crm: &Crm, extra: &str, accesses: &str) -> String {
    format!(
        "[cti]\ntarget = \"custom\"\ntimeout_seconds = 2\nserver_address = \"{}/\"\nnumbers = [{{ number = \"0312345678\" }}]\n{extra}{accesses}",
        crm.url()
    )
}

/// The expected form body: what a browser sends for these pairs (WHATWG urlencoded).
fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Waits for the CRM to see a request on `path`.
async fn wait_for(crm: &Crm, path: &str, limit: Duration) -> common::Seen {
    let start = Instant::now();
    loop {
        if let Some(s) = crm.seen_path(path).pop() {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "the CRM got no request on {path} within {limit:?}; it saw {:?}",
            crm.seen()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const NAME: &str = "山田 太郎 & Sons=1+2";
const TEL: &str = "+81 3-1234-5678";

#[tokio::test]
async fn chromium_posts_the_exact_form_and_the_page_is_served_once() {
    let chromium = need("chromium", "chromium");
    let (_xvfb, display) = xvfb();
    let crm = Crm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    // The browser command records its argv and pid (its process group: the runner starts it
    // in one of its own), then becomes Chromium.
    let wrapper = dir.path().join("browser.sh");
    let argv_file = dir.path().join("argv");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nout=\"$1\"; shift\necho \"$$\" > \"$out.pid\"\nprintf '%s\\n' \"$@\" > \"$out\"\nexec \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut command: Vec<String> = vec![
        wrapper.display().to_string(),
        argv_file.display().to_string(),
        "/usr/bin/env".into(),
        format!("DISPLAY={display}"),
        chromium,
    ];
    command.extend(
        [
            // As root Chromium runs only without its sandbox.
            "--no-sandbox",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--password-store=basic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-features=Translate,MediaRouter",
        ]
        .map(str::to_owned),
    );
    command.push(format!("--user-data-dir={}", profile.display()));
    let gui = BrowserEnv {
        graphical: true,
        command,
    };
    let text = base(
        &crm,
        "",
        "[cti.click]\nmethod = \"browser_post\"\ntemplate = \"{SVADDR}crm?src=ctiphone\"\n\
         body = \"tel={TEL}&name={TELNAME}&called={CALLED}&memo=日本語 メモ\"\n",
    );
    let e = engine(&text, None, gui);
    let mut p = params("bp1", TEL);
    p.telname = NAME.to_owned();
    let r = e.dispatch(CallEvent::click(p)).await.unwrap();
    let browser_pid: Option<u32> = std::fs::read_to_string(format!("{}.pid", argv_file.display()))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    // Chromium goes with its whole group whatever happens below.
    let _browser = scopeguard(browser_pid);
    assert!(r.ok(), "{r:?}");
    // The report shows the CRM's URL and the form, never the page's token.
    let target = r.actions[0].target.to_string();
    assert!(
        target.contains("/crm?src=ctiphone") && !target.contains("/post/"),
        "{target}"
    );

    let seen = wait_for(&crm, "/crm", Duration::from_secs(20)).await;
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.query.as_deref(), Some("src=ctiphone"));
    assert_eq!(
        seen.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let expected = form(&[
        ("tel", TEL),
        ("name", NAME),
        ("called", "0312345678"),
        ("memo", "日本語 メモ"),
    ]);
    assert_eq!(String::from_utf8_lossy(&seen.body), expected);
    assert_eq!(crm.seen_path("/crm").len(), 1, "one POST");

    // The browser was given the one-shot URL, and only it; a second fetch gets 404.
    let argv = std::fs::read_to_string(&argv_file).unwrap();
    let url = argv.lines().last().unwrap().to_owned();
    let (_, token) = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.split_once("/post/"))
        .unwrap_or_else(|| panic!("not a one-shot page URL: {argv}"));
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "no value in the URL: {url}"
    );
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 404);
    // The page was fetched: nothing holds the shutdown, and the server is gone after it.
    let start = Instant::now();
    e.shutdown().await;
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    assert!(reqwest::get(&url).await.is_err(), "the page server still listens");
}

/// Kills the browser's process group when dropped.
fn scopeguard(pid: Option<u32>) -> impl Drop {
    struct Kill(Option<u32>);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                kill_group(pid);
            }
        }
    }
    Kill(pid)
}

/// A free TCP port of 127.0.0.1 (for a pinned `form_listen`).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn with_a_pinned_port_and_no_gui_the_link_is_the_one_shot_page() {
    let crm = Crm::start().await;
    let port = free_port();
    let text = base(
        &crm,
        &format!("form_listen = \"127.0.0.1:{port}\"\n"),
        "[cti.auth]\nmethod = \"get\"\ntemplate = \"{SVADDR}login\"\ncaptures = { T = \"json:/token\" }\n\
         [cti.click]\nmethod = \"browser_post\"\ntemplate = \"{SVADDR}crm?tel={TEL}&token={T}\"\n",
    );
    let e = engine(&text, None, no_browser());
    let r = e.dispatch(CallEvent::click(params("bp2", TEL))).await.unwrap();
    let click = r.actions.iter().find(|a| a.access == "click").unwrap();
    assert!(click.ok, "{r:?}");
    let link = click.link.clone().unwrap();
    // The port an SSH forward expects; no value at all, so not the captured secret either.
    let token = link
        .strip_prefix(&format!("http://127.0.0.1:{port}/post/"))
        .unwrap_or_else(|| panic!("{link}"));
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{link}"
    );
    assert!(
        click.target.to_string().contains("token=***"),
        "{:?}",
        click.target
    );
    // What the agent's browser gets through the forward: the page posting the real values.
    let page = reqwest::get(&link).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("action=\"{}/crm\"", crm.url())), "{html}");
    assert!(html.contains("name=\"token\" value=\"tok-1\""), "{html}");
    assert!(html.contains(&format!("name=\"tel\" value=\"{TEL}\"")), "{html}");
    assert_eq!(reqwest::get(&link).await.unwrap().status(), 404);
    e.shutdown().await;
}

#[tokio::test]
async fn without_a_pinned_port_the_no_gui_link_never_shows_a_secret_of_the_form() {
    let crm = Crm::start().await;
    let text = base(
        &crm,
        "",
        "[cti.auth]\nmethod = \"get\"\ntemplate = \"{SVADDR}login\"\ncaptures = { T = \"json:/token\" }\n\
         [cti.click]\nmethod = \"browser_post\"\ntemplate = \"{SVADDR}crm\"\nbody = \"tel={TEL}&token={T}\"\n\
         [cti.ring]\nmethod = \"browser_post\"\ntemplate = \"{SVADDR}crm?tel={TEL}\"\n",
    );
    let e = engine(&text, None, no_browser());
    let r = e
        .dispatch(CallEvent::click(params("bp3", "0311112222")))
        .await
        .unwrap();
    let click = r.actions.iter().find(|a| a.access == "click").unwrap();
    assert!(!click.ok);
    assert_eq!(
        click.error.as_deref(),
        Some("no graphical session, and the link would hold a secret: not shown")
    );
    assert_eq!(click.link.as_deref(), Some(format!("{}/crm", crm.url()).as_str()));
    // No secret: the URL with the form as its query, as before.
    let r = e
        .dispatch(CallEvent::ring(params("bp4", "0311112222")))
        .await
        .unwrap();
    let ring = r.actions.iter().find(|a| a.access == "ring").unwrap();
    assert!(ring.ok, "{r:?}");
    assert_eq!(
        ring.link.as_deref(),
        Some(format!("{}/crm?tel=0311112222", crm.url()).as_str())
    );
    // No page server was needed.
    let start = Instant::now();
    e.shutdown().await;
    assert!(start.elapsed() < Duration::from_millis(500));
}
