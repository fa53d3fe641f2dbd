//! Snapshots of `ctiphone supervisor`'s board, drawn into ratatui's `TestBackend` at a fixed
//! time: agents in each status (one with a reason, one with none yet), an answered and a
//! ringing call, today's counts, a hostile agent id; at 80 and 120 columns, in English and
//! Japanese; the empty board and the lost connection. Each frame is also checked in code to
//! be straight and clean. The "updated" time in the status line (local time) is replaced by
//! `HH:MM:SS`.
//!
//! Update after an intended change: `INSTA_UPDATE=always cargo test --test
//! supervisor_snapshots`, then read the diff of `tests/snapshots/`.

#[path = "common/ui.rs"]
mod ui;

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ctiphone::central::report::AgentCounts;
use ctiphone::central::supervisor::{Agent, Board, CurrentCall, Update, view};
use ctiphone::ui::i18n::{Catalog, Lang};
use ctiphone::ui::theme::Theme;
use ctiphone::ui::view::Look;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

/// The drawing's "now" (seconds since the epoch).
const NOW: f64 = 1_767_000_000.0;

fn counts(agent: &str, offered: i64, answered: i64, avg: Option<f64>) -> AgentCounts {
    AgentCounts {
        agent: agent.into(),
        offered,
        answered,
        missed: offered - answered,
        outgoing: 0,
        avg_handle_s: avg,
        avg_wrapup_s: None,
        crm_failures: 0,
    }
}

fn agent(id: &str, status: Option<&str>, reason: &str, ago: f64, call: Option<CurrentCall>) -> Agent {
    Agent {
        id: id.into(),
        status: status.map(str::to_owned),
        reason: reason.into(),
        status_at: status.map(|_| NOW - ago),
        call,
        today: counts(id, 0, 0, None),
    }
}

fn board() -> Board {
    let mut talking = agent(
        "agent-001",
        Some("ready"),
        "",
        65.0,
        Some(CurrentCall {
            direction: "in".into(),
            tel: "0311112222".into(),
            name: "山田 太郎".into(),
            ring_at: NOW - 130.0,
            answer_at: Some(NOW - 125.0),
        }),
    );
    talking.today = counts("agent-001", 12, 10, Some(185.5));
    let mut wrapping = agent("agent-002", Some("after_call"), "", 20.0, None);
    wrapping.today = counts("agent-002", 5, 5, Some(90.0));
    let lunch = agent("agent-003", Some("not_ready"), "lunch", 3700.0, None);
    let ringing = agent(
        "agent-004",
        Some("ready"),
        "",
        400.0,
        Some(CurrentCall {
            direction: "in".into(),
            tel: "0422223333".into(),
            name: "Hanako Sato".into(),
            ring_at: NOW - 4.0,
            answer_at: None,
        }),
    );
    let hostile = agent("\u{1b}[31mevil\u{7}", None, "", 0.0, None);
    let mut b = Board::new("postgresql://sv@db.example/cc");
    b.apply(
        Update::Agents {
            agents: vec![hostile, lunch, ringing, wrapping, talking],
            server_now: NOW,
        },
        NOW,
    );
    b.on_key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
    b
}

fn render(b: &Board, lang: Lang, w: u16, h: u16) -> Buffer {
    let theme = Theme::default();
    let cat = Catalog::new(lang);
    let look = Look {
        theme: &theme,
        cat: &cat,
    };
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    let buf = terminal
        .draw(|f| view::draw(f, b, NOW, &look))
        .expect("draw")
        .buffer
        .clone();
    ui::assert_straight(&buf);
    ui::assert_clean(&buf, "supervisor");
    buf
}

/// The screen with the local "updated" time replaced.
fn stable(buf: &Buffer) -> String {
    let local = chrono::DateTime::from_timestamp(NOW as i64, 0)
        .expect("time")
        .with_timezone(&chrono::Local)
        .format("%H:%M:%S")
        .to_string();
    ui::text(buf).replace(&local, "HH:MM:SS")
}

#[test]
fn board_at_80_and_120_columns_in_english_and_japanese() {
    let b = board();
    for lang in [Lang::En, Lang::Ja] {
        for w in [80, 120] {
            let buf = render(&b, lang, w, 12);
            let t = ui::text(&buf);
            // Sorted by status, then agent; the clocks from the server's times.
            let order: Vec<usize> = ["agent-001", "agent-004", "agent-002", "agent-003", "evil"]
                .iter()
                .map(|a| t.find(a).unwrap_or_else(|| panic!("{a} missing:\n{t}")))
                .collect();
            assert!(order.windows(2).all(|p| p[0] < p[1]), "{order:?}\n{t}");
            let line = |a: &str| {
                ui::rows(&buf)
                    .into_iter()
                    .find(|r| r.contains(a))
                    .unwrap_or_default()
            };
            assert!(line("agent-001").contains("2:05"), "talk time:\n{t}");
            assert!(line("agent-001").contains("1:05"), "status time:\n{t}");
            assert!(line("agent-003").contains("1:01:40"), "{t}");
            assert!(line("evil").contains("\\e[31mevil\\x07"), "escaped:\n{t}");
            if w >= view::WIDE {
                assert!(line("agent-001").contains("3:06"), "average handle:\n{t}");
            } else {
                assert!(line("agent-001").contains("12/10/2"), "{t}");
            }
            insta::assert_snapshot!(format!("supervisor_{}_{w}", lang.code()), stable(&buf));
        }
    }
}

#[test]
fn empty_board_and_lost_connection() {
    let mut b = Board::new("postgresql://sv@db.example/cc");
    let t = ui::text(&render(&b, Lang::En, 80, 6));
    assert!(t.contains("connecting to postgresql://sv@db.example/cc"), "{t}");
    assert!(t.contains("No agent in the central log yet"), "{t}");
    b.apply(
        Update::Lost {
            error: "connection refused\u{1b}[2J".into(),
            retry_in: Duration::from_secs(8),
        },
        NOW - 3.0,
    );
    let buf = render(&b, Lang::En, 80, 6);
    let t = ui::text(&buf);
    // The keys make room for the message.
    assert!(
        t.contains("PostgreSQL unreachable, trying again in 5 s: connection refused\\e[2J"),
        "{t}"
    );
    insta::assert_snapshot!("supervisor_lost_en", stable(&buf));
    let t = ui::text(&render(&b, Lang::Ja, 80, 6));
    assert!(t.contains("PostgreSQL に接続できません"), "{t}");
}

#[test]
fn tiny_terminals_draw_without_panicking() {
    let b = board();
    let theme = Theme::default();
    for lang in [Lang::En, Lang::Ja] {
        let cat = Catalog::new(lang);
        let look = Look {
            theme: &theme,
            cat: &cat,
        };
        for w in [1, 2, 5, 10, 20, 40, 99, 100] {
            for h in [1, 2, 3, 4, 6] {
                let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
                let buf = terminal
                    .draw(|f| view::draw(f, &b, NOW, &look))
                    .expect("draw")
                    .buffer
                    .clone();
                ui::assert_clean(&buf, &format!("{w}x{h}"));
            }
        }
    }
}
