//! Snapshots of the terminal UI, drawn into ratatui's `TestBackend` from bus events: the idle
//! screen (English, Japanese), the incoming-call popup in its three sizes and its CRM states
//! (searching, found, failed), an anonymous caller, an active call, a history row, the help
//! overlay, the dial line, a consult in progress, a replaced call, and a wide and a narrow
//! terminal. What changes from run to run (the
//! clock, history dates, the popup countdown) is replaced by placeholders; every frame is also
//! checked in code to be straight (rows exactly as wide as the terminal, boxes closed).
//!
//! Update the snapshots after an intended change with `INSTA_UPDATE=always cargo test --test
//! ui_snapshots` (or `cargo insta review`), then read the diff of `tests/snapshots/`.

#[path = "common/ui.rs"]
mod ui;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ctiphone::app::{AgentState, Command, CtiEvent, EndReason, PhoneEvent};
use ctiphone::ui::i18n::Lang;
use ctiphone::ui::state::{App, Effect, Mode};
use ratatui::buffer::Buffer;
use unicode_segmentation::UnicodeSegmentation;

use ui::{CALL, Frame};

fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

/// Renders, checks the frame is straight, and returns the buffer.
fn shot(app: &App, lang: Lang, w: u16, h: u16) -> Buffer {
    let buf = ui::render(app, lang, w, h);
    ui::assert_straight(&buf);
    ui::assert_clean(&buf, "snapshot");
    buf
}

/// A ringing call from "Taro Yamada" <0311112222>.
fn ringing(extra: &str) -> App {
    let mut app = ui::app(extra);
    ui::incoming(&mut app, "0311112222", "Taro Yamada", false);
    app
}

fn popup_title(lang: Lang) -> &'static str {
    match lang {
        Lang::En => " Incoming call ",
        Lang::Ja => " 着信 ",
    }
}

/// The popup's box; its right border column is `│` on every inner row and no double-width
/// character reaches into it or into its left border.
fn assert_popup_intact(buf: &Buffer, lang: Lang) -> Frame {
    let p = ui::frame_titled(buf, popup_title(lang));
    for y in p.top..=p.bottom {
        for (x, side) in [(p.left, "left"), (p.right, "right")] {
            if x == 0 {
                continue;
            }
            // A wide character in the column before would cover this one.
            let before = buf[(x - 1, y)].symbol();
            assert!(
                ui::cell_width(before) <= 1,
                "row {y}: {before:?} at column {} covers the popup's {side} border\n{}",
                x - 1,
                ui::dump(buf)
            );
        }
        if y != p.top && y != p.bottom {
            assert_eq!(buf[(p.right, y)].symbol(), "│", "row {y}\n{}", ui::dump(buf));
        }
    }
    p
}

#[test]
fn idle_english() {
    let app = ui::app("");
    let buf = shot(&app, Lang::En, 80, 24);
    let t = ui::text(&buf);
    assert!(t.contains("No calls"), "{t}");
    assert!(t.contains("direct calls on 127.0.0.1:5062"), "{t}");
    insta::assert_snapshot!("idle_en", ui::stable(&buf));
}

#[test]
fn idle_japanese() {
    let app = ui::app("");
    let buf = shot(&app, Lang::Ja, 80, 24);
    let t = ui::text(&buf);
    assert!(t.contains("通話はありません"), "{t}");
    insta::assert_snapshot!("idle_ja", ui::stable(&buf));
}

#[test]
fn popup_sizes() {
    let mut widths = Vec::new();
    for size in ["small", "medium", "large"] {
        let mut app = ringing(&format!("[popup]\nsize = \"{size}\"\n"));
        ui::found(&mut app, "Acme 株式会社", "山田 太郎", "C-42");
        let buf = shot(&app, Lang::En, 80, 24);
        let p = assert_popup_intact(&buf, Lang::En);
        let t = ui::text(&buf);
        assert!(t.contains("Taro Yamada") && t.contains("Acme 株式会社"), "{t}");
        // Small leaves out the called number; only large shows the CRM id (POP-1).
        assert_eq!(t.contains("0312345678"), size != "small", "{size}\n{t}");
        assert_eq!(t.contains("C-42"), size == "large", "{size}\n{t}");
        widths.push((p.right - p.left + 1, p.bottom - p.top + 1));
        insta::assert_snapshot!(format!("popup_{size}"), ui::stable(&buf));
    }
    assert!(
        widths.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
        "popup sizes do not grow from small to large: {widths:?}"
    );
}

#[test]
fn popup_searching() {
    let mut app = ringing("");
    ui::cti(
        &mut app,
        CtiEvent::Searching {
            call_id: CALL.to_owned(),
        },
    );
    let buf = shot(&app, Lang::En, 80, 24);
    assert_popup_intact(&buf, Lang::En);
    assert!(ui::text(&buf).contains("searching CRM…"));
    insta::assert_snapshot!("popup_searching", ui::stable(&buf));
}

#[test]
fn popup_found() {
    let mut app = ringing("[popup]\nsize = \"large\"\n");
    ui::cti(
        &mut app,
        CtiEvent::Searching {
            call_id: CALL.to_owned(),
        },
    );
    ui::found(&mut app, "Acme 株式会社", "山田 太郎", "C-42");
    for lang in [Lang::En, Lang::Ja] {
        let buf = shot(&app, lang, 80, 24);
        assert_popup_intact(&buf, lang);
        let t = ui::text(&buf);
        assert!(!t.contains("searching"), "{t}");
        for v in ["Acme 株式会社", "山田 太郎", "C-42"] {
            assert!(t.contains(v), "{v} missing\n{t}");
        }
        insta::assert_snapshot!(format!("popup_found_{}", lang.code()), ui::stable(&buf));
    }
}

#[test]
fn popup_search_failed() {
    let mut app = ringing("");
    ui::cti(
        &mut app,
        CtiEvent::Searching {
            call_id: CALL.to_owned(),
        },
    );
    ui::cti(
        &mut app,
        CtiEvent::SearchFailed {
            call_id: CALL.to_owned(),
            error: "timeout after 5 s".to_owned(),
        },
    );
    let buf = shot(&app, Lang::En, 80, 24);
    assert_popup_intact(&buf, Lang::En);
    assert!(ui::text(&buf).contains("CRM search failed: timeout after 5 s"));
    insta::assert_snapshot!("popup_search_failed", ui::stable(&buf));
}

