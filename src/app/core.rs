//! The phone's core, started the same way by every front end: the SIP user agent and the CTI
//! engine, both on the front end's call-event bus, the history and the phonebook, and the
//! channel commands go in by.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Bus, Command};
use crate::call::{self, CallConfig};
use crate::config::Config;
use crate::cti::{Engine, Options, Plan};

/// How long a stopping phone waits for the history to write what is queued.
const HISTORY_DRAIN: Duration = Duration::from_secs(5);
/// At most this many paths tightened at start are warnings on the bus (a recordings
/// directory may hold thousands); the log names them all.
const TIGHTENED_SHOWN: usize = 10;

/// Makes the phone's existing files private (issue 17): the data directory (the history and
/// its journals, the pid file, the log, the shared-phonebook copy, the default recordings
/// directory), the configured recordings directory, and the agent's configuration directory
/// (`$XDG_CONFIG_HOME/ctiphone`: its config.toml holds the SIP password). A configuration
/// given with `--config` elsewhere is the admin's to place (a team's file in /etc is meant to
/// be read by every agent) and is left as it is. Returns a warning per path changed or left
/// open.
fn tighten_private_files(config: &Config) -> Vec<String> {
    use crate::private::tighten_tree;
    let data = crate::config::data_dir();
    let mut warnings = tighten_tree(&data);
    let recordings = config.recording.dir();
    if !recordings.starts_with(&data) {
        warnings.extend(tighten_tree(&recordings));
    }
    if let Some(dir) = crate::config::default_path()
        .as_deref()
        .and_then(std::path::Path::parent)
    {
        warnings.extend(tighten_tree(dir));
    }
    warnings.dedup();
    warnings
}

/// Logs every warning and publishes the first [`TIGHTENED_SHOWN`], then a count of the rest.
fn publish_warnings(bus: &Bus, warnings: Vec<String>) {
    let publish = |message: String| bus.publish(super::Event::Phone(super::PhoneEvent::Warning { message }));
    let more = warnings.len().saturating_sub(TIGHTENED_SHOWN);
    for (i, w) in warnings.into_iter().enumerate() {
        tracing::warn!("{w}");
        if i < TIGHTENED_SHOWN {
            publish(w);
        }
    }
    if more > 0 {
        publish(format!(
            "{more} more files or directories were open to other users (see the log)"
        ));
    }
}

/// A running core.
pub struct Core {
    pub commands: mpsc::Sender<Command>,
    pub ua: JoinHandle<Result<(), String>>,
    engine: Engine,
    cti: JoinHandle<()>,
    history: Option<crate::history::Writer>,
    /// Sends the history's outbox to the central log.
    shipper: Option<crate::central::shipper::Shipper>,
    /// The phonebook, for the front ends' contacts screens.
    pub phonebook: Option<std::sync::Arc<crate::phonebook::Phonebook>>,
    refresh: Option<JoinHandle<()>>,
}

