//! The terminal itself: raw mode and the alternate screen, restored on every way out (quit,
//! panic, SIGTERM, SIGHUP); stderr redirected to the log file while the UI owns the screen (so
//! no library or ALSA line lands on it); keys read on their own thread; clipboard (OSC 52) and
//! notifications (bell, OSC 9, OSC 777). Only cleaned text is ever written here.

use std::io::{Write, stdout};
use std::os::fd::AsRawFd;

use crossterm::event::{self, Event as TermEvent, KeyEvent, KeyEventKind};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use crossterm::{cursor, execute};
use ratatui::Frame;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;

use super::text::clean;

/// Input for the UI loop.
#[derive(Debug)]
pub enum Input {
    Key(KeyEvent),
    /// A left click at (column, row).
    Click(u16, u16),
    Resize,
}

/// Puts the terminal back as it was. Safe to call more than once.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        stdout(),
        event::DisableMouseCapture,
        LeaveAlternateScreen,
        cursor::Show
    );
}

/// The UI's terminal; restored when dropped.
pub struct Terminal {
    /// Frames are written through a buffer of their own and flushed once each (ratatui
    /// flushes at the end of a draw): one write to the terminal per frame, where the
    /// standard output's line buffer would write every kilobyte, each waking the terminal.
    inner: ratatui::Terminal<CrosstermBackend<std::io::BufWriter<std::io::Stdout>>>,
    saved_stderr: Option<i32>,
}

impl Terminal {
    pub fn enter() -> std::io::Result<Terminal> {
        // Anything written to stderr from now on goes to the log file, not over the screen.
        let saved_stderr = redirect_stderr();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        enable_raw_mode()?;
        execute!(
            stdout(),
            EnterAlternateScreen,
            cursor::Hide,
            event::EnableMouseCapture
        )?;
        let out = std::io::BufWriter::with_capacity(256 * 1024, stdout());
        let inner = ratatui::Terminal::new(CrosstermBackend::new(out))?;
        Ok(Terminal { inner, saved_stderr })
    }

    pub fn draw(&mut self, f: impl FnOnce(&mut Frame)) -> std::io::Result<()> {
        self.inner.draw(f).map(|_| ())
    }

    /// Copies text to the agent's clipboard with OSC 52: it works through SSH and (with
    /// `set-clipboard on`) tmux.
    pub fn copy(&mut self, text: &str) {
        let mut out = stdout();
        let _ = out.write_all(&osc52(text));
        let _ = out.flush();
    }

    /// Turns text already drawn at (x, y) into a clickable OSC 8 hyperlink (ratatui has no
    /// API for it). The URL comes from our own encoded expansion; anything but printable
    /// ASCII in it, or in the text, and nothing is written.
    pub fn hyperlink(&mut self, x: u16, y: u16, text: &str, url: &str) {
        let printable = |s: &str| !s.chars().any(|c| c.is_control());
        if !url.is_ascii() || !printable(url) || !printable(text) {
            return;
        }
        let mut out = stdout();
        let _ = execute!(out, cursor::SavePosition, cursor::MoveTo(x, y));
        let _ = write!(out, "\x1b]8;;{url}\x1b\\{text}\x1b]8;;\x1b\\");
        let _ = execute!(out, cursor::RestorePosition);
        let _ = out.flush();
    }

    /// Rings the bell and asks the terminal for a desktop notification (OSC 9, OSC 777).
    pub fn notify(&mut self, text: &str) {
        let mut out = stdout();
        let _ = out.write_all(&notification(text));
        let _ = out.flush();
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        restore();
        if let Some(fd) = self.saved_stderr.take() {
            // SAFETY: dup2 of a descriptor we saved ourselves back onto stderr.
            unsafe {
                libc::dup2(fd, 2);
                libc::close(fd);
            }
        }
    }
}

/// The bytes [`Terminal::copy`] writes to the terminal: one OSC 52 sequence whose base64
/// payload is the text as the screen shows it (cleaned: a caller's control characters arrive
/// on the clipboard as visible escapes, never as bytes a paste would run).
pub fn osc52(text: &str) -> Vec<u8> {
    let text = clean(text);
    let mut out = Vec::new();
    let _ = crossterm::queue!(
        out,
        crossterm::clipboard::CopyToClipboard::to_clipboard_from(text.as_bytes())
    );
    out
}

/// The bytes [`Terminal::notify`] writes: the bell, then OSC 9 and OSC 777 with the text
/// cleaned (and without `;`, their separator).
pub fn notification(text: &str) -> Vec<u8> {
    let text: String = clean(text).chars().filter(|c| *c != ';').collect();
    format!("\x07\x1b]9;{text}\x07\x1b]777;notify;ctiphone;{text}\x07").into_bytes()
}

/// Points stderr at the log file; returns the saved original.
fn redirect_stderr() -> Option<i32> {
    let path = crate::logging::log_path();
    if let Some(dir) = path.parent() {
        let _ = crate::private::create_dir(dir);
    }
    let file = crate::private::create_file(&path, true).ok()?;
    // SAFETY: plain descriptor duplication; `file` stays open until dup2 has copied it.
    unsafe {
        let saved = libc::dup(2);
        if saved < 0 {
            return None;
        }
        if libc::dup2(file.as_raw_fd(), 2) < 0 {
            libc::close(saved);
            return None;
        }
        Some(saved)
    }
}

/// Keys and resizes, read on a thread of their own (blocking reads: no polling, no CPU idle).
pub fn key_events() -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        loop {
            let input = match event::read() {
                Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => Input::Key(k),
                Ok(TermEvent::Resize(..)) => Input::Resize,
                Ok(TermEvent::Mouse(m))
                    if m.kind == event::MouseEventKind::Down(event::MouseButton::Left) =>
                {
                    Input::Click(m.column, m.row)
                }
                Ok(_) => continue,
                Err(_) => break,
            };
            if tx.blocking_send(input).is_err() {
                break;
            }
        }
    });
    rx
}

/// SIGTERM, SIGHUP (the SSH link dropped) and SIGINT end the UI cleanly.
pub fn quit_signals() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = hup.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(()).await;
    });
    rx
}
