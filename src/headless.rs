//! The headless front end: JSON lines, commands on stdin, events on stdout, logs on stderr.
//! It drives the same core as the terminal UI: the SIP user agent, the CTI engine on the
//! call-event bus.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::app::{Bus, Command, Event, PhoneEvent};
use crate::config::Config;
use crate::cti::Plan;

/// Runs until `quit`, SIGTERM or SIGINT. Returns the exit code.
pub async fn run(config: Config, plan: Plan, auto_answer: Option<Duration>) -> u8 {
    let bus = Bus::new();
    let mut events = bus.subscribe_as("headless");
    let mut core = match crate::app::core::Core::start(&bus, &config, plan, auto_answer).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ctiphone: {e}");
            return 2;
        }
    };
    let cmd_tx = core.commands.clone();

    // stdin: one command per line; a bad line is an `error` event and the phone goes on.
    let stdin_bus = bus.clone();
    let stdin_tx = cmd_tx.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match crate::app::protocol::parse_command(line) {
                Ok(cmd) => {
                    if stdin_tx.send(cmd).await.is_err() {
                        break;
                    }
                }
                Err(message) => stdin_bus.publish(Event::Phone(PhoneEvent::Error { message })),
            }
        }
    });
    // Signals: quit as the command would.
    let sig_tx = cmd_tx.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = sig_tx.send(Command::Quit).await;
    });

    // stdout: every event as one JSON line.
    let printer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(ev) = events.recv().await {
            let Some(mut line) = crate::app::protocol::to_line(&ev) else {
                continue;
            };
            line.push('\n');
            if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                break;
            }
        }
    });
    let result = (&mut core.ua).await;
    // Let the last events reach stdout.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(bus);
    printer.abort();
    core.finish().await;
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("ctiphone: {e}");
            2
        }
        Err(e) => {
            eprintln!("ctiphone: the user agent failed: {e}");
            2
        }
    }
}