#[test]
fn anonymous_caller_shows_the_configured_name() {
    let mut app = ui::app("[popup]\nanonymous_name = \"非通知さん\"\n");
    ui::incoming(&mut app, "anonymous", "Anonymous", true);
    let buf = shot(&app, Lang::En, 80, 24);
    let p = assert_popup_intact(&buf, Lang::En);
    let number_row = ui::rows(&buf)[p.top as usize + 1].clone();
    assert!(
        number_row.contains("Number") && number_row.contains("非通知さん"),
        "{number_row}"
    );
    assert!(ui::rows(&buf)[3].contains("非通知さん"), "{}", ui::dump(&buf));
    insta::assert_snapshot!("popup_anonymous", ui::stable(&buf));
}

#[test]
fn active_call_then_history_row() {
    let mut app = ringing("[popup]\ndisplay_seconds = 0\n");
    ui::found(&mut app, "Acme 株式会社", "山田 太郎", "C-42");
    ui::answered(&mut app);
    key(&mut app, KeyCode::Esc); // close the popup
    assert!(app.popup.is_none());
    let buf = shot(&app, Lang::En, 80, 24);
    let call_row = ui::rows(&buf)[3].clone();
    assert!(call_row.contains("active"), "{}", ui::dump(&buf));
    assert!(call_row.contains("0311112222"), "{call_row}");
    insta::assert_snapshot!("call_active", ui::stable(&buf));

    ui::ended(&mut app, EndReason::RemoteHangup, 83.4);
    for lang in [Lang::En, Lang::Ja] {
        let buf = shot(&app, lang, 80, 24);
        let row = ui::rows(&buf)[3].clone();
        assert!(
            row.contains("0311112222") && row.contains("山田 太郎"),
            "{}",
            ui::dump(&buf)
        );
        insta::assert_snapshot!(format!("history_{}", lang.code()), ui::stable(&buf));
        // A little wider, every column fits: the result, the company, the whole duration.
        let buf = shot(&app, lang, 100, 24);
        let row = ui::rows(&buf)[3].clone();
        let answered = if lang == Lang::En { "answered" } else { "応答" };
        assert!(
            row.contains(answered) && row.contains("Acme 株式会社") && row.contains("01:23"),
            "{}",
            ui::dump(&buf)
        );
        insta::assert_snapshot!(format!("history_100_{}", lang.code()), ui::stable(&buf));
    }
}

/// On the standard 80×24 terminal the call list shows the result of each call and its whole
/// duration (HIS-1).
#[test]
fn list_at_80_columns_shows_result_and_whole_duration() {
    let mut app = ringing("");
    ui::found(&mut app, "Acme", "Taro Yamada", "C-42");
    ui::answered(&mut app);
    ui::ended(&mut app, EndReason::RemoteHangup, 83.4);
    let buf = ui::render(&app, Lang::En, 80, 24);
    let header = ui::rows(&buf)[2].clone();
    let row = ui::rows(&buf)[3].clone();
    assert!(
        header.contains("Result") && header.contains("Duration"),
        "header at 80 columns: {header:?}"
    );
    assert!(
        row.contains("answered") && row.contains("01:23"),
        "history row at 80 columns: {row:?}"
    );
}

/// Where `needle` starts in a row, in terminal columns (widths as ratatui sends them).
fn column_of(row: &str, needle: &str) -> Option<usize> {
    let at = row.find(needle)?;
    Some(row[..at].graphemes(true).map(ui::cell_width).sum::<usize>())
}

/// Every row's cells start in the header's columns, whatever the script of the names before
/// them: ASCII, double-width kanji, decomposed accents, and half-width katakana with voiced
/// sound marks (ﾞ and ﾟ take a column of their own on a terminal), as legacy CRMs store names.
#[test]
fn columns_line_up_with_the_header() {
    let names = [
        ("0311110001", "Taro Yamada"),
        ("0311110002", "山田 太郎"),
        ("0311110003", "Mu\u{308}ller"),
        ("0311110004", "ﾔﾏﾀﾞ ﾀﾛｳ"),
        ("0311110005", "ﾊﾟｰﾌﾟﾙ ﾎﾟﾃﾄ"),
    ];
    let mut app = ui::app("");
    for (tel, name) in names {
        ui::incoming(&mut app, tel, name, false);
        ui::found(&mut app, "Acme", name, "C-1");
        ui::answered(&mut app);
        ui::ended(&mut app, EndReason::RemoteHangup, 61.0);
    }
    for w in [100u16, 120] {
        let buf = ui::render(&app, Lang::En, w, 24);
        let rows = ui::rows(&buf);
        let header = &rows[2];
        let company = column_of(header, "Company").expect("Company header");
        let duration = column_of(header, "Dur").expect("Duration header");
        for (i, (_, name)) in names.iter().rev().enumerate() {
            let row = &rows[3 + i];
            assert_eq!(
                (column_of(row, "Acme"), column_of(row, "01:01")),
                (Some(company), Some(duration)),
                "{w} columns: the row of {name:?} is shifted against the header\n{}",
                ui::dump(&buf)
            );
        }
    }
}

#[test]
fn help_overlay() {
    let mut app = ui::app("");
    key(&mut app, KeyCode::Char('?'));
    assert_eq!(app.mode, Mode::Help);
    let buf = shot(&app, Lang::En, 80, 24);
    let help = ui::frame_titled(&buf, "Keys");
    assert!(help.left > 0, "{help:?}");
    let t = ui::text(&buf);
    for h in ["answer", "hang up / reject", "dial a number", "this help", "quit"] {
        assert!(t.contains(h), "{h} missing\n{t}");
    }
    insta::assert_snapshot!("help_en", ui::stable(&buf));
    let buf = shot(&app, Lang::Ja, 80, 24);
    ui::frame_titled(&buf, "キー操作");
    insta::assert_snapshot!("help_ja", ui::stable(&buf));
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.mode, Mode::Normal);
}

