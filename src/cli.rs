//! The command line: global options, subcommands for admins (`check-config`, `cti expand`,
//! `cti fire`), and what each prints and returns.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::{CallEvent, CallParams, CallResult};
use crate::config::{self, Config, ConfigError};
use crate::cti::plan::BUILTIN_PARAMS;
use crate::cti::template::{self, Template};
use crate::cti::vars::{Identity, Vars};
use crate::cti::{Engine, Options};
use crate::daemon::remote::Remote;
use crate::logging;
use crate::phonebook::cli::PhonebookCommand;
use crate::settings::load;

/// A terminal softphone for contact-center agents, with CTI popups.
#[derive(Debug, Parser)]
#[command(name = "ctiphone", version, about)]
pub struct Cli {
    /// Configuration file (default: $XDG_CONFIG_HOME/ctiphone/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Without a subcommand: the terminal UI, attached to the phone's daemon (started in the
    /// background when none runs), so calls go on when the terminal goes away.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The terminal UI with the phone in its own process (no daemon): quitting it or losing
    /// the terminal ends the calls.
    #[arg(long)]
    pub no_daemon: bool,
    #[command(flatten)]
    pub audio: AudioArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration file: exit 0 with a summary, or 2 with each problem located.
    CheckConfig,
    /// CTI integration tools for admins.
    #[command(subcommand)]
    Cti(CtiCommand),
    /// The call history.
    #[command(subcommand)]
    History(HistoryCommand),
    /// The phonebook: names for numbers ({TELNAME}, {CALLEDNAME}).
    #[command(subcommand)]
    Phonebook(PhonebookCommand),
    /// Measure the phone against a peer (baresip) in the same run: without a subcommand,
    /// every figure in one table.
    Bench(BenchArgs),
    /// The terminal UI on a loopback world: a built-in caller rings with sample customers, a
    /// built-in CRM answers the searches. Nothing leaves 127.0.0.1.
    Demo {
        /// Where the demo writes its configuration, history and log (kept afterwards;
        /// default: a new temporary directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Seconds between the end of one call and the next ring.
        #[arg(long, value_name = "SECS", default_value_t = 5)]
        interval: u64,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff): `ctiphone man > ctiphone.1; man ./ctiphone.1`.
    Man {
        /// Write ctiphone.1 and a page per subcommand (ctiphone-demo.1, …) into DIR instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run the phone without a terminal UI: JSON-line commands on stdin, events on stdout.
    Headless {
        /// Answer every incoming call, after MS milliseconds (default 0).
        #[arg(long, value_name = "MS", num_args = 0..=1, default_missing_value = "0")]
        auto_answer: Option<u64>,
        /// Drive the running daemon instead of a phone of its own: its snapshot first, then
        /// its events; stdin's commands go to it. Ends when the daemon does.
        #[arg(long, conflicts_with = "auto_answer")]
        attach: bool,
    },
    /// Run the phone as a daemon: no terminal, front ends attach on
    /// $XDG_RUNTIME_DIR/ctiphone/ (the TUI, `ctiphone dial`, `headless --attach`).
    Daemon,
    /// Dial a number or SIP URI on the running phone.
    Dial { number: String },
    /// Answer the ringing call on the running phone.
    Answer,
    /// Hang up (or reject) the current call on the running phone.
    Hangup,
    /// The running phone's registration, agent status and calls (exit 3: none runs).
    Status {
        /// The daemon's snapshot as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Per-agent figures from the central log (`[history] central`): calls offered, answered
    /// and missed, outgoing calls, average handle and wrap-up time, CRM search failures.
    /// Exit 2 when PostgreSQL cannot be read.
    Report {
        #[command(flatten)]
        central: CentralArgs,
        /// Calls that rang since this local date (YYYY-MM-DD, or YYYY-MM-DDTHH:MM); default:
        /// today 00:00.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// One JSON object per agent per line instead of a table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV with a header instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// The central log's agents in a terminal table: live status, current call, today's
    /// counts; updated by PostgreSQL's notifications.
    Supervisor {
        #[command(flatten)]
        central: CentralArgs,
    },
    /// Dial a tel:, callto:, sip: or sips: link on the running phone (the desktop's handler
    /// for click-to-call links: contrib/ctiphone-open.desktop).
    Open { uri: String },
}

/// Where the central log is, for its readers (`report`, `supervisor`).
#[derive(Debug, Args)]
pub struct CentralArgs {
    /// The central log's URL, `postgresql://user@host/db` (default: `[history] central`).
    #[arg(long, value_name = "URL")]
    pub central: Option<String>,
    /// A command printing the password (default: `[history] central_password_command`).
    #[arg(long, value_name = "COMMAND")]
    pub password_command: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Calls, newest first.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Calls since this date or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM).
        #[arg(long)]
        since: Option<String>,
        /// Only calls with this result (answered, missed, rejected, busy, failed, cancelled,
        /// interrupted).
        #[arg(long, value_parser = call_result)]
        result: Option<CallResult>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Write every call as CSV (cells a spreadsheet would run as formulas are defused).
    Export {
        #[arg(long, value_name = "FILE")]
        csv: PathBuf,
    },
    /// The central log's delivery (`[history] central`): changes waiting in the outbox, the
    /// last delivery and the last error.
    Sync {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `ctiphone bench`: a subcommand, or with none, the combined run.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Calls to each peer for the signalling and CTI figures.
    #[arg(long, default_value_t = 50)]
    pub calls: usize,
    /// Milliseconds between the end of one signalling call and the next INVITE (back-to-back
    /// calls are measured as extra rows).
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub gap_ms: u64,
    /// Length of the media call in seconds.
    #[arg(long, default_value_t = 20)]
    pub secs: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Call audio through a bad network: a spoken reference streamed as PCMU (and Opus with
    /// FEC) into ctiphone and baresip at once with seeded loss and jitter; what each plays
    /// scored with PESQ (P.862 MOS-LQO); the playout delay at 0 jitter; CPU in the calls.
    Audio {
        /// Conditions LOSS/JITTER (percent/ms), `opus:LOSS/JITTER` for Opus with in-band
        /// FEC; repeat or separate with commas (default: 0/0, 3/40, 5/60, 10/100, opus:10/100).
        #[arg(long, value_name = "LOSS/JITTER", value_delimiter = ',')]
        conditions: Vec<String>,
        /// Seeds of the impairment (default: 1, 2, 3; 0/0 uses the first only).
        #[arg(long, value_name = "N", value_delimiter = ',')]
        seeds: Vec<u64>,
        /// A 3 s sentence instead of the 11.5 s reference (quick runs and tests).
        #[arg(long)]
        short: bool,
        /// Only ctiphone's receive path in-process and the reference receiver, on the same
        /// packets' timeline: no phones, no sockets, deterministic (tuning, quick looks).
        #[arg(long)]
        offline: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Terminal UI: ring -> popup drawn, CRM reply -> fields drawn, idle CPU and RSS in tmux.
    Ui {
        /// Calls to time through the drawing code.
        #[arg(long, default_value_t = 200)]
        calls: usize,
        /// Calls to time end to end in tmux (INVITE -> the CRM's values on the screen).
        #[arg(long, default_value_t = 40)]
        tmux_calls: usize,
        /// Milliseconds between those calls.
        #[arg(long, value_name = "MS", default_value_t = 50)]
        gap_ms: u64,
        /// Milliseconds the bench's CRM takes over each search before it answers.
        #[arg(long, value_name = "MS", default_value_t = 0)]
        crm_ms: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Media: CPU and RSS during a G.711 call with a file source and recording, and the RTP
    /// send-interval deviation; ctiphone vs baresip.
    Media {
        /// Length of each call in seconds.
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Three calls at once: ctiphone plain, ctiphone with SRTP and baresip with SRTP
        /// (SDES, AES_CM_128_HMAC_SHA1_80); CPU ratios SRTP / plain and ctiphone / baresip.
        #[arg(long)]
        srtp: bool,
        /// With --srtp: rounds of the three calls; each figure is the median of the rounds.
        #[arg(long, default_value_t = 3, requires = "srtp")]
        rounds: usize,
    },
    /// A contact center on this machine: a throwaway PostgreSQL (stopped for --outage
    /// seconds mid-run), Kamailio routing to an agent group, the demo CRM, N headless phones
    /// with central history, sipp calling at --cps. Prints per N: calls offered, rows in
    /// PostgreSQL, lost and duplicated rows, INVITE -> 180 p50/p99, CRM search p99, CPU and
    /// RSS per agent, outbox drain time. Exit 1 when a row was lost, duplicated or left at
    /// an earlier state.
    Fleet {
        /// Agents (phones) per run; repeat or separate with commas for several runs
        /// (default: 10, 25, 50 and 100).
        #[arg(long, value_name = "N", value_delimiter = ',')]
        agents: Vec<usize>,
        /// Calls per second (default: one per 10 agents, at least 1).
        #[arg(long, value_name = "R")]
        cps: Option<f64>,
        /// Seconds during which sipp places calls.
        #[arg(long, value_name = "S", default_value_t = 120)]
        secs: u64,
        /// Seconds PostgreSQL is down, in the middle of the calls (0: no outage).
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        outage: u64,
        /// Seconds from each answer to the agent's hangup.
        #[arg(long, value_name = "SECS", default_value_t = 3)]
        hold: u64,
        /// One JSON object per N instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Signalling: INVITE -> 100, -> 180 and -> 200 OK (auto-answer), median and p99, on
    /// ctiphone, baresip and the bench's minimal UAS (the floor), each phone above the floor;
    /// idle RSS.
    Sip {
        /// Calls to each peer.
        #[arg(long, default_value_t = 50)]
        calls: usize,
        /// Milliseconds between the end of one call and the next INVITE; with more than 0, as
        /// many calls back to back follow as extra rows.
        #[arg(long, value_name = "MS", default_value_t = 50)]
        gap_ms: u64,
        /// Take the figures from sipp instead of the bench's caller (the scenario
        /// tests/peers/sipp/bench_uac_rtd.xml; sipp's clock readings of each INVITE sent and
        /// each response read, its RTDs beside them); needs sipp and baresip.
        #[arg(long)]
        sipp: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CtiCommand {
    /// Print a template's expansion for a sample call (raw, secrets masked).
    Expand {
        /// The template, e.g. 'https://crm.example/search?tel={TEL}'.
        template: String,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Run the configured accesses of an event for real and print one JSON report.
    Fire {
        event: FireEvent,
        #[command(flatten)]
        call: CallArgs,
        /// The call was answered (for hangup's only_if_answered).
        #[arg(long)]
        answered: bool,
        /// The recording file (for the recorded event).
        #[arg(long, value_name = "FILE")]
        rec_path: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FireEvent {
    Ring,
    Answer,
    Hangup,
    Click,
    Outgoing,
    Recorded,
}

/// Audio files in place of the devices (headless use and tests).
#[derive(Debug, Args)]
pub struct AudioArgs {
    /// Play this WAV file as the microphone (it loops).
    #[arg(long, global = true, value_name = "FILE.wav")]
    pub audio_in: Option<PathBuf>,
    /// Write what the speaker would play to this WAV file.
    #[arg(long, global = true, value_name = "FILE.wav")]
    pub audio_out: Option<PathBuf>,
}

impl AudioArgs {
    /// Applies the files over the configured devices.
    pub fn apply(&self, config: &mut Config) {
        if let Some(p) = &self.audio_in {
            config.audio.input = format!("file:{}", p.display());
        }
        if let Some(p) = &self.audio_out {
            config.audio.output = format!("file:{}", p.display());
        }
    }
}

/// A sample call's parameters.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// {TEL}: the other party's number.
    #[arg(long, default_value = "")]
    pub tel: String,
    /// {TELNAME}
    #[arg(long, default_value = "")]
    pub telname: String,
    /// {CALLED}
    #[arg(long, default_value = "")]
    pub called: String,
    /// {CALLEDNAME}
    #[arg(long, default_value = "")]
    pub calledname: String,
    /// {ID}: the call id.
    #[arg(long, default_value = "cti-fire")]
    pub id: String,
}

impl CallArgs {
    fn params(&self, outgoing: bool) -> CallParams {
        let mut p = if outgoing {
            CallParams::outgoing(&self.id, &self.tel)
        } else {
            CallParams::incoming(&self.id, &self.tel, &self.called)
        };
        if outgoing && !self.called.is_empty() {
            p.called.clone_from(&self.called);
        }
        p.telname.clone_from(&self.telname);
        p.calledname.clone_from(&self.calledname);
        p
    }
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    // Everything the phone writes is the agent's alone (issue 17), down to files libraries
    // create. Not for `man --dir`: manual pages are for everyone (often installed by root).
    // The programs the phone starts get the agent's umask back (`private::AgentUmask`).
    if !matches!(cli.command, Some(Command::Man { dir: Some(_) })) {
        crate::private::restrict_umask();
    }
    let Some(command) = cli.command else {
        return if cli.no_daemon {
            tui(cli.config.as_ref(), &cli.audio)
        } else {
            attached_tui(cli.config.as_ref(), &cli.audio)
        };
    };
    let paths = || crate::daemon::Paths::for_config(cli.config.as_deref());
    let remote = |what| crate::daemon::remote::main(&paths(), what);
    match command {
        Command::CheckConfig => check_config(cli.config.as_ref()),
        Command::Cti(CtiCommand::Expand { template, call }) => expand(cli.config.as_ref(), &template, &call),
        Command::Cti(CtiCommand::Fire {
            event,
            call,
            answered,
            rec_path,
        }) => fire(cli.config.as_ref(), event, &call, answered, rec_path),
        Command::Headless { attach: true, .. } => crate::daemon::attach::headless(&paths()),
        Command::Headless { auto_answer, .. } => headless(cli.config.as_ref(), auto_answer, &cli.audio),
        Command::Daemon => daemon(cli.config.as_ref(), &cli.audio),
        Command::Dial { number } => remote(Remote::Dial(number)),
        Command::Answer => remote(Remote::Answer),
        Command::Hangup => remote(Remote::Hangup),
        Command::Status { json } => remote(Remote::Status { json }),
        Command::Open { uri } => remote(Remote::Open(uri)),
        Command::History(HistoryCommand::List {
            json,
            since,
            result,
            limit,
        }) => history_list(json, since.as_deref(), result, limit),
        Command::History(HistoryCommand::Export { csv }) => history_export(&csv),
        Command::History(HistoryCommand::Sync { json }) => history_sync(cli.config.as_ref(), json),
        Command::Report {
            central,
            since,
            json,
            csv,
        } => report(cli.config.as_ref(), &central, since.as_deref(), json, csv),
        Command::Supervisor { central } => supervisor(cli.config.as_ref(), &central),
        Command::Phonebook(cmd) => match load(cli.config.as_ref(), false) {
            Ok((config, _)) => crate::phonebook::cli::run(&config, cmd),
            Err(e) => config_failed(&e),
        },
        Command::Bench(b) => ExitCode::from(match b.command {
            Some(BenchCommand::Audio {
                conditions,
                seeds,
                short,
                offline,
                json,
            }) => bench_audio(&conditions, seeds, short, offline, json),
            Some(BenchCommand::Sip {
                calls,
                gap_ms,
                sipp,
                json,
            }) => crate::bench::sip(calls, gap_ms, sipp, json),
            Some(BenchCommand::Media {
                secs,
                json,
                srtp,
                rounds,
            }) => crate::bench::media(secs, json, srtp, rounds),
            Some(BenchCommand::Fleet {
                agents,
                cps,
                secs,
                outage,
                hold,
                json,
            }) => crate::bench::fleet(
                &agents,
                crate::bench::FleetOptions {
                    cps,
                    secs,
                    outage,
                    hold,
                },
                json,
            ),
            Some(BenchCommand::Ui {
                calls,
                tmux_calls,
                gap_ms,
                crm_ms,
                json,
            }) => crate::bench::ui(calls, tmux_calls, gap_ms, crm_ms, json),
            None => crate::bench::all(b.calls, b.gap_ms, b.secs, b.json),
        }),
        Command::Demo { dir, interval } => ExitCode::from(crate::demo::main(
            dir,
            std::time::Duration::from_secs(interval),
            &|c| cli.audio.apply(c),
        )),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "ctiphone", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let written = match &dir {
                Some(d) => std::fs::create_dir_all(d).and_then(|()| clap_mangen::generate_to(cmd, d)),
                None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ctiphone man: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            None
        }
    }
}

/// `ctiphone history sync`: exit 0 when nothing waits, 1 when changes wait, 2 on errors.
fn history_sync(config: Option<&PathBuf>, json: bool) -> ExitCode {
    let central = match load(config, false) {
        Ok((c, _)) => c.history.central,
        Err(e) => return config_failed(&e),
    };
    let state = match crate::central::shipper::sync_state(&crate::history::default_path()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ctiphone: history sync: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        let mut v = serde_json::to_value(&state).unwrap_or_default();
        v["central"] = serde_json::Value::Bool(!central.trim().is_empty());
        println!("{v}");
    } else {
        let esc = |s: &str| crate::ui::text::clean(s);
        if central.trim().is_empty() {
            println!("central log: not configured ([history] central)");
        }
        match (&state.oldest_queued, state.outbox) {
            (_, 0) => println!("outbox: empty"),
            (Some(t), n) => println!("outbox: {n} changes waiting, the oldest queued {}", esc(t)),
            (None, n) => println!("outbox: {n} changes waiting"),
        }
        println!(
            "last delivery: {}",
            state.last_delivery.as_deref().map_or("never".into(), esc)
        );
        if let Some(e) = &state.last_error {
            println!("last error: {}", esc(e));
        }
    }
    ExitCode::from(u8::from(state.outbox > 0))
}

/// The central log named by the flags, else by the configuration; its configuration too.
fn central_target(
    config: Option<&PathBuf>,
    args: &CentralArgs,
) -> Result<(Config, crate::central::target::Target), ExitCode> {
    let config = match load(config, false) {
        Ok((c, _)) => c,
        Err(e) => return Err(config_failed(&e)),
    };
    let url = args.central.as_deref().unwrap_or(&config.history.central);
    if url.trim().is_empty() {
        eprintln!(
            "ctiphone: no central log: give --central postgresql://user@host/db or set `[history] central`"
        );
        return Err(ExitCode::from(2));
    }
    let password = args
        .password_command
        .as_deref()
        .unwrap_or(&config.history.central_password_command);
    match crate::central::target::parse(url, password) {
        Ok(t) => Ok((config, t)),
        Err(e) => {
            eprintln!("ctiphone: --central: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// `ctiphone report`: exit 0 with the figures, 2 when the date, the URL or PostgreSQL fails.
fn report(
    config: Option<&PathBuf>,
    args: &CentralArgs,
    since: Option<&str>,
    json: bool,
    csv: bool,
) -> ExitCode {
    use crate::central::report;
    let since = match report::parse_since(since, chrono::Local::now()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ctiphone report: {e}");
            return ExitCode::from(2);
        }
    };
    let target = match central_target(config, args) {
        Ok((_, t)) => t,
        Err(code) => return code,
    };
    let Some(rt) = runtime() else {
        return ExitCode::from(2);
    };
    let rows = rt.block_on(async {
        let client = target.connect().await?;
        report::fetch(&client, &since).await
    });
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "ctiphone report: {}: {}",
                crate::ui::text::clean(&target.shown),
                crate::ui::text::clean(&e)
            );
            return ExitCode::from(2);
        }
    };
    let out = if json {
        Ok(report::json_lines(&rows))
    } else if csv {
        report::csv(&rows)
    } else {
        Ok(report::table(&rows))
    };
    match out {
        Ok(text) => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ctiphone report: {e}");
            ExitCode::from(2)
        }
    }
}

/// `ctiphone supervisor`: the agents' table until q.
fn supervisor(config: Option<&PathBuf>, args: &CentralArgs) -> ExitCode {
    let (config, target) = match central_target(config, args) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let (cat, theme) = match crate::ui::look_of(&config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ctiphone: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init_file();
    let Some(rt) = current_thread_runtime() else {
        return ExitCode::from(2);
    };
    let look = crate::ui::view::Look {
        theme: &theme,
        cat: &cat,
    };
    let code = rt.block_on(crate::central::supervisor::run(target, &look));
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}

fn history_export(file: &std::path::Path) -> ExitCode {
    let path = crate::history::default_path();
    let exported = crate::history::History::open(&path).and_then(|h| {
        let f = crate::private::create_file(file, false).map_err(|e| format!("{}: {e}", file.display()))?;
        h.export_csv(std::io::BufWriter::new(f))
    });
    match exported {
        Ok(n) => {
            println!("{n} calls written to {}", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ctiphone: history export: {e}");
            ExitCode::from(2)
        }
    }
}

/// A call result by its name, for `--result`.
fn call_result(name: &str) -> Result<CallResult, String> {
    CallResult::from_name(name).ok_or_else(|| {
        let names: Vec<_> = CallResult::ALL.iter().map(|r| r.name()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

fn history_list(json: bool, since: Option<&str>, result: Option<CallResult>, limit: usize) -> ExitCode {
    let path = crate::history::default_path();
    let listed = crate::history::History::open(&path).and_then(|h| {
        h.recover(&crate::history::lock_path())?;
        h.list(since, result, limit)
    });
    let rows = match listed {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ctiphone: history {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    for r in rows {
        if json {
            match serde_json::to_string(&r) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("ctiphone: {e}"),
            }
        } else {
            // Caller-controlled text is escaped: no control byte reaches the terminal.
            let esc = |s: &str| s.escape_debug().to_string();
            println!(
                "{}  {:3}  {:11}  {:>6}  {}  {}  {}",
                r.ring_at.get(..19).unwrap_or(&r.ring_at),
                r.direction,
                r.result.map_or("-", CallResult::name),
                r.duration_s.map_or("-".to_owned(), |d| format!("{d:.0}s")),
                esc(&r.tel),
                esc(&r.telname),
                esc(&r.company),
            );
        }
    }
    ExitCode::SUCCESS
}

fn tui(path: Option<&PathBuf>, audio: &AudioArgs) -> ExitCode {
    let (mut config, plan) = match load(path, false) {
        Ok(v) => v,
        Err(e) => return config_failed(&e),
    };
    audio.apply(&mut config);
    logging::init_file();
    let _relay = sound_server(&config.audio.pulse_server);
    // Two threads: the UI (this one) and the core (one worker), so a frame being drawn never
    // delays the SIP stack or the CTI engine.
    let runtimes = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|ui| crate::ui::core_runtime().map(|core| (ui, core)));
    let (rt, core_rt) = match runtimes {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = rt.block_on(crate::ui::run(
        config,
        crate::ui::Backend::Local(plan, core_rt.handle().clone()),
    ));
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    core_rt.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}

/// `ctiphone daemon`: the phone with no terminal, serving front ends on its socket.
fn daemon(path: Option<&PathBuf>, audio: &AudioArgs) -> ExitCode {
    let (mut config, plan) = match load(path, false) {
        Ok(v) => v,
        Err(e) => return config_failed(&e),
    };
    audio.apply(&mut config);
    let paths = crate::daemon::Paths::for_config(path.map(PathBuf::as_path));
    let warnings = match paths.prepare() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("ctiphone daemon: {e}");
            return ExitCode::from(2);
        }
    };
    let lock = match crate::daemon::PidLock::take(&paths.pid) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ctiphone daemon: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init_file();
    for w in warnings {
        eprintln!("ctiphone daemon: warning: {w}");
        tracing::warn!("{w}");
    }
    let _relay = sound_server(&config.audio.pulse_server);
    let Some(rt) = current_thread_runtime() else {
        return ExitCode::from(2);
    };
    let code = rt.block_on(crate::daemon::run(config, plan, paths, lock));
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}

/// `ctiphone`: the terminal UI attached to the daemon, which is started first when none runs.
fn attached_tui(path: Option<&PathBuf>, audio: &AudioArgs) -> ExitCode {
    let (config, plan) = match load(path, false) {
        Ok(v) => v,
        Err(e) => return config_failed(&e),
    };
    drop(plan);
    let paths = crate::daemon::Paths::for_config(path.map(PathBuf::as_path));
    logging::init_file();
    let Some(rt) = current_thread_runtime() else {
        return ExitCode::from(2);
    };
    let code = rt.block_on(async {
        let (snapshot, conn) = match crate::daemon::attach::connect_or_start(&paths, path, audio).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ctiphone: {e}");
                return 2;
            }
        };
        crate::ui::run(config, crate::ui::Backend::Attached(Box::new((snapshot, conn)))).await
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}

fn headless(path: Option<&PathBuf>, auto_answer: Option<u64>, audio: &AudioArgs) -> ExitCode {
    logging::init_stderr();
    let (mut config, plan) = match load(path, false) {
        Ok(v) => v,
        Err(e) => return config_failed(&e),
    };
    audio.apply(&mut config);
    let _relay = sound_server(&config.audio.pulse_server);
    // One thread: the user agent is one task, each call's media another, and everything else
    // waits on I/O. Fewer threads, fewer wake-ups: CPU per call is a benchmark figure.
    let Some(rt) = current_thread_runtime() else {
        return ExitCode::from(2);
    };
    let code = rt.block_on(crate::headless::run(
        config,
        plan,
        auto_answer.map(std::time::Duration::from_millis),
    ));
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}

/// Points the sound devices at `configured` (`[audio] pulse_server`, else `PULSE_SERVER`);
/// the relay to a TCP server lives as long as the value returned. Runs before any runtime or
/// other thread exists. A relay that cannot start is said on stderr and in the log.
pub fn sound_server(configured: &str) -> Option<crate::media::pulse_server::Relay> {
    // SAFETY: called from `tui` / `headless` / `daemon` / `demo` before any runtime (or other
    // thread) exists.
    match unsafe { crate::media::pulse_server::apply(configured) } {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("ctiphone: warning: {e}");
            tracing::warn!("{e}");
            None
        }
    }
}

/// A single-threaded runtime for a command; `None` (said on stderr) when it cannot start.
fn current_thread_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            None
        }
    }
}

/// `ctiphone bench audio`: the conditions parsed, then the bench.
fn bench_audio(conditions: &[String], seeds: Vec<u64>, short: bool, offline: bool, json: bool) -> u8 {
    use crate::bench::audio;
    let parsed: Result<Vec<_>, String> = conditions.iter().map(|c| audio::Condition::parse(c)).collect();
    match parsed {
        Ok(conditions) => audio::audio(&audio::Options {
            conditions,
            seeds,
            short,
            offline,
            json,
        }),
        Err(e) => {
            eprintln!("ctiphone bench audio: {e}");
            2
        }
    }
}

fn config_failed(e: &ConfigError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(2)
}

fn check_config(path: Option<&PathBuf>) -> ExitCode {
    let (config, plan) = match load(path, true) {
        Ok(v) => v,
        Err(e) => return config_failed(&e),
    };
    let checked = config.cti.numbers.iter().filter(|n| n.enabled).count();
    let accesses: Vec<String> = plan
        .accesses
        .values()
        .map(|a| format!("{}={}", a.name, a.method.name()))
        .collect();
    println!(
        "{}: ok: target {}, {} of {} target numbers checked, accesses: {}",
        config.source.name(),
        if config.cti.target == config::Target::Custom {
            "custom"
        } else {
            "none"
        },
        checked,
        config.cti.numbers.len(),
        if accesses.is_empty() {
            "none".to_owned()
        } else {
            accesses.join(" ")
        }
    );
    ExitCode::SUCCESS
}

fn expand(path: Option<&PathBuf>, source: &str, call: &CallArgs) -> ExitCode {
    let (config, plan) = match load(path, false) {
        Ok(v) => v,
        Err(e) => return config_failed(&e),
    };
    let known =
        |n: &str| BUILTIN_PARAMS.contains(&n) || plan.auth_vars.contains(n) || plan.search_vars.contains(n);
    let t = match Template::parse(source, &known) {
        Ok(t) => t,
        Err(errs) => {
            for e in errs {
                eprintln!("template:{}: {}", e.offset + 1, e.message);
            }
            return ExitCode::from(2);
        }
    };
    let mut vars = Vars::new(
        &Identity::from_config(&config),
        &call.params(false),
        chrono::Local::now().naive_local(),
    );
    for v in &plan.auth_vars {
        vars.set(v, "", true);
    }
    println!("{}", template::raw(&t.pieces(&vars), true));
    ExitCode::SUCCESS
}

fn fire(
    path: Option<&PathBuf>,
    event: FireEvent,
    call: &CallArgs,
    answered: bool,
    rec_path: Option<PathBuf>,
) -> ExitCode {
    let (config, plan) = match load(path, false) {
        Ok(v) => v,
        Err(e) => return config_failed(&e),
    };
    let Some(runtime) = runtime() else {
        return ExitCode::from(2);
    };
    runtime.block_on(async {
        let engine = Engine::new(&config, plan, Options::default());
        let params = call.params(matches!(event, FireEvent::Outgoing));
        let ev = match event {
            FireEvent::Ring => CallEvent::ring(params),
            FireEvent::Answer => CallEvent::answer(params),
            FireEvent::Hangup => CallEvent::hangup(params, answered),
            FireEvent::Click => CallEvent::click(params),
            FireEvent::Outgoing => CallEvent::outgoing(params),
            FireEvent::Recorded => CallEvent::recorded(params, rec_path.unwrap_or_default()),
        };
        let report = match engine.dispatch(ev).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("the CTI engine failed: {e}");
                return ExitCode::from(2);
            }
        };
        match serde_json::to_string(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot print the report: {e}"),
        }
        engine.shutdown().await;
        if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    })
}
