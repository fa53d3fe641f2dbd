//! The hostile caller-ID corpus (`tests/fixtures/hostile-callerid.tsv`) on screen: every value,
//! escapes decoded, as the display name AND the number of an incoming call, then as the CRM's
//! company and name, then in the history row and the log pane, drawn at 80×24 in English and
//! Japanese. No cell may hold a C0 or C1 control character, ESC or DEL (nor a bidi override),
//! every box stays closed and every row exactly 80 columns, and nothing panics.

mod common;
#[path = "common/ui.rs"]
mod ui;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ctiphone::app::{CtiEvent, EndReason, PhoneEvent};
use ctiphone::ui::i18n::Lang;

fn check(app: &ctiphone::ui::state::App, what: &str) {
    for lang in [Lang::En, Lang::Ja] {
        let (drawn, screen) = ui::render_both(app, lang, 80, 24);
        let what = format!("{what} ({})", lang.code());
        ui::assert_clean(&drawn, &what);
        ui::assert_clean(&screen, &what);
        ui::assert_straight(&drawn);
        ui::frames(&screen);
        for y in 0..24 {
            assert_eq!(
                ui::row_width(&screen, y),
                80,
                "{what}: row {y}\n{}",
                ui::dump(&screen)
            );
        }
    }
}

#[test]
fn hostile_caller_ids_never_reach_the_terminal_raw() {
    let corpus = common::hostile();
    assert!(corpus.len() >= 20, "corpus has {} rows", corpus.len());
    let mut with_controls = 0;
    for (id, field, value) in &corpus {
        if value.chars().any(ui::raw_control) {
            with_controls += 1;
        }
        let what = format!("{id} ({field}) {value:?}");
        let mut app = ui::app("[popup]\nsize = \"large\"\n");
        app.on_key(KeyEvent::new(KeyCode::Char('l'), KeyModifiers::NONE)); // the log pane
        app.show_log = false;
        ui::incoming(&mut app, value, value, false);
        check(&app, &format!("{what}: ringing"));
        ui::cti(
            &mut app,
            CtiEvent::Searching {
                call_id: ui::CALL.to_owned(),
            },
        );
        ui::found(&mut app, value, value, value);
        check(&app, &format!("{what}: CRM record"));
        ui::cti(
            &mut app,
            CtiEvent::SearchFailed {
                call_id: ui::CALL.to_owned(),
                error: value.clone(),
            },
        );
        check(&app, &format!("{what}: CRM error"));
        ui::answered(&mut app);
        ui::phone(
            &mut app,
            PhoneEvent::Dtmf {
                call: ui::CALL.to_owned(),
                digit: value.clone(),
            },
        );
        ui::phone(
            &mut app,
            PhoneEvent::Warning {
                message: value.clone(),
            },
        );
        ui::ended(&mut app, EndReason::RemoteHangup, 3.0);
        ui::phone(
            &mut app,
            PhoneEvent::Recorded {
                call: ui::CALL.to_owned(),
                path: value.clone(),
            },
        );
        check(&app, &format!("{what}: history"));
        app.show_log = true;
        check(&app, &format!("{what}: history and log"));
        // The dial line echoes typed text (a paste could carry anything).
        app.on_key(KeyEvent::new(KeyCode::Char('d'), KeyModifiers::NONE));
        for c in value.chars() {
            app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        check(&app, &format!("{what}: dial line"));
    }
    assert!(
        with_controls >= 3,
        "the corpus should hold control characters: {with_controls} rows do"
    );
}

/// All the corpus at once: one ringing call per row, with the popup on the last.
#[test]
fn hostile_caller_ids_all_at_once() {
    let mut app = ui::app("");
    for (i, (_, _, value)) in common::hostile().iter().enumerate() {
        ui::phone(
            &mut app,
            PhoneEvent::Incoming {
                call: format!("c{i}"),
                tel: value.clone(),
                telname: value.clone(),
                called: value.clone(),
                calledname: value.clone(),
                anonymous: false,
            },
        );
    }
    check(&app, "every row ringing");
}