impl Core {
    /// Starts the CTI engine and the user agent on `bus` (subscribe to it first to see the
    /// first events). Fails when the account settings cannot be used.
    pub async fn start(
        bus: &Bus,
        config: &Config,
        plan: Plan,
        auto_answer: Option<Duration>,
    ) -> Result<Core, String> {
        let mut ua_cfg = CallConfig::from_config(config, auto_answer).await?;
        let engine = Engine::new(
            config,
            plan,
            Options {
                bus: Some(bus.clone()),
                ..Options::default()
            },
        );
        let cti = engine.subscribe(bus);
        // Files left open to other users by an earlier version or a hand are closed now.
        publish_warnings(bus, tighten_private_files(config));
        // The history is one more subscriber; a history that cannot open is a warning, not a
        // phone that cannot take calls.
        let keep = &config.history;
        // The central log (issue 18): the history queues each change in its outbox, and the
        // shipper sends the outbox to PostgreSQL on a thread of its own.
        let central = if keep.central.trim().is_empty() {
            None
        } else {
            match crate::central::target::parse(&keep.central, &keep.central_password_command) {
                Ok(t) => Some(crate::central::shipper::Settings {
                    target: t,
                    agent: keep.agent(&config.account),
                    db: crate::history::default_path(),
                }),
                Err(e) => {
                    bus.publish(super::Event::Phone(super::PhoneEvent::Warning {
                        message: format!("central log: [history] central: {e}; calls are kept locally only"),
                    }));
                    None
                }
            }
        };
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let opened = crate::history::History::open(&crate::history::default_path()).and_then(|h| {
            crate::history::claim(&h, &crate::history::lock_path())?;
            if keep.keep_days > 0 {
                h.prune(keep.keep_days, keep.delete_recordings)?;
            }
            let h = if central.is_some() {
                h.with_outbox(wake.clone())
            } else {
                h
            };
            h.subscribe(bus)
        });
        let shipper = match (&opened, central) {
            (Ok(_), Some(settings)) => {
                match crate::central::shipper::Shipper::start(settings, wake, bus.downgrade()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        bus.publish(super::Event::Phone(super::PhoneEvent::Warning { message: e }));
                        None
                    }
                }
            }
            _ => None,
        };
        let history = match opened {
            Ok(w) => Some(w),
            Err(e) => {
                bus.publish(super::Event::Phone(super::PhoneEvent::Warning {
                    message: format!("call history: {e}"),
                }));
                None
            }
        };
        // The phonebook names callers; one that cannot open is a warning too.
        let (phonebook, refresh) = match crate::phonebook::Phonebook::open_default(&config.phonebook) {
            Ok(pb) => {
                let refresh = pb.spawn_refresh(bus.clone());
                (Some(pb), refresh)
            }
            Err(e) => {
                bus.publish(super::Event::Phone(super::PhoneEvent::Warning {
                    message: format!("phonebook: {e}"),
                }));
                (None, None)
            }
        };
        ua_cfg.phonebook = phonebook.clone();
        let (commands, rx) = mpsc::channel::<Command>(64);
        let (ua_tx, ua_rx) = mpsc::channel::<Command>(64);
        tokio::spawn(dispatch(rx, ua_tx, bus.clone()));
        let ua = tokio::spawn(call::run(ua_cfg, bus.clone(), ua_rx));
        Ok(Core {
            commands,
            ua,
            engine,
            cti,
            history,
            shipper,
            phonebook,
            refresh,
        })
    }

    /// Stops the CTI engine once the user agent has ended, and its browser_post page server;
    /// the history writes what was published until then (waiting at most [`HISTORY_DRAIN`]
    /// for a locked database).
    pub async fn finish(self) {
        // Let the media sessions report their last recordings.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(h) = self.history {
            h.finish(HISTORY_DRAIN).await;
        }
        // What the shipper has not sent stays in the outbox for the next start.
        if let Some(s) = self.shipper {
            let _ = tokio::task::spawn_blocking(move || s.stop(Duration::from_secs(2))).await;
        }
        if let Some(r) = self.refresh {
            r.abort();
        }
        self.cti.abort();
        self.engine.shutdown().await;
    }
}

/// Hands the front ends' commands to the user agent, except those for the core's other
/// parts: a past call's click (HIS-2) is the history's. Ends when every front end's sender
/// is gone, closing the user agent's channel.
async fn dispatch(mut rx: mpsc::Receiver<Command>, ua: mpsc::Sender<Command>, bus: Bus) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::Reclick { id } => {
                let found =
                    crate::history::History::open(&crate::history::default_path()).and_then(|h| h.get(&id));
                match found {
                    Ok(Some(row)) => bus.call(row.reclick()),
                    Ok(None) => bus.publish(super::Event::Phone(super::PhoneEvent::Error {
                        message: format!("reclick: no call {} in the history", super::Logged(&id)),
                    })),
                    Err(e) => bus.publish(super::Event::Phone(super::PhoneEvent::Error {
                        message: format!("reclick: call history: {e}"),
                    })),
                }
            }
            cmd => {
                if ua.send(cmd).await.is_err() {
                    break;
                }
            }
        }
    }
}
