//! The terminal UI (ratatui + crossterm) over the same core the headless front end drives:
//! the SIP user agent and the CTI engine on the call-event bus. This is the only module that
//! knows about the terminal. It redraws only when something changed (plus a 1 Hz clock),
//! always restores the terminal (quit, panic, SIGTERM, SIGHUP), and sends nothing from the
//! caller to the terminal uncleaned.

pub mod contacts;
pub mod i18n;
pub mod keys;
pub mod lines;
pub mod settings;
pub mod state;
pub mod term;
pub mod text;
pub mod theme;
pub mod view;

use std::time::Duration;

use crate::app::snapshot::Snapshot;
use crate::app::{Bus, Command};
use crate::config::Config;
use crate::cti::Plan;
use crate::daemon::client::Connection;
use crate::private::AgentUmask as _;

use state::{App, Effect, Level};

/// Fills the call list from the history database.
fn load_history(app: &mut App, h: &crate::history::History, q: &crate::history::Query) {
    match h.query(q) {
        Ok(rows) => app.set_history(
            rows.iter()
                .filter(|r| r.state != "open")
                .map(state::HistoryRow::from_db)
                .collect(),
        ),
        Err(e) => app.log(Level::Warn, format!("call history: {e}")),
    }
}

/// Does a contacts-pane search or change, and shows the list again.
fn contacts_op(app: &mut App, pb: &crate::phonebook::Phonebook, op: contacts::Op, cat: &i18n::Catalog) {
    let done = match op {
        contacts::Op::Search(_) => Ok(None),
        contacts::Op::Save { id: Some(id), entry } => pb.update(id, &entry).map(|()| Some("contacts.saved")),
        contacts::Op::Save { id: None, entry } => pb.add(&entry).map(|_| Some("contacts.saved")),
        contacts::Op::Delete(id) => pb.delete(id).map(|_| Some("contacts.deleted")),
    };
    match done {
        Ok(msg) => app.contacts.message = msg.map(|m| cat.get(m).to_owned()),
        Err(e) => app.contacts.message = Some(e),
    }
    match pb.search(&app.contacts.query, contacts::PAGE) {
        Ok(list) => app.contacts.show(list),
        Err(e) => app.contacts.message = Some(e),
    }
    app.dirty = true;
}

/// The runtime the core runs on beside the terminal UI: one worker thread, named `core`.
pub fn core_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("core")
        .enable_all()
        .build()
}

/// Where the phone the UI drives runs.
pub enum Backend {
    /// In this process: the core (SIP, media control, CTI engine, history) on `core_rt`,
    /// another thread, so that drawing a frame never holds up a SIP answer or a CRM reply
    /// being read (docs/decisions.md D6). Leaving the UI stops the phone.
    Local(Plan, tokio::runtime::Handle),
    /// The daemon, by its socket, its snapshot already read: leaving the UI detaches.
    Attached(Box<(Snapshot, Connection)>),
}

/// The running phone as the UI holds it.
enum Link {
    Local {
        core: crate::app::core::Core,
        core_rt: tokio::runtime::Handle,
    },
    Attached {
        /// Fires when the daemon has gone.
        gone: tokio::sync::oneshot::Receiver<()>,
        pid: u32,
    },
}

/// The catalog and theme `[ui]` asks for (also `ctiphone supervisor`'s): the language from
/// `[ui] language` (else the environment; another code is a catalog file beside the
/// configuration), the theme from `[ui] theme`, monochrome under `NO_COLOR`.
pub fn look_of(config: &Config) -> Result<(i18n::Catalog, theme::Theme), String> {
    let cat = match i18n::Lang::parse(&config.ui.language) {
        Some(lang) => i18n::Catalog::new(lang),
        None if config.ui.language.is_empty() => i18n::Catalog::new(i18n::Lang::from_env()),
        None => {
            // Another language: a catalog file beside the configuration.
            let code: String = config
                .ui
                .language
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let file = crate::config::default_path()
                .and_then(|p| p.parent().map(|d| d.join("lang").join(format!("{code}.toml"))));
            match file.map(|f| i18n::Catalog::from_file(&f)) {
                Some(Ok(c)) => c,
                Some(Err(e)) => return Err(format!("[ui] language: {e}")),
                None => i18n::Catalog::new(i18n::Lang::En),
            }
        }
    };
    let theme_name = if config.ui.theme.is_empty() {
        "default"
    } else {
        config.ui.theme.as_str()
    };
    let user_themes = crate::config::default_path().and_then(|p| p.parent().map(|d| d.join("themes")));
    let mut theme = match theme::Theme::load(theme_name, user_themes.as_deref()) {
        Ok(t) => t,
        Err(e) => return Err(format!("theme `{theme_name}`: {e}")),
    };
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        theme = theme.monochrome();
    }
    Ok((cat, theme))
}

