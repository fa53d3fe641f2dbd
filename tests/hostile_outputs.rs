//! The 78 hostile caller IDs (`tests/fixtures/hostile-callerid.tsv`) through all eight outputs
//! a caller value reaches, each value as both {TEL} and {TELNAME}:
//!
//! 1. URL: the query (exactly the template's parameters, byte-exact) and a path segment (one
//!    segment, `..` refused), through the CTI engine to a loopback CRM;
//! 2. form body: exactly the template's pairs, byte-exact;
//! 3. argv: a real command (no shell) gets exactly the template's words, byte-exact;
//! 4. popup: the bytes the terminal UI sends to a terminal for the ringing call (the frame,
//!    the bell and desktop notification) hold no raw control byte and no escape sequence but
//!    the UI's own, and the popup shows the value (cleaned);
//! 5. log: the phone's log line for the call carries the value escaped, on one line;
//! 6. history: stored and read back byte-exact;
//! 7. clipboard: the OSC 52 sequence the UI writes when the number is copied is the only
//!    sequence, and its base64 payload decodes to exactly the value as the popup shows it;
//! 8. recording file name: one plain name, the file written right in the recordings
//!    directory.
//!
//! 624 checks; no injection (the canary file is never created); no raw control byte reaches
//! the terminal. Several outputs are checked in more depth elsewhere (`cti_safety`,
//! `ui_hostile`, `history_hostile`); this test runs them all per value and counts.

mod common;
#[path = "common/ui.rs"]
mod ui;

use ctiphone::app::{CtiEvent, PhoneEvent};
use ctiphone::ui::i18n::Lang;
use ctiphone::ui::state::{App, Effect};
use ctiphone::ui::text::{clean, width};
use unicode_segmentation::UnicodeSegmentation;

use common::outputs::{self, CtiOutputs, LogCapture};
use ui::Seq;

/// The first `cols` columns of `s`, whole graphemes only.
fn head(s: &str, cols: usize) -> String {
    let mut out = String::new();
    for g in s.graphemes(true) {
        if width(&out) + width(g) > cols {
            break;
        }
        out.push_str(g);
    }
    out
}