/// A consult in progress: both calls listed (the customer held), the bottom line offers the
/// keys that work across them; the consult prompt is the consult's.
#[test]
fn consult_shows_both_calls_and_the_transfer_keys() {
    let mut app = ringing("[popup]\ndisplay_seconds = 0\n");
    ui::answered(&mut app);
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('T'));
    let buf = shot(&app, Lang::En, 80, 24);
    assert!(
        ui::rows(&buf)[23].contains("consult (attended transfer)"),
        "{}",
        ui::dump(&buf)
    );
    for c in "1003".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    let fx = app.on_key(KeyEvent::from(KeyCode::Enter));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Command(Command::Consult { to, call })
            if to == "1003" && call.as_deref() == Some(ui::CALL))),
        "{fx:?}"
    );
    ui::phone(
        &mut app,
        PhoneEvent::Held {
            call: ui::CALL.into(),
        },
    );
    ui::phone(
        &mut app,
        PhoneEvent::Outgoing {
            call: "consult-1@ctiphone".into(),
            to: "1003".into(),
        },
    );
    ui::phone(
        &mut app,
        PhoneEvent::Consult {
            call: ui::CALL.into(),
            consult: "consult-1@ctiphone".into(),
        },
    );
    ui::phone(
        &mut app,
        PhoneEvent::Answered {
            call: "consult-1@ctiphone".into(),
            srtp: None,
        },
    );
    let buf = shot(&app, Lang::En, 80, 24);
    let t = ui::text(&buf);
    assert!(t.contains("on hold") && t.contains("1003"), "{t}");
    let bottom = ui::rows(&buf)[23].clone();
    for k in ["C complete", "w swap", "X cancel", "J conference"] {
        assert!(bottom.contains(k), "{k} not in {bottom:?}");
    }
    insta::assert_snapshot!("consult_en", ui::stable(&buf));
    // The keys send their commands.
    for (c, want) in [
        ('C', Command::Complete { call: None }),
        ('w', Command::Swap { call: None }),
        ('X', Command::Cancel { call: None }),
        ('J', Command::Conference),
    ] {
        let fx = app.on_key(KeyEvent::from(KeyCode::Char(c)));
        let got: Vec<&Command> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Command(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(got.len(), 1, "{c}: {fx:?}");
        assert_eq!(
            std::mem::discriminant(got[0]),
            std::mem::discriminant(&want),
            "{c}: {fx:?}"
        );
    }
}

/// Call waiting: with the first call answered and the second's popup closed, `a` answers the
/// ringing one; each call keeps its own CRM data.
#[test]
fn call_waiting_a_answers_the_ringing_call() {
    let mut app = ringing("[popup]\ndisplay_seconds = 0\n");
    ui::found(&mut app, "Acme", "Taro Yamada", "C-42");
    ui::answered(&mut app);
    key(&mut app, KeyCode::Esc);
    ui::phone(
        &mut app,
        PhoneEvent::Incoming {
            call: "call-2@127.0.0.1".into(),
            tel: "0399998888".into(),
            telname: "Hanako Suzuki".into(),
            called: "0312345678".into(),
            calledname: String::new(),
            anonymous: false,
        },
    );
    assert_eq!(
        app.popup.as_ref().map(|p| p.call.as_str()),
        Some("call-2@127.0.0.1")
    );
    key(&mut app, KeyCode::Esc);
    let fx = app.on_key(KeyEvent::from(KeyCode::Char('a')));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Command(Command::Answer { call: Some(c) })
            if c == "call-2@127.0.0.1")),
        "{fx:?}"
    );
    let buf = shot(&app, Lang::En, 80, 24);
    let t = ui::text(&buf);
    assert!(t.contains("Acme") && t.contains("0399998888"), "{t}");
    // With two calls up, the bottom line shows the keys across them.
    assert!(ui::rows(&buf)[23].contains("w swap"), "{}", ui::dump(&buf));
}

/// Being transferred to: the same row shows the new party, the popup opens again for it with
/// the CRM's answer about them.
#[test]
fn a_replaced_call_shows_the_new_party() {
    let mut app = ringing("[popup]\ndisplay_seconds = 0\n");
    ui::found(&mut app, "Acme", "Taro Yamada", "C-42");
    ui::answered(&mut app);
    key(&mut app, KeyCode::Esc);
    ui::phone(
        &mut app,
        PhoneEvent::Replaced {
            call: ui::CALL.into(),
            tel: "0399998888".into(),
            telname: "Hanako Suzuki".into(),
        },
    );
    assert!(app.popup.is_some(), "the popup opens for the new party");
    ui::found(&mut app, "Beta KK", "Hanako Suzuki", "C-7");
    let buf = shot(&app, Lang::En, 80, 24);
    let t = ui::text(&buf);
    assert!(
        t.contains("0399998888") && t.contains("Beta KK") && !t.contains("Acme"),
        "{t}"
    );
    assert_eq!(app.calls.len(), 1, "the same row");
    insta::assert_snapshot!("replaced_en", ui::stable(&buf));
}

/// The agent's status in the status bar (AGT-1), and picking a reason / a wrap-up code by
/// number (AGT-2, AGT-3).
#[test]
fn agent_status_and_its_choosers() {
    let mut app = ui::app("[agent]\nnot_ready_reasons = [\"Break\", \"Lunch\"]\nwrapup_codes = [\"Sale\"]\n");
    ui::phone(
        &mut app,
        PhoneEvent::Status {
            state: AgentState::NotReady,
            reason: "Lunch".into(),
            wrapup: String::new(),
            since: "2026-12-04T10:00:00+09:00".into(),
        },
    );
    key(&mut app, KeyCode::Char('n'));
    let buf = shot(&app, Lang::En, 80, 24);
    assert!(
        ui::rows(&buf)[0].contains("Not ready (Lunch) 00:00"),
        "{}",
        ui::dump(&buf)
    );
    assert!(
        ui::rows(&buf)[23].starts_with("Not ready: 1 Break  2 Lunch"),
        "{}",
        ui::dump(&buf)
    );
    insta::assert_snapshot!("agent_not_ready_en", ui::stable(&buf));
    let fx = app.on_key(KeyEvent::from(KeyCode::Char('2')));
    assert!(
        fx.iter().any(|e| matches!(e, Effect::Command(Command::Status { state: AgentState::NotReady, reason: Some(r) }) if r == "Lunch")),
        "{fx:?}"
    );
    assert_eq!(app.mode, Mode::Normal);
    // A key that is no choice closes the chooser without a command.
    key(&mut app, KeyCode::Char('W'));
    let fx = app.on_key(KeyEvent::from(KeyCode::Char('7')));
    assert!(fx.is_empty(), "{fx:?}");
    key(&mut app, KeyCode::Char('W'));
    let fx = app.on_key(KeyEvent::from(KeyCode::Char('1')));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Command(Command::Wrapup { code }) if code == "Sale")),
        "{fx:?}"
    );
    let fx = app.on_key(KeyEvent::from(KeyCode::Char('r')));
    assert!(
        fx.iter().any(|e| matches!(
            e,
            Effect::Command(Command::Status {
                state: AgentState::Ready,
                reason: None
            })
        )),
        "{fx:?}"
    );
    let buf = shot(&app, Lang::Ja, 80, 24);
    assert!(
        ui::rows(&buf)[0].contains("受付停止 (Lunch)"),
        "{}",
        ui::dump(&buf)
    );
}

