//! `ctiphone demo`: the real terminal UI wired to an embedded loopback world, nothing leaving
//! 127.0.0.1. A caller of our own SIP stack ([`caller`]) rings the phone every few seconds as
//! sample customers; a small CRM over HTTP ([`crm`]) is what the phone's real CTI engine logs
//! in to and searches, and what the popup's link opens. The configuration is written to a
//! directory and printed before the terminal UI starts ([`world`]), so it can serve as a
//! template; the demo's history and log stay in that directory (`XDG_DATA_HOME` points there).

pub mod caller;
pub mod crm;
pub mod world;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;

/// Runs the demo: `dir` holds its files (default: a new directory under the system's temporary
/// directory, kept afterwards); the caller rings again `interval` after each call. `adjust`
/// applies command-line overrides (audio files) to the phone's configuration. Returns the
/// exit code.
pub fn main(dir: Option<PathBuf>, interval: Duration, adjust: &dyn Fn(&mut Config)) -> u8 {
    let dir = match dir {
        Some(d) => d,
        None => match tempfile::Builder::new().prefix("ctiphone-demo-").tempdir() {
            Ok(t) => t.keep(),
            Err(e) => {
                eprintln!("ctiphone demo: cannot create a temporary directory: {e}");
                return 2;
            }
        },
    };
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    // A TCP `PULSE_SERVER` (the agent's PC over `ssh -R`) is reached through the relay.
    let _relay = crate::cli::sound_server("");
    let data = dir.join("data");
    if let Err(e) = crate::private::create_dir(&data) {
        eprintln!("ctiphone demo: {}: {e}", data.display());
        return 2;
    }
    // The history, the log and recordings go into the demo's directory.
    // SAFETY: no other thread runs yet; the runtime starts below.
    unsafe { std::env::set_var("XDG_DATA_HOME", &data) };
    let port = match world::free_port() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ctiphone demo: {e}");
            return 2;
        }
    };
    let phone = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let runtimes = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|ui| crate::ui::core_runtime().map(|core| (ui, core)));
    let (rt, core_rt) = match runtimes {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return 2;
        }
    };
    let code = rt.block_on(async {
        let world = match world::World::start(&dir, phone, interval).await {
            Ok(w) => w,
            Err(e) => {
                eprintln!("ctiphone demo: {e}");
                return 2;
            }
        };
        let (mut config, plan) = match crate::settings::load(Some(&world.config_path), true) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("ctiphone demo: the demo's configuration is invalid:\n{e}");
                world.stop().await;
                return 2;
            }
        };
        adjust(&mut config);
        println!(
            "ctiphone demo: a caller rings sip:{}@{phone} every few seconds as sample customers; \
             the demo CRM is {}.\nKeys: a answer, x hang up, Enter open the CRM link, s settings, \
             ? help, q quit.\nThe configuration, {}:\n\n{}",
            world::CALLED,
            world.crm.url(),
            world.config_path.display(),
            world.config_text
        );
        crate::logging::init_file();
        let code = crate::ui::run(config, crate::ui::Backend::Local(plan, core_rt.handle().clone())).await;
        world.stop().await;
        code
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    core_rt.shutdown_timeout(Duration::from_millis(200));
    println!(
        "ctiphone demo: its files stay in {d} (the history in data/ctiphone/). Start your own \
         configuration from {d}/config.toml; check it with `ctiphone check-config --config FILE`.",
        d = dir.display()
    );
    code
}
