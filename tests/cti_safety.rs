//! SAF-1 with real parts: every row of the hostile caller-ID corpus as {TEL} and {TELNAME}
//! through a URL (query and path), a form body, and a real OS command's argv; the browser
//! methods through a real program; the canary file is never created.

mod common;

use common::outputs::{CtiOutputs, assert_no_canary, params};
use common::{Crm, engine, hostile, no_browser, recorded, recorder};
use ctiphone::app::CallEvent;
use ctiphone::cti::exec::BrowserEnv;

/// `params` with a different name.
fn with_name(mut p: ctiphone::app::CallParams, name: &str) -> ctiphone::app::CallParams {
    p.telname = name.to_owned();
    p
}

fn base(crm: &Crm, accesses: &str) -> String {
    format!(
        "[cti]\ntarget = \"custom\"\ntimeout_seconds = 5\nserver_address = \"{}/\"\nnumbers = [{{ number = \"0312345678\" }}]\n{accesses}",
        crm.url()
    )
}

#[tokio::test]
async fn hostile_values_stay_one_url_value_one_form_value_one_argument() {
    let _ = std::fs::remove_file(common::outputs::CANARY);
    let out = CtiOutputs::start().await;
    let corpus = hostile();
    assert_eq!(corpus.len(), 78, "the whole corpus is used");
    let mut checks = 0;
    for (n, (id, _field, value)) in corpus.iter().enumerate() {
        let call = format!("h{n}");
        // URL query: exactly the template's three parameters, values byte-exact.
        out.url_query(id, &call, value).await;
        // Form body: exactly two pairs.
        out.form(id, &call, value).await;
        // URL path: one segment, never a climb.
        out.url_path(id, &call, value).await;
        // argv: exactly the template's words, byte-exact.
        out.argv(id, &call, value).await;
        checks += 4;
    }
    assert_eq!(checks, 78 * 4);
    assert_no_canary();
}

#[tokio::test]
async fn commands_are_killed_with_their_group_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("survivor");
    let crm = Crm::start().await;
    // A shell script the admin wrote (its own file, not a caller value) that starts a
    // background child which would write a file after the timeout.
    let script = dir.path().join("slow.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\n(sleep 2; touch '{}') &\nsleep 30\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let text = base(
        &crm,
        &format!(
            "[cti.ring]\nmethod = \"command\"\ntemplate = \"'{}'\"\n",
            script.display()
        ),
    )
    .replace("timeout_seconds = 5", "timeout_seconds = 0.5");
    let e = engine(&text, None, no_browser());
    let start = std::time::Instant::now();
    let r = e
        .dispatch(CallEvent::ring(params("k1", "0311112222")))
        .await
        .unwrap();
    assert!(
        start.elapsed() < std::time::Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    assert!(
        r.actions[0]
            .error
            .as_deref()
            .unwrap()
            .contains("timeout after 0.5 s; command killed"),
        "{r:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(!marker.exists(), "the command's child outlived the timeout");
}

#[tokio::test]
async fn command_output_is_the_reply_for_captures_and_exit_codes_are_reported() {
    let crm = Crm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("argv.jsonl");
    let text = base(
        &crm,
        &format!(
            "[cti.search]\nmethod = \"command\"\ntemplate = \"'{}' '{}' {{TEL}}\"\ncaptures = {{ STATUS = \"line:status\", COMPANY = \"regex:count=([0-9]+)\" }}\n\
             [cti.ring]\nmethod = \"command\"\ntemplate = \"/bin/sh -c 'exit 3'\"\n",
            recorder().display(),
            out.display()
        ),
    );
    let e = engine(&text, None, no_browser());
    let r = e
        .dispatch(CallEvent::ring(params("c1", "0311112222")))
        .await
        .unwrap();
    let search = r.actions.iter().find(|a| a.access == "search").unwrap();
    assert!(search.ok, "{search:?}");
    assert_eq!(search.status, Some(0));
    assert_eq!(r.vars["STATUS"], "recorded");
    assert_eq!(r.vars["COMPANY"], "1");
    let ring = r.actions.iter().find(|a| a.access == "ring").unwrap();
    assert!(!ring.ok);
    assert_eq!(ring.status, Some(3));
    assert_eq!(ring.error.as_deref(), Some("exit code 3"));
}

#[tokio::test]
async fn browser_methods_use_the_browser_or_give_a_link() {
    let crm = Crm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("browser.jsonl");
    let text = base(
        &crm,
        "[cti.ring]\nmethod = \"browser_get\"\ntemplate = \"https://www.google.com/search?q={TEL}\"\n\
         [cti.click]\nmethod = \"browser_post\"\ntemplate = \"{SVADDR}crm?tel={TEL}&name={TELNAME}\"\n",
    );
    let gui = BrowserEnv {
        graphical: true,
        command: vec![recorder().display().to_string(), out.display().to_string()],
    };
    let e = engine(&text, None, gui);
    let hostile = "\"><script>alert(1)</script>&x=1";
    let r = e
        .dispatch(CallEvent::ring(with_name(params("b1", "+81 3-1234"), hostile)))
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    let r = e
        .dispatch(CallEvent::click(with_name(params("b1", "+81 3-1234"), hostile)))
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    let rec = recorded(&out);
    assert_eq!(
        rec[0].0,
        ["https://www.google.com/search?q=%2B81%203-1234".to_owned()]
    );
    // The browser got a one-shot loopback URL holding no value, and the page from it.
    let url = rec[1].0[0].clone();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/post/"),
        "{url}"
    );
    assert!(!url.contains("crm") && !url.contains("script"), "{url}");
    assert_eq!(rec[1].1["status"], 200);
    let page = rec[1].1["page"].as_str().unwrap();
    assert!(page.contains(&format!("action=\"{}/crm\"", crm.url())), "{page}");
    assert!(
        page.contains("name=\"name\" value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;x=1\""),
        "{page}"
    );
    assert!(!page.contains("<script>"));
    assert_eq!(
        reqwest::get(&url).await.unwrap().status(),
        404,
        "the page is served once"
    );
    // Nothing waits any more: the page server stops at once.
    let start = std::time::Instant::now();
    e.shutdown().await;
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
    assert!(reqwest::get(&url).await.is_err(), "the page server stopped");

    // No graphical session (SSH): the URL comes back as a link, nothing is started.
    let e = engine(&text, None, no_browser());
    let r = e
        .dispatch(CallEvent::ring(params("b2", "+81 3-1234")))
        .await
        .unwrap();
    assert!(r.ok());
    assert_eq!(
        r.actions[0].link.as_deref(),
        Some("https://www.google.com/search?q=%2B81%203-1234")
    );
    assert_eq!(recorded(&out).len(), 2);
}