/// The voicemail light in the status bar (RFC 3842), and `M` dials the voicemail number.
#[test]
fn voicemail_light_and_key() {
    let mut app = ui::app("");
    let fx = app.on_key(KeyEvent::from(KeyCode::Char('M')));
    assert!(fx.is_empty(), "no number configured: {fx:?}");
    let mut app = ui::app(
        "[account]\nvoicemail = \"*97\"\n"
            .replace("[account]\n", "")
            .as_str(),
    );
    app.voicemail_number = "*97".into();
    ui::phone(
        &mut app,
        PhoneEvent::Voicemail {
            waiting: true,
            new: 2,
            old: 8,
        },
    );
    let buf = shot(&app, Lang::En, 80, 24);
    assert!(
        ui::rows(&buf)[0].contains("voicemail: 2 new"),
        "{}",
        ui::dump(&buf)
    );
    let buf = shot(&app, Lang::Ja, 80, 24);
    assert!(
        ui::rows(&buf)[0].contains("留守電: 新着 2 件"),
        "{}",
        ui::dump(&buf)
    );
    let fx = app.on_key(KeyEvent::from(KeyCode::Char('M')));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Command(Command::Dial { to }) if to == "*97")),
        "{fx:?}"
    );
    ui::phone(
        &mut app,
        PhoneEvent::Voicemail {
            waiting: false,
            new: 0,
            old: 8,
        },
    );
    let buf = shot(&app, Lang::En, 80, 24);
    assert!(!ui::rows(&buf)[0].contains("voicemail"), "{}", ui::dump(&buf));
}

/// The colleagues' lamps panel (BLF): each lamp as the phone reports it; Enter dials, `t`
/// transfers the current call, `p` picks up.
#[test]
fn blf_panel_shows_the_lamps_and_acts_on_the_selected_colleague() {
    let mut app = ui::app(
        "[blf]\nwatch = [{ number = \"1002\", name = \"Sato\" }, { number = \"1003\", name = \"Suzuki\" }, { number = \"1004\" }]\n",
    );
    for (number, state) in [("1002", "busy"), ("1003", "ringing")] {
        ui::phone(
            &mut app,
            PhoneEvent::Blf {
                number: number.into(),
                name: String::new(),
                state: state.into(),
            },
        );
    }
    key(&mut app, KeyCode::Char('b'));
    key(&mut app, KeyCode::Down);
    let buf = shot(&app, Lang::En, 80, 24);
    let t = ui::text(&buf);
    for want in [
        "Colleagues",
        "Sato",
        "in a call",
        "▶ Suzuki",
        "ringing",
        "1004",
        "unknown",
    ] {
        assert!(t.contains(want), "{want}:\n{t}");
    }
    insta::assert_snapshot!("blf_en", ui::stable(&buf));
    let fx = app.on_key(KeyEvent::from(KeyCode::Char('p')));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Command(Command::Pickup { number }) if number == "1003")),
        "{fx:?}"
    );
    key(&mut app, KeyCode::Char('b'));
    let fx = app.on_key(KeyEvent::from(KeyCode::Enter));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Command(Command::Dial { to }) if to == "1002")),
        "{fx:?}"
    );
    // `t` with a call up transfers it.
    let mut app2 = ringing("[blf]\nwatch = [{ number = \"1002\", name = \"Sato\" }]\n");
    ui::answered(&mut app2);
    key(&mut app2, KeyCode::Esc);
    key(&mut app2, KeyCode::Char('b'));
    let fx = app2.on_key(KeyEvent::from(KeyCode::Char('t')));
    assert!(
        fx.iter().any(|e| matches!(e, Effect::Command(Command::Transfer { to, call: Some(c) }) if to == "1002" && c == ui::CALL)),
        "{fx:?}"
    );
    key(&mut app, KeyCode::Char('b'));
    let buf = shot(&app, Lang::Ja, 80, 24);
    assert!(ui::text(&buf).contains("同僚"), "{}", ui::dump(&buf));
}

#[test]
fn dial_line_with_typed_input() {
    let mut app = ui::app("");
    key(&mut app, KeyCode::Char('d'));
    for c in "1002".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    let buf = shot(&app, Lang::En, 80, 24);
    let last = ui::rows(&buf)[23].clone();
    assert!(last.starts_with("Dial:"), "{last:?}");
    assert!(last.contains("1002▏"), "{last:?}");
    insta::assert_snapshot!("dial_en", ui::stable(&buf));
    let buf = shot(&app, Lang::Ja, 80, 24);
    assert!(ui::rows(&buf)[23].contains("1002▏"), "{}", ui::dump(&buf));
    insta::assert_snapshot!("dial_ja", ui::stable(&buf));
}

/// The agent's prompt reads "Dial: 1002", with one colon: `dial.prompt` already ends with
/// ": " and the view must not add another.
#[test]
fn dial_prompt_has_one_colon() {
    let mut app = ui::app("");
    key(&mut app, KeyCode::Char('d'));
    for c in "1002".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    for lang in [Lang::En, Lang::Ja] {
        let buf = ui::render(&app, lang, 80, 24);
        let last = ui::rows(&buf)[23].clone();
        assert!(
            !last.contains(": :") && !last.contains(":  :"),
            "the dial prompt repeats its colon: {:?}",
            last.trim_end()
        );
    }
}

