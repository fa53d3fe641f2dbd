//! The demo's caller: a second user agent of our own SIP stack, in the same process, that
//! rings the phone every few seconds as one sample customer after another (a known one, an
//! unknown one, an anonymous one, one with a hostile display name), plays a short audio sample
//! as its microphone when answered, and hangs up by itself if the agent does not.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::crm::{HOSTILE, KNOWN};
use crate::app::{Bus, CallerId, Command, Event, PhoneEvent, Subscription};
use crate::call::{self, CallConfig};
use crate::config::Config;
use crate::media::tone::RingTone;

/// One sample customer: who the call says it is from.
#[derive(Clone, Debug)]
pub struct Sample {
    /// What kind of caller this is, for people reading the demo's output.
    pub label: &'static str,
    pub caller: CallerId,
}

/// The display name of the hostile sample: an OSC 52 clipboard write, a clear-screen
/// sequence, and a right-to-left override that would show "Your Bank" reversed.
pub const HOSTILE_DISPLAY: &str = "\u{1b}]52;c;cm0gLXJmIH4K\u{7}\u{1b}[2J\u{202e}knaB ruoY";

/// The number an unknown caller calls from.
pub const UNKNOWN_TEL: &str = "0698765432";

/// The sample customers, in the order they call.
pub fn samples() -> Vec<Sample> {
    let owned = |s: &str| Some(s.to_owned());
    vec![
        Sample {
            label: "known customer (P-Asserted-Identity)",
            caller: CallerId {
                display: owned("YAMADA T"),
                user: owned(KNOWN.tel),
                host: None,
                headers: vec![(
                    "P-Asserted-Identity".to_owned(),
                    format!("\"YAMADA TARO\" <sip:{}@127.0.0.1>", KNOWN.tel),
                )],
            },
        },
        Sample {
            label: "unknown caller",
            caller: CallerId {
                display: owned(""),
                user: owned(UNKNOWN_TEL),
                host: None,
                headers: Vec::new(),
            },
        },
        Sample {
            label: "anonymous caller (Privacy: id)",
            caller: CallerId {
                display: owned("Anonymous"),
                user: owned("anonymous"),
                host: owned("anonymous.invalid"),
                headers: vec![("Privacy".to_owned(), "id".to_owned())],
            },
        },
        Sample {
            label: "hostile display name",
            caller: CallerId {
                display: owned(HOSTILE_DISPLAY),
                user: owned(HOSTILE.tel),
                host: None,
                headers: Vec::new(),
            },
        },
    ]
}

/// How the caller behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The phone's SIP address.
    pub phone: SocketAddr,
    /// The number dialled at the phone ({CALLED}).
    pub called: String,
    /// A WAV file played as the caller's microphone (it loops).
    pub sample: PathBuf,
    /// The first call starts after this.
    pub first_after: Duration,
    /// The pause between one call's end and the next call.
    pub interval: Duration,
    /// An unanswered call is cancelled after this.
    pub ring_for: Duration,
    /// An answered call is hung up by the caller after this.
    pub talk_for: Duration,
}

/// A running caller; [`Caller::stop`] hangs up and ends it.
pub struct Caller {
    commands: mpsc::Sender<Command>,
    ua: JoinHandle<Result<(), String>>,
    driver: JoinHandle<()>,
}

impl Caller {
    /// Starts the caller's user agent on 127.0.0.1 and the loop that dials the phone.
    pub async fn start(settings: Settings) -> Result<Caller, String> {
        let text = format!(
            "[account]\nuri = \"sip:demo-caller@127.0.0.1\"\nregistrar = \"\"\nlisten = \"127.0.0.1:0\"\n\
             [audio]\ninput = {}\noutput = \"null\"\nring = false\ncodecs = [\"PCMU\", \"PCMA\"]\n",
            toml::Value::String(format!("file:{}", settings.sample.display()))
        );
        let config = Config::parse(&text, None).map_err(|e| format!("the demo caller: {e}"))?;
        let ua_cfg = CallConfig::from_config(&config, None).await?;
        let bus = Bus::new();
        let events = bus.subscribe_as("demo caller");
        let (commands, rx) = mpsc::channel::<Command>(16);
        let ua = tokio::spawn(async move {
            let ended = call::run(ua_cfg, bus, rx).await;
            if let Err(e) = &ended {
                // Said in the log: the demo's calls stop, and the agent should see why.
                tracing::error!("demo caller: its user agent stopped: {e}");
            }
            ended
        });
        let driver = tokio::spawn(drive(settings, commands.clone(), events));
        Ok(Caller { commands, ua, driver })
    }

    /// Stops calling, hangs up a call in progress and ends the user agent.
    pub async fn stop(self) {
        self.driver.abort();
        let _ = self.commands.send(Command::Quit).await;
        let mut ua = self.ua;
        if tokio::time::timeout(Duration::from_secs(2), &mut ua)
            .await
            .is_err()
        {
            ua.abort();
        }
    }
}

