//! The simulated contact center's processes for `ctiphone bench fleet`: Kamailio with the
//! agent group (rendered from `tests/peers/kamailio_fleet.cfg.in`), each agent's phone (its
//! configuration, HOME and event lines), the ports they listen on, and the cleanup of each.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bench::which;

const KAMAILIO_CFG: &str = include_str!("../../../tests/peers/kamailio_fleet.cfg.in");

/// A child process killed (with its process group, for Kamailio's workers) when dropped.
pub(super) struct Proc {
    pub(super) child: Child,
    pub(super) group: bool,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: kill(2) on the process group this bench created for the child.
                unsafe { libc::kill(-pid, libc::SIGTERM) };
                let end = Instant::now() + Duration::from_secs(3);
                while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                // SAFETY: as above.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// One agent's phone.
pub(super) struct Agent {
    pub(super) id: String,
    pub(super) proc: Proc,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) home: PathBuf,
}

impl Agent {
    pub(super) fn send(&mut self, cmd: &Value) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = s.write_all(format!("{cmd}\n").as_bytes());
        }
    }

    pub(super) fn db(&self) -> PathBuf {
        self.home.join("xdg-data/ctiphone/history.sqlite3")
    }

    pub(super) fn stderr_tail(&self) -> String {
        let s = std::fs::read_to_string(self.home.join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

/// A UDP port of 127.0.0.1 held by the bench until a phone takes it: the socket is dropped
/// just before the phone starts. The port is below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`), so no socket bound to port 0 meanwhile — another phone's,
/// PostgreSQL's, a test's — can take it between the drop and the phone's bind (at 100 agents
/// one did).
pub(super) fn reserve_port() -> Result<(u16, UdpSocket), String> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (10_000u16, low.max(10_100));
    for _ in 0..500 {
        let p = rand::random_range(from..to);
        if let Ok(s) = UdpSocket::bind(("127.0.0.1", p)) {
            return Ok((p, s));
        }
    }
    Err(format!("no free UDP port of 127.0.0.1 in {from}..{to}"))
}

/// A port of 127.0.0.1 free for UDP, not in `taken`, below the ephemeral range (as
/// [`reserve_port`]), for Kamailio and sipp.
pub(super) fn fresh_port(taken: &mut HashSet<u16>) -> Result<u16, String> {
    for _ in 0..50 {
        let (p, _) = reserve_port()?;
        if taken.insert(p) {
            return Ok(p);
        }
    }
    Err("no free UDP port".into())
}

pub(super) fn kamailio_bin() -> Result<PathBuf, String> {
    which("kamailio")
        .or_else(|| {
            let p = PathBuf::from("/usr/sbin/kamailio");
            p.is_file().then_some(p)
        })
        .ok_or_else(|| "kamailio is not installed (apt-get install -y kamailio)".into())
}

/// Starts Kamailio on `port` with the dispatcher list of the agents and waits until it
/// answers a request.
pub(super) fn start_kamailio(dir: &Path, port: u16, list: &str) -> Result<Proc, String> {
    let bin = kamailio_bin()?;
    let dispatcher = Path::new("/usr/lib/x86_64-linux-gnu/kamailio/modules/dispatcher.so");
    if !dispatcher.exists() {
        return Err(format!(
            "{} is missing (apt-get install -y kamailio)",
            dispatcher.display()
        ));
    }
    let list_path = dir.join("dispatcher.list");
    std::fs::write(&list_path, list).map_err(|e| format!("{}: {e}", list_path.display()))?;
    let cfg = KAMAILIO_CFG
        .replace("@PORT@", &port.to_string())
        .replace("@LIST@", &list_path.display().to_string());
    let cfg_path = dir.join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
    let log_path = dir.join("kamailio.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("-f")
        .arg(&cfg_path)
        .args(["-DD", "-E", "-P"])
        .arg(dir.join("kamailio.pid"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start kamailio: {e}"))?;
    let mut proc = Proc { child, group: true };
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let me = sock.local_addr().map_err(|e| e.to_string())?.port();
    let end = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while Instant::now() < end {
        if let Ok(Some(st)) = proc.child.try_wait() {
            return Err(format!(
                "kamailio exited at start ({st}): {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ));
        }
        n += 1;
        let probe = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-fleet{n}\r\n\
             From: <sip:probe@127.0.0.1:{me}>;tag=p{n}\r\nTo: <sip:127.0.0.1:{port}>\r\n\
             Call-ID: fleet-probe-{me}-{n}\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(probe.as_bytes(), ("127.0.0.1", port));
        let mut buf = [0u8; 2048];
        if let Ok((len, _)) = sock.recv_from(&mut buf)
            && buf[..len].starts_with(b"SIP/2.0 ")
        {
            return Ok(proc);
        }
    }
    Err(format!(
        "kamailio on 127.0.0.1:{port} did not answer within 10 s: {}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    ))
}

/// The configuration of agent `id` listening on `port`, registered at Kamailio's `kport`.
pub(super) fn agent_config(id: &str, port: u16, kport: u16, central: &str, crm_url: &str) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    format!(
        "[account]\nuri = {uri}\nusername = {user}\npassword = \"fleet\"\nregistrar = \"127.0.0.1:{kport}\"\n\
         transport = \"udp\"\nlisten = \"127.0.0.1:{port}\"\nexpires = 600\ndisplay_name = {user}\n\
         call_waiting = false\n\n[audio]\ninput = \"null\"\noutput = \"null\"\n\n\
         [history]\ncentral = {central}\nagent_id = {user}\n\n{cti}\n\
         # The contact center's CRM hears of each ring and hangup.\n\
         [cti.ring]\nmethod = \"post\"\n\
         template = \"{{SVADDR}}api/calls?event=ring&id={{ID}}&tel={{TEL}}&agent={{AID}}&token={{TOKEN}}\"\n\n\
         [cti.hangup]\nmethod = \"post\"\n\
         template = \"{{SVADDR}}api/calls?event=hangup&id={{ID}}&result={{RESULT}}&duration={{DURATION}}&token={{TOKEN}}\"\n",
        uri = q(&format!("sip:{id}@127.0.0.1:{kport}")),
        user = q(id),
        central = q(central),
        cti = crate::demo::world::cti_config(crm_url),
    )
}

/// An event line of agent `.0`, read at `.1`.
pub(super) type Line = (usize, Instant, String);

/// Starts agent `i` (`id`): its HOME under `dir`, its stdout's lines into `tx`.
pub(super) fn start_agent(
    dir: &Path,
    i: usize,
    id: String,
    config: &str,
    tx: Sender<Line>,
) -> Result<Agent, String> {
    let home = dir.join(&id);
    std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
    let cfg = home.join("config.toml");
    std::fs::write(&cfg, config).map_err(|e| format!("{}: {e}", cfg.display()))?;
    let stderr = std::fs::File::create(home.join("stderr.log")).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .arg("--config")
        .arg(&cfg)
        .args(["headless", "--auto-answer", "1000"])
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .env("XDG_RUNTIME_DIR", home.join("xdg-runtime"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start ctiphone headless: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stdin = child.stdin.take();
    std::thread::Builder::new()
        .name(format!("fleet-{i}"))
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((i, Instant::now(), line)).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(Agent {
        id,
        proc: Proc { child, group: false },
        stdin,
        home,
    })
}