/// A busy screen: a ringing call with a Japanese CRM record over a history of calls.
fn busy(lang_popup_size: &str) -> App {
    let mut app = ui::app(&format!("[popup]\nsize = \"{lang_popup_size}\"\n"));
    for (i, (tel, name, company)) in [
        ("0311112222", "山田 太郎", "Acme 株式会社"),
        (
            "09012345678",
            "佐藤 花子",
            "東京海上日動火災保険株式会社 本店営業第一部",
        ),
        ("anonymous", "", ""),
    ]
    .into_iter()
    .enumerate()
    {
        ui::incoming(&mut app, tel, name, tel == "anonymous");
        ui::found(&mut app, company, name, &format!("C-{i}"));
        if i != 2 {
            ui::answered(&mut app);
        }
        ui::ended(
            &mut app,
            if i == 2 {
                EndReason::Cancelled
            } else {
                EndReason::RemoteHangup
            },
            (i * 61) as f64,
        );
    }
    ui::incoming(&mut app, "0355556666", "ｶﾌﾞｼｷｶﾞｲｼｬ ﾃｽﾄ", false);
    ui::found(
        &mut app,
        "株式会社とても長い名前の会社でございます",
        "長谷川 美由紀子",
        "C-9",
    );
    app
}

#[test]
fn wide_terminal() {
    let app = busy("large");
    for lang in [Lang::En, Lang::Ja] {
        let buf = shot(&app, lang, 160, 40);
        assert_popup_intact(&buf, lang);
        insta::assert_snapshot!(format!("wide_{}", lang.code()), ui::stable(&buf));
    }
}

#[test]
fn narrow_terminal() {
    for size in ["small", "medium", "large"] {
        let app = busy(size);
        for lang in [Lang::En, Lang::Ja] {
            let buf = shot(&app, lang, 60, 20);
            assert_popup_intact(&buf, lang);
            if size == "medium" {
                insta::assert_snapshot!(format!("narrow_{}", lang.code()), ui::stable(&buf));
            }
        }
    }
}

/// Japanese double-width text everywhere (catalog, caller, CRM), at every terminal size from
/// tiny to wide: no panic, every row exactly as wide as the terminal, the popup's borders whole.
#[test]
fn japanese_rows_keep_their_width_at_every_size() {
    for size in ["small", "medium", "large"] {
        let app = busy(size);
        for w in (20..=120).step_by(7) {
            for h in [8u16, 12, 20, 31] {
                let buf = ui::render(&app, Lang::Ja, w, h);
                for y in 0..h {
                    let (_, hidden) = ui::row(&buf, y);
                    assert_eq!(
                        ui::row_width(&buf, y),
                        w as usize,
                        "{size} {w}x{h} row {y}\n{}",
                        ui::dump(&buf)
                    );
                    assert!(
                        hidden.is_empty(),
                        "{size} {w}x{h} row {y}: {hidden:?}\n{}",
                        ui::dump(&buf)
                    );
                }
                // The popup's box is closed: its right border column intact on every row.
                let p = ui::frame_titled(&buf, " 着信 ");
                assert!(p.right < w, "{p:?}");
                // Wide enough for the popup to sit inside the list: every box is closed.
                if w >= 60 {
                    ui::frames(&buf);
                }
            }
        }
    }
}

/// Tiny terminals draw something without panicking.
#[test]
fn tiny_terminals_do_not_panic() {
    let app = busy("large");
    for w in 0..12u16 {
        for h in 0..6u16 {
            for lang in [Lang::En, Lang::Ja] {
                let _ = ui::render(&app, lang, w.max(1), h.max(1));
            }
        }
    }
}

/// The status bar keeps its clock whole, apart from the registration text, however narrow the
/// terminal: the left part gives way, not the clock.
#[test]
fn status_bar_clock_stays_whole() {
    let clock = regex::Regex::new(r" \d\d:\d\d:\d\d$").unwrap();
    let app = ui::app("");
    for lang in [Lang::En, Lang::Ja] {
        for w in [40u16, 60, 70, 80] {
            let buf = ui::render(&app, lang, w, 24);
            let first = ui::rows(&buf)[0].trim_end().to_owned();
            assert!(
                clock.is_match(&first),
                "{} at {w} columns, the status bar's clock is cut or glued: {first:?}",
                lang.code()
            );
        }
    }
}

/// Labels and column headers are not cut at the usual sizes: the popup's field labels, the
/// list's headers and direction column, in English and Japanese.
#[test]
fn labels_fit_their_columns() {
    let mut app = ringing("[popup]\nsize = \"large\"\n");
    ui::found(&mut app, "Acme", "Taro Yamada", "C-42");
    let mut cut = Vec::new();
    for lang in [Lang::En, Lang::Ja] {
        for w in [100u16, 120] {
            let buf = ui::render(&app, lang, w, 30);
            let rows = ui::rows(&buf);
            let p = ui::frame_titled(&buf, popup_title(lang));
            for (y, r) in rows.iter().enumerate() {
                // The header, the call row, and the popup's label column.
                let label_row = (p.top as usize + 1..p.bottom as usize).contains(&y);
                if (y == 2 || y == 3 || label_row) && r.contains('…') {
                    cut.push(format!("{} {w}: {:?}", lang.code(), r.trim_end()));
                }
            }
        }
    }
    assert!(cut.is_empty(), "cut labels:\n{}", cut.join("\n"));
}

/// The contacts pane: search text, local and shared entries (shared ones marked `↓`), a
/// hostile name drawn clean, then the add form; Enter on an entry dials it.
#[test]
fn contacts_pane_and_form() {
    use ctiphone::phonebook::{Contact, Origin};
    use ctiphone::ui::contacts::Op;
    use ctiphone::ui::state::Effect;
    let mut app = ui::app("");
    let fx = app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::NONE));
    assert_eq!(app.mode, Mode::Contacts);
    assert_eq!(fx, vec![Effect::Contacts(Op::Search(String::new()))]);
    let fx = app.on_key(KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE));
    assert_eq!(fx, vec![Effect::Contacts(Op::Search("y".into()))]);
    let c = |id: Option<i64>, name: &str, number: &str, company: &str| Contact {
        id,
        name: name.into(),
        number: number.into(),
        company: company.into(),
        origin: if id.is_some() {
            Origin::Local
        } else {
            Origin::Shared
        },
    };
    app.contacts.show(vec![
        c(Some(1), "山田 太郎", "+81 3-1234-5678", "ACME"),
        c(Some(2), "Yamamoto\u{1b}[2J\u{7}", "1002", ""),
        c(None, "Yano (shared)", "0120-000-111", "Example Inc."),
    ]);
    for lang in [Lang::En, Lang::Ja] {
        let buf = shot(&app, lang, 80, 24);
        let t = ui::text(&buf);
        assert!(t.contains("↓ 0120-000-111"), "{t}");
        insta::assert_snapshot!(format!("contacts_{}", lang.code()), ui::stable(&buf));
    }
    app.on_key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::CONTROL));
    for ch in "Sato".chars() {
        app.on_key(KeyEvent::new(KeyCode::Char(ch), KeyModifiers::NONE));
    }
    let buf = shot(&app, Lang::En, 80, 24);
    ui::frame_titled(&buf, "New contact");
    insta::assert_snapshot!("contacts_form_en", ui::stable(&buf));
    app.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    key(&mut app, KeyCode::Down);
    let fx = app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(
        fx,
        vec![Effect::Command(ctiphone::app::Command::Dial {
            to: "1002".into()
        })]
    );
    assert_eq!(app.mode, Mode::Normal);
}