/// Runs the terminal UI on the current task until the agent quits or detaches. Returns the
/// exit code.
pub async fn run(config: Config, backend: Backend) -> u8 {
    let (cat, theme) = match look_of(&config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ctiphone: {e}");
            return 2;
        }
    };
    let keymap = match keys::KeyMap::new(&config.keys) {
        Ok(k) => k,
        Err(errors) => {
            for e in errors {
                eprintln!("ctiphone: {e}");
            }
            return 2;
        }
    };
    let bus = Bus::new();
    let mut events = bus.subscribe_as("ui");
    let mut app = App::new(&config, keymap);
    let (cmd_tx, mut link, phonebook) = match backend {
        Backend::Local(plan, core_rt) => {
            let started = core_rt.spawn({
                let (bus, config) = (bus.clone(), config.clone());
                async move { crate::app::core::Core::start(&bus, &config, plan, None).await }
            });
            let core = match started.await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    eprintln!("ctiphone: {e}");
                    return 2;
                }
                Err(e) => {
                    eprintln!("ctiphone: the core did not start: {e}");
                    return 2;
                }
            };
            let phonebook = core.phonebook.clone();
            (core.commands.clone(), Link::Local { core, core_rt }, phonebook)
        }
        Backend::Attached(attached) => {
            let (snapshot, conn) = *attached;
            app.attach(&snapshot);
            let (tx, gone) = crate::daemon::client::attach(conn, &bus);
            // The contacts pane edits the same phonebook the daemon names callers from.
            let phonebook = match crate::phonebook::Phonebook::open_default(&config.phonebook) {
                Ok(pb) => Some(pb),
                Err(e) => {
                    app.log(Level::Warn, format!("phonebook: {e}"));
                    None
                }
            };
            (
                tx,
                Link::Attached {
                    gone,
                    pid: snapshot.pid,
                },
                phonebook,
            )
        }
    };

    // The call list continues the history (HIS-2): the latest calls from the database.
    let history = crate::history::History::open(&crate::history::default_path());
    match &history {
        Ok(h) => {
            let q = app.filter.query();
            load_history(&mut app, h, &q);
        }
        Err(e) => app.log(Level::Warn, format!("call history: {e}")),
    }
    let history = history.ok();
    for w in theme.warnings() {
        app.log(Level::Warn, w.clone());
    }
    let mut terminal = match term::Terminal::enter() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ctiphone: cannot use the terminal: {e}");
            let _ = cmd_tx.send(Command::Quit).await;
            return 2;
        }
    };
    let mut keys = term::key_events();
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut signals = term::quit_signals();
    let look = view::Look {
        theme: &theme,
        cat: &cat,
    };
    let config_path = config.source.path.clone().or_else(crate::config::default_path);
    let mut settings: Option<settings::Settings> = None;
    let mut buttons: Vec<(ratatui::layout::Rect, keys::Action)> = Vec::new();
    let mut quitting = false;
    let mut detaching = false;
    let mut gone_seen = false;
    loop {
        if app.dirty {
            app.dirty = false;
            let mut frame = view::Drawn::default();
            let drawn = terminal.draw(|f| {
                frame = view::draw_with_link(f, &app, &look);
                if let Some(s) = &settings {
                    frame = view::Drawn::default();
                    s.draw(f, f.area(), &theme, &cat);
                }
            });
            buttons = frame.buttons;
            let link = frame.link;
            if let Err(e) = drawn {
                app.log(Level::Error, format!("drawing failed: {e}"));
            }
            if let Some(l) = link {
                terminal.hyperlink(l.x, l.y, &l.text, &l.url);
            }
        }
        let effects = tokio::select! {
            k = keys.recv() => match k {
                Some(term::Input::Key(k)) if settings.is_some() => {
                    app.dirty = true;
                    if settings.as_mut().is_some_and(|s| s.on_key(k) == settings::Outcome::Close) {
                        settings = None;
                    }
                    vec![]
                }
                Some(term::Input::Key(k)) => app.on_key(k),
                Some(term::Input::Click(x, y)) => {
                    let hit = buttons.iter().find(|(r, _)| x >= r.x && x < r.x + r.width && y == r.y).map(|(_, a)| *a);
                    match hit {
                        Some(a) if settings.is_none() => app.act(a),
                        _ => vec![],
                    }
                }
                Some(term::Input::Resize) => { app.dirty = true; vec![] }
                None => vec![Effect::Quit],
            },
            ev = events.recv() => match ev {
                Some(ev) => {
                    // What came with it is taken before the next frame: one frame for a burst
                    // (a ring and its CRM search starting), not one per event.
                    let mut fx = app.on_event(&ev);
                    for _ in 0..64 {
                        let Ok(ev) = events.try_recv() else { break };
                        fx.extend(app.on_event(&ev));
                    }
                    fx
                }
                None => vec![Effect::Quit],
            },
            _ = clock.tick() => { app.tick(); vec![] }
            // The terminal went away (SIGHUP) or was told to stop: with a daemon, only the
            // screen goes.
            _ = signals.recv() => vec![if app.attached { Effect::Detach } else { Effect::Quit }],
            _ = daemon_gone(&mut link) => {
                gone_seen = true;
                vec![Effect::Detach]
            }
        };
        for fx in effects {
            match fx {
                Effect::Command(c) => {
                    let _ = cmd_tx.send(c).await;
                }
                Effect::Copy(text) => terminal.copy(&text),
                Effect::Notify(text) => terminal.notify(&text),
                Effect::OpenSettings => match config_path.as_deref().map(|p| {
                    settings::Settings::open(p, app.history.iter().map(|h| h.called.clone()).collect())
                }) {
                    Some(Ok(s)) => settings = Some(s),
                    Some(Err(e)) => app.log(Level::Error, e),
                    None => app.log(Level::Error, "no configuration file to edit: give --config FILE"),
                },
                Effect::LoadHistory(q) => match &history {
                    Some(h) => load_history(&mut app, h, &q),
                    None => app.log(Level::Warn, "call history: not available"),
                },
                // The core runs it, next to the history (it may be the daemon's).
                Effect::Reclick(id) => {
                    let _ = cmd_tx.send(Command::Reclick { id }).await;
                }
                Effect::OpenRecording(path) => {
                    let browser = crate::cti::exec::BrowserEnv::from_env();
                    if browser.graphical {
                        // The path is one argument of the opener: never a shell.
                        let (program, args) = browser
                            .command
                            .split_first()
                            .map_or(("xdg-open", &[][..]), |(p, a)| (p.as_str(), a));
                        let spawned = tokio::process::Command::new(program)
                            .args(args)
                            .arg(&path)
                            .agent_umask()
                            .stdin(std::process::Stdio::null())
                            .stdout(std::process::Stdio::null())
                            .stderr(std::process::Stdio::null())
                            .spawn();
                        if let Err(e) = spawned {
                            app.log(Level::Error, format!("{program}: {e}"));
                        }
                    } else {
                        terminal.copy(&path);
                        app.log(
                            Level::Info,
                            cat.fmt("history.recording_copied", &[("path", &path)]),
                        );
                    }
                }
                Effect::Contacts(op) => match &phonebook {
                    Some(pb) => contacts_op(&mut app, pb, op, &cat),
                    None => app.contacts.message = Some("phonebook: not available".into()),
                },
                Effect::Quit => quitting = true,
                Effect::Detach => detaching = true,
            }
        }
        if quitting || detaching {
            break;
        }
    }
    drop(terminal);
    match link {
        Link::Local { core, core_rt } => {
            let _ = cmd_tx.send(Command::Quit).await;
            let _ = core_rt
                .spawn(async move {
                    let mut core = core;
                    let _ = tokio::time::timeout(Duration::from_secs(2), &mut core.ua).await;
                    core.finish().await;
                })
                .await;
        }
        Link::Attached { gone, pid } => {
            if gone_seen {
                println!("ctiphone: the phone (daemon PID {pid}) has stopped.");
            } else if quitting {
                // Stopping the daemon: it hangs up and unregisters, then closes the socket.
                let _ = cmd_tx.send(Command::Quit).await;
                let _ = tokio::time::timeout(Duration::from_secs(5), gone).await;
                println!("ctiphone: the phone (daemon PID {pid}) has stopped.");
            } else {
                println!(
                    "ctiphone: detached; the phone goes on (daemon PID {pid}). `ctiphone` attaches again, `ctiphone status` tells its state."
                );
            }
        }
    }
    0
}

/// Resolves when the daemon the UI is attached to has gone; never for a phone in-process.
async fn daemon_gone(link: &mut Link) {
    match link {
        Link::Attached { gone, .. } => {
            let _ = gone.await;
        }
        Link::Local { .. } => std::future::pending().await,
    }
}
