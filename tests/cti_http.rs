//! The CTI engine against a real HTTP CRM on 127.0.0.1: auth, token, search, captures,
//! re-auth, timeouts, hostile replies, the answer delay and hangup rules, events on the bus.

mod common;

use std::time::{Duration, Instant};

use common::{Crm, engine, map, no_browser, pairs};
use ctiphone::app::{Bus, CallEvent, CallParams, CallResult, CtiEvent, Event};

fn config(crm: &Crm, extra: &str) -> String {
    format!(
        r#"
[account]
extension = "201"
[agent]
id = "agent7"
password = "p&ss word"
[cti]
target = "custom"
timeout_seconds = 1
server_address = "{url}/"
numbers = [{{ number = "03-1234-5678" }}, {{ number = "201", enabled = true }}]
[cti.auth]
method = "post"
template = "{{SVADDR}}login?id={{AID}}&pw={{APW}}&sig=MD5({{AID}}{{DATE-YYYY}}{{DATE-MM}}{{DATE-DD}})"
captures = {{ TOKEN = "json:/token" }}
[cti.search]
method = "get"
template = "{{SVADDR}}search?tel={{TEL}}&token={{TOKEN}}"
captures = {{ COMPANY = "json:/company", NAME = "json:/name", EXT_ID = "json:/id", RANK = "json:/rank" }}
{extra}
"#,
        url = crm.url()
    )
}

fn ring(id: &str, tel: &str) -> CallEvent {
    CallEvent::ring(CallParams::incoming(id, tel, "0312345678"))
}