/// The history filters: `/` types a text filter, `f` cycles the result, `g` jumps to a date;
/// each asks the run loop for the list again, and the list's title says what is in force.
#[test]
fn history_filters_show_in_the_title() {
    use ctiphone::app::CallResult;
    use ctiphone::history::Query;
    use ctiphone::ui::state::Effect;
    let mut app = ui::app("");
    key(&mut app, KeyCode::Char('/'));
    for ch in "yama".chars() {
        key(&mut app, KeyCode::Char(ch));
    }
    let buf = shot(&app, Lang::En, 80, 24);
    assert!(
        ui::rows(&buf)[23].starts_with("Filter: yama▏"),
        "{}",
        ui::dump(&buf)
    );
    let fx = app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let q = |text: &str, result: Option<CallResult>, until: Option<&str>| Query {
        text: text.into(),
        result,
        until: until.map(str::to_owned),
        limit: 500,
        ..Query::default()
    };
    assert_eq!(fx, vec![Effect::LoadHistory(q("yama", None, None))]);
    let fx = app.on_key(KeyEvent::new(KeyCode::Char('f'), KeyModifiers::NONE));
    assert_eq!(
        fx,
        vec![Effect::LoadHistory(q("yama", Some(CallResult::Answered), None))]
    );
    key(&mut app, KeyCode::Char('g'));
    for ch in "2026-11-20".chars() {
        key(&mut app, KeyCode::Char(ch));
    }
    let fx = app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(
        fx,
        vec![Effect::LoadHistory(q(
            "yama",
            Some(CallResult::Answered),
            Some("2026-11-20")
        ))]
    );
    let buf = shot(&app, Lang::En, 100, 24);
    let title = ui::rows(&buf)[1].clone();
    assert!(
        title.contains("filter: yama · result: answered · until 2026-11-20"),
        "{title}"
    );
    insta::assert_snapshot!("history_filtered_en", ui::stable(&buf));
}

/// The live call list names a call's result as the history does: from the phone's `ended`
/// event when it carries one, else from the same `CallResult::new` (a caller who gave up or a
/// ring that timed out is `missed`, never `failed`).
#[test]
fn the_call_list_names_results_as_the_history() {
    use ctiphone::app::{CallResult, Direction, PhoneEvent};
    for reason in [
        EndReason::Cancelled,
        EndReason::Timeout,
        EndReason::RemoteHangup,
        EndReason::LocalHangup,
        EndReason::Rejected,
        EndReason::Busy,
        EndReason::Failed,
    ] {
        let mut app = ui::app("");
        ui::incoming(&mut app, "0311112222", "Taro", false);
        ui::ended(&mut app, reason, 0.0);
        let want = CallResult::new(Direction::Incoming, false, reason);
        assert_eq!(app.history[0].result, want, "{reason:?}");
    }
    let mut app = ui::app("");
    ui::incoming(&mut app, "0311112222", "Taro", false);
    ui::answered(&mut app);
    ui::ended(&mut app, EndReason::Timeout, 3.0);
    assert_eq!(app.history[0].result, CallResult::Answered);
    let mut app = ui::app("");
    ui::incoming(&mut app, "0311112222", "Taro", false);
    ui::phone(
        &mut app,
        PhoneEvent::Ended {
            call: CALL.to_owned(),
            reason: EndReason::Timeout,
            code: Some(408),
            duration_s: 0.0,
            result: Some(CallResult::Busy),
            detail: None,
        },
    );
    assert_eq!(app.history[0].result, CallResult::Busy, "the phone's name wins");
    assert_eq!(
        CallResult::new(Direction::Incoming, false, EndReason::Timeout),
        CallResult::Missed
    );
}

#[test]
fn attaching_draws_the_live_calls_their_timers_and_the_popup() {
    use ctiphone::app::snapshot::Snapshot;
    // What a daemon sends a front end that attaches: a call answered 65 s ago, a second one
    // ringing with its CRM record (popup shown 2 s ago), the agent ready for 5 min.
    let snap: Snapshot = serde_json::from_value(serde_json::json!({
        "pid": 4242, "version": "0.1.0", "listen": "127.0.0.1:5060",
        "registration": {"state": "registered", "aor": "sip:1001@pbx.example", "expires": 300},
        "calls": [
            {"call": "c-active", "incoming": true, "state": "active", "tel": "0311112222",
             "telname": "Taro Yamada", "called": "0312345678", "calledname": "", "anonymous": false,
             "age_s": 70.2, "answered_s": 65.4,
             "crm": {"searching": false, "vars": {"COMPANY": "ACME 株式会社", "NAME": "Taro Yamada"}, "error": null, "link": null},
             "consult_for": null, "conference": false, "quality": {"loss_percent": 0.0, "jitter_ms": 3.0, "rtt_ms": null, "lost": 0, "late": 0, "concealed_s": 0.0, "buffer_ms": 40, "mos": 4.39}},
            {"call": "c-ring", "incoming": true, "state": "ringing", "tel": "0399998888",
             "telname": "", "called": "0312345678", "calledname": "", "anonymous": false,
             "age_s": 2.1, "answered_s": null,
             "crm": {"searching": false, "vars": {"COMPANY": "Globex", "NAME": "Hanako Suzuki", "EXT_ID": "C-7"}, "error": null, "link": null},
             "consult_for": null, "conference": false, "quality": null}
        ],
        "popup": {"call": "c-ring", "age_s": 2.0},
        "agent": {"state": "ready", "reason": "", "wrapup": "", "since": "2026-12-04T10:00:00+09:00", "for_s": 300.0},
        "blf": [], "voicemail": {"waiting": true, "new": 2, "old": 0}, "history": []
    }))
    .expect("a snapshot");
    let mut app = ui::app("");
    app.attach(&snap);
    assert!(app.attached);
    let buf = shot(&app, Lang::En, 100, 30);
    let t = ui::text(&buf);
    assert!(
        t.contains("Incoming call") && t.contains("Hanako Suzuki") && t.contains("Globex"),
        "{t}"
    );
    let active = t.lines().find(|l| l.contains("active")).unwrap_or_default();
    assert!(
        active.contains("0311112222") && active.contains("ACME 株式会社"),
        "{t}"
    );
    assert!(
        active.contains("1:05"),
        "the answered call's timer goes on from the daemon's: {active}"
    );
    assert!(t.contains("│ registered │"), "{t}");
    // `q` detaches (calls go on); `Q` asks before stopping the phone.
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('?'));
    let t = ui::text(&shot(&app, Lang::En, 100, 30));
    assert!(
        t.contains("detach (calls go on)") && t.contains("stop the phone"),
        "{t}"
    );
    key(&mut app, KeyCode::Esc);
    assert_eq!(
        app.on_key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE)),
        vec![Effect::Detach]
    );
    assert_eq!(
        app.on_key(KeyEvent::new(KeyCode::Char('Q'), KeyModifiers::SHIFT)),
        vec![]
    );
    assert_eq!(app.mode, Mode::ConfirmStop);
    let t = ui::text(&shot(&app, Lang::En, 100, 30));
    assert!(
        t.contains("Stop the phone? Calls in progress are hung up. (y/n)"),
        "{t}"
    );
    assert_eq!(
        app.on_key(KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE)),
        vec![Effect::Quit]
    );
    // Hostile numbers from the wire are made safe like any event's.
    let mut hostile = snap.clone();
    hostile.calls[0].tel = "\u{1b}[2J0311".into();
    hostile.calls[0].age_s = f64::NAN;
    hostile.calls[0].answered_s = Some(-5.0);
    if let Some(p) = hostile.popup.as_mut() {
        p.age_s = f64::INFINITY;
    }
    let mut app = ui::app("");
    app.attach(&hostile);
    shot(&app, Lang::En, 100, 30);
}