/// The popup (4) and the clipboard (7) for one value: the ringing call's events into the
/// terminal UI's state, then every byte it would write to the terminal. Returns how many raw
/// control bytes reached the terminal (the checks panic first: always 0).
fn popup_and_clipboard(id: &str, n: usize, value: &str) -> usize {
    let mut app: App = ui::app("[popup]\nsize = \"large\"\ncopy_number = true\n");
    let call = format!("h{n}");
    let effects = app.on_event(&ctiphone::app::Event::Phone(PhoneEvent::Incoming {
        call: call.clone(),
        tel: value.to_owned(),
        telname: value.to_owned(),
        called: "0312345678".to_owned(),
        calledname: String::new(),
        anonymous: false,
    }));
    app.on_event(&ctiphone::app::Event::Cti(CtiEvent::SearchFailed {
        call_id: call,
        error: value.to_owned(),
    }));
    let shown = clean(value);

    // 4. The popup: the frame's bytes, then the notification's.
    let mut stream = ui::terminal_bytes(&app, Lang::En, 80, 24);
    let (_, seqs) = ui::scan_terminal(&stream).unwrap_or_else(|e| panic!("{id}: the frame: {e}"));
    assert!(
        seqs.iter().all(|s| matches!(s, Seq::Csi(_))),
        "{id}: the frame holds more than cursor and colour sequences: {:?}",
        seqs.iter()
            .filter(|s| !matches!(s, Seq::Csi(_)))
            .collect::<Vec<_>>()
    );
    let notify = effects.iter().find_map(|e| match e {
        Effect::Notify(t) => Some(t.clone()),
        _ => None,
    });
    let notify = ctiphone::ui::term::notification(&notify.unwrap_or_else(|| panic!("{id}: no notification")));
    let (_, seqs) = ui::scan_terminal(&notify).unwrap_or_else(|e| panic!("{id}: the notification: {e}"));
    assert!(
        seqs.iter().all(|s| match s {
            Seq::Bell => true,
            Seq::Osc(o) => o.starts_with("9;") || o.starts_with("777;notify;ctiphone;"),
            Seq::Csi(_) => false,
        }),
        "{id}: the notification: {seqs:?}"
    );
    stream.extend_from_slice(&notify);
    let buf = ui::render(&app, Lang::En, 80, 24);
    ui::assert_clean(&buf, id);
    ui::assert_straight(&buf);
    let popup = ui::frame_titled(&buf, " Incoming call ");
    let prefix = head(&shown, 12);
    for label in ["Number", "Name"] {
        let row = (popup.top..=popup.bottom)
            .map(|y| ui::row(&buf, y).0)
            .find(|r| r.contains(&format!("│{label} ")))
            .unwrap_or_else(|| panic!("{id}: no {label} row in the popup\n{}", ui::dump(&buf)));
        assert!(
            row.contains(&prefix),
            "{id}: the popup's {label} row does not show {prefix:?}\n{}",
            ui::dump(&buf)
        );
    }

    // 7. The clipboard: exactly one OSC 52 whose payload is the value as shown.
    let copied = effects.iter().find_map(|e| match e {
        Effect::Copy(t) => Some(t.clone()),
        _ => None,
    });
    let osc = ctiphone::ui::term::osc52(&copied.unwrap_or_else(|| panic!("{id}: the number was not copied")));
    let (text, seqs) = ui::scan_terminal(&osc).unwrap_or_else(|e| panic!("{id}: OSC 52: {e}"));
    assert!(
        text.is_empty(),
        "{id}: text outside the OSC 52 sequence: {text:?}"
    );
    let [Seq::Osc(body)] = seqs.as_slice() else {
        panic!("{id}: not one OSC sequence: {seqs:?}");
    };
    let payload = body
        .strip_prefix("52;c;")
        .unwrap_or_else(|| panic!("{id}: not an OSC 52 to the clipboard: {body:?}"));
    let decoded = outputs::base64_decode(payload.as_bytes())
        .unwrap_or_else(|| panic!("{id}: the payload is not base64: {payload:?}"));
    assert!(
        decoded == shown.as_bytes(),
        "{id}: the clipboard holds other bytes than the value"
    );
    assert!(
        !String::from_utf8_lossy(&decoded)
            .chars()
            .any(outputs::raw_control),
        "{id}: a raw control character on the clipboard"
    );
    stream.extend_from_slice(&osc);
    // Every byte written: the caller's text never brought a control byte of its own.
    let (text, _) = ui::scan_terminal(&stream).unwrap_or_else(|e| panic!("{id}: {e}"));
    text.chars().filter(|c| ui::raw_control(*c)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_78_hostile_caller_ids_through_all_eight_outputs() {
    let _ = std::fs::remove_file(outputs::CANARY);
    let log = LogCapture::install();
    let cti = CtiOutputs::start().await;
    let dir = tempfile::tempdir().unwrap();
    let history = ctiphone::history::History::open(&dir.path().join("history.db")).unwrap();
    let recordings = dir.path().join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    let corpus = common::hostile();
    assert_eq!(corpus.len(), 78, "the whole corpus is used");

    let outputs = [
        "URL",
        "form body",
        "argv",
        "popup",
        "log",
        "history",
        "clipboard",
        "recording name",
    ];
    let mut per_output = [0usize; 8];
    let mut raw_on_terminal = 0;
    for (n, (id, _field, value)) in corpus.iter().enumerate() {
        let call = format!("h{n}");
        cti.url_query(id, &call, value).await;
        cti.url_path(id, &call, value).await;
        per_output[0] += 1;
        cti.form(id, &call, value).await;
        per_output[1] += 1;
        cti.argv(id, &call, value).await;
        per_output[2] += 1;
        raw_on_terminal += popup_and_clipboard(id, n, value);
        per_output[3] += 1;
        per_output[6] += 1;
        log.check(id, &call, value);
        per_output[4] += 1;
        outputs::history(&history, id, &call, value);
        per_output[5] += 1;
        outputs::recording(&recordings, id, &call, value);
        per_output[7] += 1;
        outputs::assert_no_canary();
    }
    let checks: usize = per_output.iter().sum();
    for (name, count) in outputs.iter().zip(per_output) {
        eprintln!("  {name:<15} {count} caller IDs");
    }
    eprintln!(
        "hostile outputs: {} caller IDs x {} outputs = {checks} checks, 0 injections, \
         {raw_on_terminal} raw control bytes on the terminal, canary {} absent",
        corpus.len(),
        outputs.len(),
        outputs::CANARY
    );
    assert_eq!(checks, 624);
    assert_eq!(raw_on_terminal, 0);
    outputs::assert_no_canary();
    assert!(
        std::fs::read_dir(&recordings).unwrap().next().is_none(),
        "every recording was written in its directory and removed"
    );
}