#[tokio::test]
async fn auth_then_search_with_the_token_and_exact_bytes() {
    let crm = Crm::start().await;
    let extra = r#"
[cti.ring]
method = "post"
template = "{SVADDR}ring?tel={TEL}&company={COMPANY}&rank={RANK}&when={DATE-HH}{DATE-II}{DATE-SS}"
"#;
    let e = engine(&config(&crm, extra), None, no_browser());
    let report = e.dispatch(ring("c1", "+81 3-1234&admin=1")).await.unwrap();
    assert!(report.ok(), "{report:#?}");
    let names: Vec<_> = report.actions.iter().map(|a| a.access.as_str()).collect();
    assert_eq!(names, ["auth", "search", "ring"]);

    let login = crm.seen_path("/login");
    assert_eq!(login.len(), 1);
    assert_eq!(login[0].method, "POST");
    assert_eq!(login[0].query, None, "the POST query moved into the body");
    assert_eq!(
        login[0].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let sig = ctiphone::cti::template::upper_hex(&<md5::Md5 as sha2::Digest>::digest(b"agent720261125"));
    assert_eq!(
        String::from_utf8(login[0].body.clone()).unwrap(),
        format!("id=agent7&pw=p%26ss+word&sig={sig}")
    );

    let search = crm.seen_path("/search");
    assert_eq!(search[0].method, "GET");
    assert_eq!(
        search[0].query.as_deref(),
        Some("tel=%2B81%203-1234%26admin%3D1&token=tok-1")
    );

    let ringr = crm.seen_path("/ring");
    assert_eq!(
        String::from_utf8(ringr[0].body.clone()).unwrap(),
        "tel=%2B81+3-1234%26admin%3D1&company=ACME+%E6%A0%AA%E5%BC%8F%E4%BC%9A%E7%A4%BE&rank=7&when=090507"
    );
    assert_eq!(report.vars["COMPANY"], "ACME 株式会社");
    assert_eq!(report.vars["NAME"], "Taro Yamada");
    assert_eq!(report.vars["EXT_ID"], "C-42");
    assert_eq!(report.vars["TOKEN"], "***", "auth captures are secrets");
    // SAF-3: the password and the token never appear in what is reported.
    let shown = serde_json::to_string(&report).unwrap();
    assert!(!shown.contains("p%26ss") && !shown.contains("tok-1"), "{shown}");
    assert!(shown.contains("pw=***"), "{shown}");
}

#[tokio::test]
async fn one_auth_for_concurrent_events_and_again_after_the_keep_time() {
    let crm = Crm::start().await;
    let text = config(&crm, "").replace(
        "timeout_seconds = 1",
        "timeout_seconds = 1\nsession_keep_minutes = 0.01",
    );
    let e = engine(&text, None, no_browser());
    let handles: Vec<_> = (0..5)
        .map(|i| e.dispatch(ring(&format!("c{i}"), "0311112222")))
        .collect();
    for h in handles {
        assert!(h.await.unwrap().ok());
    }
    assert_eq!(crm.logins(), 1, "concurrent events share one auth");
    assert!(
        crm.seen_path("/search")
            .iter()
            .all(|s| s.query.as_deref().unwrap().ends_with("token=tok-1"))
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = e.dispatch(ring("late", "0311112222")).await.unwrap();
    assert!(r.ok());
    assert_eq!(
        crm.logins(),
        2,
        "re-auth once the session is older than the keep time"
    );
    assert!(
        crm.seen_path("/search")
            .last()
            .unwrap()
            .query
            .as_deref()
            .unwrap()
            .ends_with("token=tok-2")
    );
}

#[tokio::test]
async fn a_crm_that_never_answers_fails_within_the_timeout() {
    let crm = Crm::start().await;
    let extra = "[cti.ring]\nmethod = \"get\"\ntemplate = \"{SVADDR}slow?tel={TEL}\"\n";
    let e = engine(&config(&crm, extra), None, no_browser());
    let start = Instant::now();
    let r = e.dispatch(ring("c1", "0311112222")).await.unwrap();
    let took = start.elapsed();
    let slow = r.actions.iter().find(|a| a.access == "ring").unwrap();
    assert!(!slow.ok);
    assert!(
        slow.error.as_deref().unwrap().contains("timeout after 1 s"),
        "{slow:?}"
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(!r.ok());
}

#[tokio::test]
async fn huge_and_broken_replies_give_clear_capture_errors() {
    let crm = Crm::start().await;
    for (path, expect) in [
        ("big", "the reply is larger than 1024 KiB"),
        (
            "broken",
            "capture COMPANY, EXT_ID, NAME, RANK: the reply is not valid JSON",
        ),
        ("status/503", "HTTP 503 Service Unavailable"),
        ("loop", "redirect"),
    ] {
        let text = config(&crm, "").replace("search?tel=", &format!("{path}?tel="));
        let e = engine(&text, None, no_browser());
        let r = e.dispatch(ring("c1", "0311112222")).await.unwrap();
        let s = r.actions.iter().find(|a| a.access == "search").unwrap();
        assert!(!s.ok);
        let err = s.error.as_deref().unwrap();
        assert!(err.contains(expect), "{path}: {err}");
        assert!(!err.contains("tok-"), "{path}: the error leaks the token: {err}");
        assert_eq!(r.vars["COMPANY"], "", "no value on failure");
    }
}

#[tokio::test]
async fn results_and_failures_go_back_on_the_bus() {
    let crm = Crm::start().await;
    let bus = Bus::new();
    let mut rx = bus.subscribe_as("test");
    let e = engine(&config(&crm, ""), Some(bus.clone()), no_browser());
    let task = e.subscribe(&bus);
    bus.call(ring("bus-1", "0311112222"));
    bus.call(ring("bus-2", "0311112222").with_called("0999"));
    let mut searching = false;
    let mut result = None;
    let mut skipped = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while (result.is_none() || skipped.is_none()) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Event::Cti(CtiEvent::Searching { call_id }))) if call_id == "bus-1" => searching = true,
            Ok(Some(Event::Cti(CtiEvent::SearchResult { call_id, vars }))) if call_id == "bus-1" => {
                result = Some(vars)
            }
            Ok(Some(Event::Cti(CtiEvent::Skipped { call_id, why, .. }))) if call_id == "bus-2" => {
                skipped = Some(why)
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(searching);
    let vars = result.expect("a search result on the bus");
    assert_eq!(vars["EXT_ID"], "C-42");
    assert_eq!(
        skipped.as_deref(),
        Some("called number 0999 is not a checked target number")
    );
    task.abort();
}

/// A call refused without ringing (busy) runs no access: no search, no ring, answer or hangup
/// request reaches the CRM, and nothing about it comes back on the bus; a call ringing right
/// after it is handled as ever.
#[tokio::test]
async fn a_refused_call_runs_no_access() {
    let crm = Crm::start().await;
    let extra = r#"
[cti.ring]
method = "get"
template = "{SVADDR}ring?tel={TEL}"
[cti.answer]
method = "get"
template = "{SVADDR}answered?tel={TEL}"
[cti.hangup]
method = "get"
template = "{SVADDR}hangup?tel={TEL}"
"#;
    let bus = Bus::new();
    let mut rx = bus.subscribe_as("test");
    let e = engine(&config(&crm, extra), Some(bus.clone()), no_browser());
    let direct = e
        .dispatch(CallEvent::refused(
            CallParams::incoming("busy-0", "0399990000", "0312345678"),
            CallResult::Busy,
        ))
        .await
        .unwrap();
    assert!(direct.actions.is_empty(), "{direct:#?}");
    assert_eq!(direct.event, "refused");
    assert!(direct.skipped.is_some_and(|why| why.contains("busy")));
    let task = e.subscribe(&bus);
    for i in 1..=20 {
        bus.call(CallEvent::refused(
            CallParams::incoming(&format!("busy-{i}"), "0399990000", "0312345678"),
            CallResult::Busy,
        ));
    }
    bus.call(ring("after", "0311112222"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut rang, mut found) = (false, false);
    while !(rang && found) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Event::Cti(c))) => {
                let shown = format!("{c:?}");
                assert!(!shown.contains("busy-"), "a refused call on the bus: {shown}");
                match &c {
                    CtiEvent::Action { call_id, report, .. } if call_id == "after" => {
                        rang |= report.access == "ring";
                    }
                    CtiEvent::SearchResult { call_id, .. } => found |= call_id == "after",
                    _ => {}
                }
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(found, "the call after the refused ones was searched");
    assert!(rang, "the call after the refused ones rang");
    let seen = crm.seen();
    assert!(
        seen.iter()
            .all(|s| !s.query.as_deref().unwrap_or("").contains("0399990000")),
        "{:?}",
        seen.iter().map(|s| (&s.path, &s.query)).collect::<Vec<_>>()
    );
    assert_eq!(
        crm.seen_path("/search").len(),
        1,
        "one search: the call that rang"
    );
    task.abort();
}

trait WithCalled {
    fn with_called(self, called: &str) -> Self;
}

impl WithCalled for CallEvent {
    fn with_called(mut self, called: &str) -> Self {
        self.params.called = called.to_owned();
        self
    }
}

#[tokio::test]
async fn answer_waits_its_delay_and_is_cancelled_by_hangup() {
    let crm = Crm::start().await;
    let extra = r#"
[cti.answer]
method = "get"
template = "{SVADDR}answered?id={ID}&ext={EXT_ID}"
delay_seconds = 0.3
[cti.hangup]
method = "get"
template = "{SVADDR}hangup?id={ID}"
only_if_answered = true
"#;
    let e = engine(&config(&crm, extra), None, no_browser());
    assert!(e.dispatch(ring("a1", "0311112222")).await.unwrap().ok());
    let start = Instant::now();
    let r = e
        .dispatch(CallEvent::answer(CallParams::incoming(
            "a1",
            "0311112222",
            "0312345678",
        )))
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(r.ok(), "{r:?}");
    assert_eq!(
        crm.seen_path("/answered")[0].query.as_deref(),
        Some("id=a1&ext=C-42"),
        "search values kept per call"
    );

    // A call that ends during the delay: no answer access.
    assert!(e.dispatch(ring("a2", "0311112222")).await.unwrap().ok());
    let pending = e.dispatch(CallEvent::answer(CallParams::incoming(
        "a2",
        "0311112222",
        "0312345678",
    )));
    let hung = e.dispatch(CallEvent::hangup(
        CallParams::incoming("a2", "0311112222", "0312345678"),
        true,
    ));
    let r = pending.await.unwrap();
    assert_eq!(
        r.skipped.as_deref(),
        Some("the call ended before the answer delay")
    );
    assert!(hung.await.unwrap().ok());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(crm.seen_path("/answered").len(), 1);

    // only_if_answered: a missed call runs no hangup access.
    let r = e
        .dispatch(CallEvent::hangup(
            CallParams::incoming("a3", "0311112222", "0312345678"),
            false,
        ))
        .await
        .unwrap();
    assert_eq!(
        r.skipped.as_deref(),
        Some("the call was not answered (only_if_answered)")
    );
    assert_eq!(crm.seen_path("/hangup").len(), 1);
}

#[tokio::test]
async fn target_rules_decide_before_anything_is_sent() {
    let crm = Crm::start().await;
    let text = config(&crm, "").replace("[cti]\n", "[cti]\nskip_internal = true\n");
    let e = engine(&text, None, no_browser());
    let r = e
        .dispatch(CallEvent::ring(CallParams::incoming("t1", "305", "0312345678")))
        .await
        .unwrap();
    assert_eq!(
        r.skipped.as_deref(),
        Some("internal call from 305 (skip_internal)")
    );
    // TGT-4: the system number pops up because the own extension 201 is checked.
    let r = e
        .dispatch(CallEvent::ring(CallParams::incoming("t2", "9999", "201")))
        .await
        .unwrap();
    assert_eq!(r.skipped, None);
    assert_eq!(crm.seen_path("/search").len(), 1);
    assert_eq!(
        crm.seen_path("/search")[0].query.as_deref(),
        Some("tel=9999&token=tok-1")
    );
    let _ = map(&[]);
    let _ = pairs(b"");
}