/// The configuration behind the settings snapshots: some keys written (Japanese values among
/// them, a long template, several captures), the others left to their defaults.
const SETTINGS_CONFIG: &str = r#"# Settings snapshot
[account]
uri = "sip:1001@127.0.0.1"
registrar = ""
listen = "127.0.0.1:5062"
display_name = "山田 太郎"
call_waiting = true

[agent]
not_ready_reasons = ["休憩", "Meeting"]

[cti]
target = "custom"
timeout_seconds = 7.5
numbers = [
  { number = "03-1234-5678", enabled = true },
  { number = "0120-000-111", enabled = false },
]

[cti.auth]
method = "post"
template = "https://crm.example.co.jp/api/v2/login?account={AID}&password={APW}&extension={EXT}&client=ctiphone"
captures = { TOKEN = "json:/session/token", EXPIRES = "regex:expires=([0-9]{1,6})" }

[cti.search]
method = "get"
template = "https://crm.example.co.jp/api/v2/customers/search?tel={TEL}&token={TOKEN}"
captures = { COMPANY = "json:/data/0/company", NAME = "json:/data/0/name", EXT_ID = "json:/data/0/id" }

[cti.ring]
method = "browser_get"
template = "https://crm.example.co.jp/customers/{EXT_ID}?from={TEL}"

[cti.hangup]
method = "command"
template = "/usr/local/bin/crm-log {ID} {TEL} {CALLED}"
only_if_answered = true

[popup]
size = "large"
anonymous_name = "非通知"

[audio]
codecs = ["PCMA", "PCMU"]
"#;

/// The settings panes, in order, and the catalog keys of the labels each must show whole.
const SETTINGS_PANES: [(&str, &[&str]); 7] = [
    (
        "basic",
        &[
            "field.target",
            "field.skip_internal",
            "field.internal_pattern",
            "field.session_keep",
            "field.timeout",
            "field.system_number",
            "field.server_address",
        ],
    ),
    ("targets", &["settings.check_all", "settings.uncheck_all"]),
    (
        "popup",
        &[
            "field.size",
            "field.buttons",
            "field.display_seconds",
            "field.copy_number",
            "field.anonymous_name",
        ],
    ),
    (
        "custom",
        &[
            "settings.access",
            "field.method",
            "field.template",
            "field.captures",
            "access.auth",
            "access.search",
            "access.click",
            "access.ring",
            "access.answer",
            "access.hangup",
            "access.outgoing",
            "access.recorded",
            "access.status",
            "field.delay",
            "field.only_if_answered",
        ],
    ),
    (
        "account",
        &[
            "field.uri",
            "field.password",
            "field.display_name",
            "field.remote_answer_from",
            "field.ring_when_not_ready",
            "field.not_ready_code",
        ],
    ),
    (
        "audio",
        &[
            "field.input",
            "field.output",
            "field.codecs",
            "field.ring",
            "field.symmetric_rtp",
            "field.rtp_timeout",
        ],
    ),
    ("theme", &["field.theme", "field.language"]),
];

/// One frame of the settings screen at `w`×`h`, checked straight and clean.
fn settings_shot(s: &ctiphone::ui::settings::Settings, lang: Lang, w: u16, h: u16) -> Buffer {
    use ctiphone::ui::i18n::Catalog;
    use ctiphone::ui::theme::Theme;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    let (theme, cat) = (Theme::default(), Catalog::new(lang));
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    let buf = terminal
        .draw(|f| s.draw(f, f.area(), &theme, &cat))
        .expect("draw into the test backend")
        .buffer
        .clone();
    ui::assert_straight(&buf);
    ui::assert_clean(&buf, "settings");
    buf
}