async fn drive(s: Settings, commands: mpsc::Sender<Command>, mut events: Subscription) {
    let samples = samples();
    tokio::time::sleep(s.first_after).await;
    let mut n = 0;
    loop {
        let sample = &samples[n % samples.len()];
        n += 1;
        tracing::info!("demo caller: calling as the {}", sample.label);
        let dial = Command::DialAs {
            to: format!("sip:{}@{}", s.called, s.phone),
            caller: sample.caller.clone(),
        };
        if commands.send(dial).await.is_err() {
            return;
        }
        match follow(&s, &commands, &mut events).await {
            Followed::Gone => return,
            Followed::Done => tokio::time::sleep(s.interval).await,
            // Not reached (the phone still starting, or busy elsewhere): soon again, with the
            // same caller, rather than a whole interval later.
            Followed::NotReached => {
                n -= 1;
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

/// A call that never reached the phone is placed again after this.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// How a followed call went.
#[derive(Debug, PartialEq)]
enum Followed {
    /// It rang (and was answered, or not); the next call comes after the interval.
    Done,
    /// It ended before the phone rang or answered (nothing listening yet, an error).
    NotReached,
    /// The caller's user agent is gone.
    Gone,
}

/// Follows the call just dialled until it ends: cancels it after `ring_for`, hangs it up
/// `talk_for` after the answer.
async fn follow(s: &Settings, commands: &mpsc::Sender<Command>, events: &mut Subscription) -> Followed {
    let mut call: Option<String> = None;
    let mut reached = false;
    let mut deadline = Instant::now() + s.ring_for;
    let mut hung_up = false;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Phone(p)) => match p {
                    PhoneEvent::Outgoing { call: c, .. } if call.is_none() => call = Some(c),
                    PhoneEvent::Ringing { call: c } if call.as_ref() == Some(&c) => reached = true,
                    PhoneEvent::Answered { call: c, .. } if call.as_ref() == Some(&c) => {
                        reached = true;
                        deadline = Instant::now() + s.talk_for;
                    }
                    PhoneEvent::Ended { call: c, reason, code, .. } if call.as_ref() == Some(&c) => {
                        // A final response (busy, declined) came from the phone: it is there.
                        if reached || code.is_some() {
                            return Followed::Done;
                        }
                        tracing::warn!(
                            "demo caller: no answer at all from the phone ({reason:?}); calling again in {} s",
                            RETRY_AFTER.as_secs()
                        );
                        return Followed::NotReached;
                    }
                    // The dial itself failed: no call to follow.
                    PhoneEvent::Error { message } if call.is_none() => {
                        tracing::warn!("demo caller: {message}");
                        return Followed::NotReached;
                    }
                    _ => {}
                },
                Some(_) => {}
                None => return Followed::Gone,
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                if hung_up {
                    return Followed::Done;
                }
                hung_up = true;
                if commands.send(Command::Hangup { call: call.clone() }).await.is_err() {
                    return Followed::Gone;
                }
                deadline = Instant::now() + Duration::from_secs(5);
            }
        }
    }
}

/// Writes the caller's audio sample: a four-note chime (C E G C, 8 kHz mono) then a pause,
/// made with the phone's own tone generator.
pub fn write_sample(path: &Path) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut frame = [0i16; 160];
    for (freq, frames) in [(523.25, 13), (659.25, 13), (783.99, 13), (1046.5, 25), (0.0, 50)] {
        let mut tone = RingTone::with_cadence(8000, &[freq], 20 * (frames - 2), 40);
        for _ in 0..frames {
            if freq > 0.0 {
                tone.next_frame(&mut frame);
            } else {
                frame.fill(0);
            }
            for s in frame {
                w.write_sample(s).map_err(|e| e.to_string())?;
            }
        }
    }
    w.finalize().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_set_has_each_kind_of_caller() {
        let s = samples();
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].caller.user.as_deref(), Some(KNOWN.tel));
        assert!(
            s[0].caller
                .headers
                .iter()
                .any(|(n, _)| n == "P-Asserted-Identity")
        );
        assert!(super::super::crm::find(UNKNOWN_TEL).is_none());
        assert_eq!(s[2].caller.user.as_deref(), Some("anonymous"));
        assert!(
            s[2].caller
                .headers
                .contains(&("Privacy".to_owned(), "id".to_owned()))
        );
        assert!(
            s[3].caller
                .display
                .as_deref()
                .is_some_and(|d| d.contains('\u{1b}'))
        );
    }

    #[test]
    fn the_audio_sample_is_a_short_chime() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.wav");
        write_sample(&p).unwrap();
        let r = hound::WavReader::open(&p).unwrap();
        assert_eq!(r.spec().sample_rate, 8000);
        let samples: Vec<i16> = r.into_samples().map(Result::unwrap).collect();
        assert_eq!(samples.len(), 114 * 160);
        assert!(samples.iter().any(|s| s.unsigned_abs() > 1000));
    }
}