/// Every settings pane at 80 and 120 columns, in English and Japanese: every label whole,
/// every field showing its value (a key the file leaves out shows the default the phone uses,
/// marked), the Custom integration pane as the manual's table of accesses.
#[test]
fn settings_panes() {
    use ctiphone::ui::i18n::Catalog;
    use ctiphone::ui::settings::Settings;
    let dir = tempfile::Builder::new()
        .prefix("settings")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, SETTINGS_CONFIG).expect("write the config");
    let shown_path = path.display().to_string();
    for lang in [Lang::En, Lang::Ja] {
        let cat = Catalog::new(lang);
        let default_mark = cat.fmt("settings.default_value", &[("value", "")]);
        let default_mark = default_mark.trim();
        for w in [80u16, 120] {
            let mut s = Settings::open(&path, vec!["0312345678".into(), "0399998888".into()])
                .expect("open the settings");
            for (pane, (name, labels)) in SETTINGS_PANES.iter().enumerate() {
                if pane > 0 {
                    s.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
                }
                let buf = settings_shot(&s, lang, w, 30);
                let t = ui::text(&buf);
                let tab = ui::rows(&buf)[0].clone();
                let pane_name = cat.get(
                    [
                        "settings.basic",
                        "settings.targets",
                        "settings.popup",
                        "settings.custom",
                        "settings.account",
                        "settings.audio",
                        "settings.theme",
                    ][pane],
                );
                assert!(tab.contains(&format!(" {pane_name} ")), "{name} {w}: tab {tab:?}");
                for label in *labels {
                    let l = cat.get(label);
                    assert!(
                        t.contains(l),
                        "{name} {w} {lang:?}: label {l:?} cut or missing\n{t}"
                    );
                }
                if *name != "targets" {
                    assert!(t.contains(default_mark), "{name} {w}: no default shown\n{t}");
                }
                // The path of the temporary file, as long, is not part of the snapshot.
                let stable = ui::stable(&buf).replace(
                    &shown_path,
                    &format!("{:─<1$}", "<config>", shown_path.chars().count()),
                );
                insta::assert_snapshot!(format!("settings_{name}_{w}_{}", lang.code()), stable);
            }
        }
    }
}

/// The central log behind (issue 18): the status bar says how many changes wait and why,
/// cleaned of control characters; it goes once PostgreSQL took them all.
#[test]
fn central_log_backlog_in_the_status_bar() {
    let mut app = ui::app("");
    ui::phone(
        &mut app,
        PhoneEvent::Central {
            backlog: 42,
            error: "connection refused\u{1b}[2J".into(),
        },
    );
    let buf = shot(&app, Lang::En, 120, 24);
    let top = ui::rows(&buf)[0].clone();
    assert!(
        top.contains("central log: 42 waiting (connection refused"),
        "{}",
        ui::dump(&buf)
    );
    assert!(!ui::dump(&buf).contains('\u{1b}'), "{}", ui::dump(&buf));
    let buf = shot(&app, Lang::Ja, 120, 24);
    assert!(
        ui::rows(&buf)[0].contains("集中ログ: 42 件待ち"),
        "{}",
        ui::dump(&buf)
    );
    ui::phone(
        &mut app,
        PhoneEvent::Central {
            backlog: 0,
            error: String::new(),
        },
    );
    let buf = shot(&app, Lang::En, 120, 24);
    assert!(!ui::rows(&buf)[0].contains("central log"), "{}", ui::dump(&buf));
}

/// An encrypted call (SRTP) shows a lock in the call list and in the popup's title; a plain
/// one does not.
#[test]
fn secure_call_shows_a_lock() {
    let mut app = ringing("[popup]\ndisplay_seconds = 0\n");
    ui::phone(
        &mut app,
        PhoneEvent::Answered {
            call: CALL.to_owned(),
            srtp: Some("AES_CM_128_HMAC_SHA1_80".into()),
        },
    );
    for lang in [Lang::En, Lang::Ja] {
        let buf = shot(&app, lang, 80, 24);
        let t = ui::text(&buf);
        let row = t.lines().find(|l| l.contains("0311112222")).unwrap_or_default();
        assert!(row.contains('🔒'), "no lock in the call's row:\n{t}");
        let title = popup_title(lang).trim();
        if let Some(popup) = t
            .lines()
            .find(|l| l.contains(&format!("┌ 🔒{title}")) || l.contains(&format!("┌ {title}")))
        {
            assert!(popup.contains('🔒'), "no lock in the popup's title:\n{t}");
        }
        insta::assert_snapshot!(format!("secure_call_{}", lang.code()), ui::stable(&buf));
    }
    // A quality report of a plain call clears it (a re-INVITE that dropped SRTP).
    ui::phone(
        &mut app,
        PhoneEvent::Quality {
            call: CALL.to_owned(),
            loss_percent: 0.0,
            jitter_ms: 1.0,
            remote_loss_percent: None,
            rtt_ms: None,
            lost: 0,
            late: 0,
            concealed_s: 0.0,
            fec_recovered: 0,
            buffer_ms: 40,
            mos: 4.39,
            srtp: None,
            srtp_auth_failed: 0,
            srtp_replayed: 0,
        },
    );
    let t = ui::text(&shot(&app, Lang::En, 80, 24));
    assert!(!t.contains('🔒'), "{t}");
}

/// A quality report puts the estimated MOS in the call's row and every figure (lost, late,
/// concealed seconds, buffer delay, jitter, round trip) on a line under the selected call.
#[test]
fn quality_report_in_the_call_list() {
    let mut app = ringing("[popup]\ndisplay_seconds = 0\n");
    ui::phone(
        &mut app,
        PhoneEvent::Answered {
            call: CALL.to_owned(),
            srtp: None,
        },
    );
    ui::phone(
        &mut app,
        PhoneEvent::Quality {
            call: CALL.to_owned(),
            loss_percent: 2.04,
            jitter_ms: 31.4,
            remote_loss_percent: Some(0.0),
            rtt_ms: Some(42.0),
            lost: 12,
            late: 3,
            concealed_s: 0.62,
            fec_recovered: 0,
            buffer_ms: 120,
            mos: 3.87,
            srtp: None,
            srtp_auth_failed: 0,
            srtp_replayed: 0,
        },
    );
    let buf = shot(&app, Lang::En, 120, 24);
    let t = ui::text(&buf);
    let row = t.lines().find(|l| l.contains("0311112222")).unwrap_or_default();
    assert!(row.contains("MOS 3.9"), "no MOS in the call's row:\n{t}");
    assert!(
        t.contains("└ MOS 3.9 (E-model) · lost 12 (2.0%) · late 3 · concealed 0.6s · buffer 120ms · jitter 31ms · RTT 42ms"),
        "no detail line:\n{t}"
    );
    insta::assert_snapshot!("quality_report", ui::stable(&buf));
    // A narrow terminal cuts the detail line to its width.
    let buf = shot(&app, Lang::En, 80, 24);
    let t = ui::text(&buf);
    assert!(t.contains("└ MOS 3.9 (E-model) · lost 12"), "{t}");
    assert!(
        t.lines().all(|l| unicode_width::UnicodeWidthStr::width(l) <= 80),
        "{t}"
    );
}
