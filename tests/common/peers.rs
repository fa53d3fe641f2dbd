//! Real SIP peers on 127.0.0.1 for the SIP integration tests: Kamailio (registrar/proxy with
//! digest auth), SIPp (scripted UAC/UAS scenarios), baresip (a real softphone), coturn (a
//! STUN server), and the `ctiphone headless` process under test.
//!
//! Every helper FAILS LOUDLY: a missing peer binary, a peer that does not come up, or a phone
//! that does not say what a test waits for panics with a message naming what was expected and
//! what was seen. Nothing is ever skipped. Each instance takes its own free loopback ports and
//! its own temporary directory, so tests run in parallel.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The project's peer files: `tests/peers`.
pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// The `ctiphone` binary the tests run: `$CTIPHONE_TEST_BIN` when set (a copy of this
/// worktree's build: with a target directory shared between worktrees, another one's build can
/// replace `target/debug/ctiphone` while the tests run), else Cargo's `CARGO_BIN_EXE_ctiphone`.
pub fn ctiphone_bin() -> PathBuf {
    std::env::var_os("CTIPHONE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ctiphone")))
}

/// The path of a peer program, or a panic naming the Debian package that provides it.
pub fn peer_bin(name: &str) -> PathBuf {
    let package = match name {
        "sipp" => "sip-tester",
        "kamailio" => "kamailio",
        "baresip" => "baresip-core",
        "sox" => "sox",
        "ip" => "iproute2",
        "nft" => "nftables",
        "turnserver" => "coturn",
        other => other,
    };
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in [
        "/usr/sbin",
        "/sbin",
        "/usr/bin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ] {
        dirs.push(PathBuf::from(extra));
    }
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "SIP peer `{name}` is not installed (not found in PATH, /usr/sbin or /sbin). \
         These tests need real peers: `apt-get install -y {package}` (tests/run.sh installs \
         sip-tester kamailio baresip-core sox)"
    );
}

// ---------------------------------------------------------------------------------------------
// Ports

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Picks a port the kernel says is free, never the same one twice in this test process.
fn pick(mut probe: impl FnMut() -> Option<u16>, also_free: impl Fn(u16) -> bool) -> u16 {
    for _ in 0..500 {
        let Some(port) = probe() else { continue };
        if !(1024..=65000).contains(&port) {
            continue;
        }
        let mut set = handed_out().lock().unwrap();
        if set.contains(&port) || !also_free(port) {
            continue;
        }
        set.insert(port);
        return port;
    }
    panic!("could not find a free loopback port after 500 tries");
}

fn udp_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

fn tcp_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A free UDP port on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    pick(
        || Some(UdpSocket::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port()),
        |_| true,
    )
}

/// A free TCP port on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    pick(
        || Some(TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port()),
        |_| true,
    )
}

/// A port free for both UDP and TCP on 127.0.0.1 (a SIP server listening on both).
pub fn free_port_both() -> u16 {
    pick(
        || Some(TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port()),
        udp_free,
    )
}

/// An even UDP port P with P+1, P+2 and P+3 free as well (RTP/RTCP pairs; SIPp binds its
/// media port and media port + 2).
pub fn free_udp_media_port() -> u16 {
    let port = pick(
        || {
            let p = UdpSocket::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
            Some(p & !1)
        },
        |p| (0..4).all(|i| udp_free(p + i)),
    );
    let mut set = handed_out().lock().unwrap();
    for i in 1..4 {
        set.insert(port + i);
    }
    port
}

/// Whether something listens on 127.0.0.1:`port` (`tcp` in LISTEN state, or a bound `udp`
/// socket), read from /proc/net without touching the port.
pub fn is_bound(proto: &str, port: u16) -> bool {
    let file = match proto {
        "udp" => "/proc/net/udp",
        "tcp" => "/proc/net/tcp",
        other => panic!("is_bound: unknown protocol {other}"),
    };
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let want = format!(":{port:04X}");
    text.lines().skip(1).any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.len() > 3
            && cols[1].ends_with(&want)
            // 127.x.y.z (any loopback address) or 0.0.0.0, in /proc's little-endian hex.
            && (cols[1].get(6..9) == Some("7F:") || cols[1].starts_with("00000000:"))
            && (proto == "udp" || cols[3] == "0A")
    })
}

/// Waits until `is_bound(proto, port)`; panics with `what` after `timeout`.
pub fn wait_bound(proto: &str, port: u16, timeout: Duration, what: &str) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if is_bound(proto, port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what}: nothing bound {proto} 127.0.0.1:{port} after {timeout:?}");
}

// ---------------------------------------------------------------------------------------------
// Process helpers

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// SIGTERM, up to `grace` to exit, then SIGKILL to the whole process group (the child was
/// started as a group leader, so its forked workers go too).
fn terminate(child: &mut Child, grace: Duration) {
    let pid = child.id() as libc::pid_t;
    if child.try_wait().ok().flatten().is_some() {
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        return;
    }
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if child.try_wait().ok().flatten().is_some() {
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.kill();
    let _ = child.wait();
}

/// A UDP socket bound to `bind` inside the network namespace `ns` (`ip netns add`): made on
/// a thread that entered the namespace (a socket stays in the namespace it was made in).
pub fn udp_socket_in_netns(ns: &str, bind: std::net::SocketAddr) -> UdpSocket {
    let path = Path::new("/var/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            use std::os::fd::AsRawFd;
            // SAFETY: setns on this short-lived thread only, with a namespace file we opened.
            let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind {bind} in {ns}: {e}"))
        })
        .join()
        .expect("netns thread")
    })
}

fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("@{k}@"), v);
    }
    assert!(
        !out.contains("@PORT@") && !out.contains("@CTL@") && !out.contains("@DIR@"),
        "template placeholder left unrendered"
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Kamailio

/// A Kamailio registrar/proxy on 127.0.0.1:`port` (UDP and TCP), users 1001–1003 with password
/// `pw<user>`, rendered from `tests/peers/kamailio.cfg.in`. Killed on drop.
pub struct Kamailio {
    pub port: u16,
    /// Its TLS port (0 unless started with [`Kamailio::start_tls`]).
    pub tls_port: u16,
    /// Its address: 127.0.0.1, or ::1 ([`Kamailio::start_v6`]).
    host: std::net::IpAddr,
    dir: tempfile::TempDir,
    cfg: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    runs: usize,
    /// The network namespace it runs in ([`Kamailio::start_in_netns`]); None: the test's.
    netns: Option<String>,
}

impl Kamailio {
    /// Starts it on a free port. The port is free when picked, but anything else on the machine
    /// (another test's phone, a baresip's RTP) may bind it before Kamailio does: then it is
    /// started again on another port.
    pub fn start() -> Self {
        Self::start_from("kamailio.cfg.in")
    }

    /// As [`Kamailio::start`], also the presence server of the busy-lamp tests
    /// (`tests/peers/kamailio_presence.cfg.in`: presence, presence_dialoginfo, dialog,
    /// pua_dialoginfo; Debian package `kamailio-presence-modules`).
    pub fn start_presence() -> Self {
        let modules = Path::new("/usr/lib/x86_64-linux-gnu/kamailio/modules/presence.so");
        assert!(
            modules.exists(),
            "Kamailio's presence modules are not installed: apt-get install -y kamailio-presence-modules (tests/run.sh installs it)"
        );
        Self::start_from("kamailio_presence.cfg.in")
    }

    /// As [`Kamailio::start`], also listening for TLS (`tests/peers/kamailio_tls.cfg.in`; Debian
    /// package `kamailio-tls-modules`) with this certificate and key (PEM files) and
    /// `method` as Kamailio's `tls.cfg` writes it (`TLSv1.2+`, `TLSv1.2`, `TLSv1.1`; Kamailio
    /// 5.6 has no `TLSv1.3`: it refuses to start on it).
    pub fn start_tls(cert: &Path, key: &Path, method: &str) -> Self {
        Self::start_tls_with(cert, key, method, "")
    }

    /// [`Kamailio::start_tls`] with more lines for its server in `tls.cfg` (`cipher_list = …`).
    pub fn start_tls_with(cert: &Path, key: &Path, method: &str, server_extra: &str) -> Self {
        Self::start_tls_on(
            std::net::Ipv4Addr::LOCALHOST.into(),
            cert,
            key,
            method,
            server_extra,
        )
    }

    /// [`Kamailio::start_tls`] on the IPv6 loopback [::1] only (UDP, TCP and TLS).
    pub fn start_tls_v6(cert: &Path, key: &Path) -> Self {
        Self::start_tls_on(std::net::Ipv6Addr::LOCALHOST.into(), cert, key, "TLSv1.2+", "")
    }

    fn start_tls_on(
        host: std::net::IpAddr,
        cert: &Path,
        key: &Path,
        method: &str,
        server_extra: &str,
    ) -> Self {
        let module = Path::new("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so");
        assert!(
            module.exists(),
            "Kamailio's TLS module is not installed: apt-get install -y kamailio-tls-modules (tests/run.sh installs it)"
        );
        let tls_cfg = format!(
            "[server:default]\nmethod = {method}\nverify_certificate = no\nrequire_certificate = no\n\
             private_key = {}\ncertificate = {}\n{server_extra}\n[client:default]\nmethod = {method}\n\
             verify_certificate = no\nrequire_certificate = no\n",
            key.display(),
            cert.display()
        );
        for _ in 0..5 {
            let tls_port = free_tcp_port();
            let mut vars = vec![("TLSPORT", tls_port.to_string())];
            if host.is_ipv6() {
                vars.push(("HOST", format!("[{host}]")));
            }
            let mut k = Self::prepare_with(free_port_both(), "kamailio_tls.cfg.in", &vars, Some(&tls_cfg));
            k.tls_port = tls_port;
            k.host = host;
            match k.try_spawn() {
                Ok(()) if host.is_ipv6() => {
                    // /proc/net/tcp6 aside: it takes connections on [::1] when it listens.
                    let end = Instant::now() + Duration::from_secs(5);
                    let to = std::net::SocketAddr::new(host, tls_port);
                    while std::net::TcpStream::connect(to).is_err() {
                        assert!(
                            Instant::now() < end,
                            "kamailio: nothing listens on {to} after 5 s"
                        );
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    return k;
                }
                Ok(()) => {
                    wait_bound("tcp", tls_port, Duration::from_secs(5), "kamailio's TLS port");
                    return k;
                }
                Err(e) if e.contains("Address already in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("kamailio: five free ports in a row were taken before it could bind them");
    }

    /// As [`Kamailio::start`], on the IPv6 loopback [::1] only (`tests/peers/kamailio_v6.cfg.in`).
    pub fn start_v6() -> Self {
        for _ in 0..5 {
            let mut k = Self::prepare(free_port_both(), "kamailio_v6.cfg.in");
            k.host = std::net::Ipv6Addr::LOCALHOST.into();
            match k.try_spawn() {
                Ok(()) => return k,
                Err(e) if e.contains("Address already in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("kamailio: five free ports in a row were taken before it could bind them");
    }

    /// As [`Kamailio::start`] from another template of tests/peers (its `@PORT@` and `@CTL@`).
    pub fn start_template(template: &str) -> Self {
        Self::start_from(template)
    }

    fn start_from(template: &str) -> Self {
        for _ in 0..5 {
            let mut k = Self::prepare(free_port_both(), template);
            match k.try_spawn() {
                Ok(()) => return k,
                Err(e) if e.contains("Address already in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("kamailio: five free ports in a row were taken before it could bind them");
    }

    /// As [`Kamailio::start`], inside the network namespace `ns` (made by the test) on
    /// `ip`:5060 instead of 127.0.0.1 (`ip netns exec`; the namespace is the test's own, so
    /// the port is free).
    pub fn start_in_netns(ns: &str, ip: std::net::IpAddr) -> Self {
        let mut k = Self::prepare_with(5060, "kamailio.cfg.in", &[("HOST", ip.to_string())], None);
        k.host = ip;
        k.netns = Some(ns.to_owned());
        k.spawn();
        k
    }

    /// Starts it on a port the caller chose (e.g. one a phone already tries to register with).
    pub fn start_on(port: u16) -> Self {
        let mut k = Self::prepare(port, "kamailio.cfg.in");
        k.spawn();
        k
    }

    /// Renders and checks the config for `port`; does not start it.
    fn prepare(port: u16, template: &str) -> Self {
        Self::prepare_with(port, template, &[], None)
    }

    /// As [`Kamailio::prepare`], with more `@NAME@` values and a `tls.cfg` for its directory.
    fn prepare_with(port: u16, template: &str, vars: &[(&str, String)], tls_cfg: Option<&str>) -> Self {
        let bin = peer_bin("kamailio");
        let dir = tempfile::Builder::new()
            .prefix("kam")
            .tempdir()
            .expect("temp dir");
        let mut text = std::fs::read_to_string(peers_dir().join(template))
            .unwrap_or_else(|e| panic!("tests/peers/{template}: {e}"));
        if let Some((_, host)) = vars.iter().find(|(k, _)| *k == "HOST") {
            // Another listen address than the loopback one the templates are written for.
            text = text.replace("127.0.0.1", host);
        }
        let ctl = dir.path().join("ctl");
        let cfg = dir.path().join("kamailio.cfg");
        if let Some(t) = tls_cfg {
            std::fs::write(dir.path().join("tls.cfg"), t).unwrap();
        }
        if text.contains("@DIR@/db") {
            // db_text tables, from the layout Debian's kamailio ships.
            let db = dir.path().join("db");
            std::fs::create_dir_all(&db).unwrap();
            let shipped = Path::new("/usr/share/kamailio/dbtext/kamailio");
            for t in [
                "version",
                "presentity",
                "active_watchers",
                "watchers",
                "xcap",
                "pua",
            ] {
                std::fs::copy(shipped.join(t), db.join(t))
                    .unwrap_or_else(|e| panic!("{}: {e}", shipped.join(t).display()));
            }
        }
        std::fs::write(
            &cfg,
            render(
                &text,
                &[
                    ("PORT", port.to_string()),
                    ("CTL", ctl.display().to_string()),
                    ("DIR", dir.path().display().to_string()),
                ]
                .into_iter()
                .chain(vars.iter().map(|(k, v)| (*k, v.clone())))
                .collect::<Vec<_>>(),
            ),
        )
        .unwrap();
        let check = Command::new(&bin)
            .arg("-f")
            .arg(&cfg)
            .arg("-c")
            .output()
            .unwrap_or_else(|e| panic!("running {} -c: {e}", bin.display()));
        assert!(
            check.status.success(),
            "kamailio rejects the rendered config {}:\n{}",
            cfg.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.path().join("kamailio.log");
        Kamailio {
            port,
            tls_port: 0,
            host: std::net::Ipv4Addr::LOCALHOST.into(),
            dir,
            cfg,
            log,
            child: None,
            runs: 0,
            netns: None,
        }
    }

    /// `127.0.0.1:PORT` (or `[::1]:PORT`), as a phone's `registrar`.
    pub fn addr(&self) -> String {
        std::net::SocketAddr::new(self.host, self.port).to_string()
    }

    fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{e}");
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "kamailio already running");
        if self.runs > 0 && self.log.exists() {
            let old = self.dir.path().join(format!("kamailio.log.{}", self.runs));
            let _ = std::fs::rename(&self.log, old);
        }
        self.runs += 1;
        let out = std::fs::File::create(&self.log).unwrap();
        let pidfile = self.dir.path().join("kamailio.pid");
        // The previous instance may still hold the port for a moment.
        let end = Instant::now() + Duration::from_secs(5);
        while self.netns.is_none()
            && (is_bound("udp", self.port) || is_bound("tcp", self.port))
            && Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new(peer_bin("ip"));
                c.args(["netns", "exec", ns]).arg(peer_bin("kamailio"));
                c
            }
            None => Command::new(peer_bin("kamailio")),
        };
        let child = cmd
            .arg("-f")
            .arg(&self.cfg)
            .args(["-DD", "-E", "-P"])
            .arg(&pidfile)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning kamailio: {e}"));
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(10))
    }

    /// Waits until the TCP port listens and an OPTIONS over UDP gets a reply.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        let bind = std::net::SocketAddr::new(self.host, 0);
        let sock = match &self.netns {
            Some(ns) => udp_socket_in_netns(ns, bind),
            None => UdpSocket::bind(bind).unwrap(),
        };
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let me = sock.local_addr().unwrap().port();
        let (host, to) = (
            std::net::SocketAddr::new(self.host, 0)
                .to_string()
                .trim_end_matches(":0")
                .to_owned(),
            std::net::SocketAddr::new(self.host, self.port),
        );
        let mut n = 0;
        while Instant::now() < end {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "kamailio exited at start ({status}); log:\n{}",
                    tail(&self.log(), 40)
                ));
            }
            n += 1;
            let msg = format!(
                "OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{me};branch=z9hG4bK-probe{n}\r\n\
                 From: <sip:probe@{host}:{me}>;tag=p{n}\r\nTo: <sip:{host}:{port}>\r\n\
                 Call-ID: probe-{me}-{n}\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                port = self.port
            );
            let _ = sock.send_to(msg.as_bytes(), to);
            let mut buf = [0u8; 4096];
            if let Ok((len, _)) = sock.recv_from(&mut buf)
                && buf[..len].starts_with(b"SIP/2.0 ")
                && (self.host.is_ipv6() || self.netns.is_some() || is_bound("tcp", self.port))
            {
                return Ok(());
            }
        }
        Err(format!(
            "kamailio on 127.0.0.1:{} did not answer OPTIONS within {timeout:?}; log:\n{}",
            self.port,
            tail(&self.log(), 40)
        ))
    }

    /// Stops it (SIGTERM, then SIGKILL); registrations are lost (kept in memory only).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(3));
        }
        let end = Instant::now() + Duration::from_secs(5);
        while self.netns.is_none()
            && (is_bound("udp", self.port) || is_bound("tcp", self.port))
            && Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it and starts it again on the same port, with an empty location table. The log of
    /// the new run starts empty (`log()`, `requests()` count the new run only).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// This run's log (stderr).
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    /// The `CTIPHONE-REQ` lines (one per request received) of this run, for `method`.
    pub fn request_lines(&self, method: &str) -> Vec<String> {
        let needle = format!("CTIPHONE-REQ {method} ");
        self.log()
            .lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_owned)
            .collect()
    }

    /// How many `method` requests this run received.
    pub fn requests(&self, method: &str) -> usize {
        self.request_lines(method).len()
    }

    /// How many registrations of `user` this run saved (a 200 to a REGISTER, including
    /// de-registrations).
    pub fn saved(&self, user: &str) -> usize {
        let needle = format!("CTIPHONE-SAVED {user} ");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Waits until this run saved at least `n` registrations of `user`.
    pub fn wait_saved(&self, user: &str, n: usize, timeout: Duration) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.saved(user) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "kamailio saved {} registration(s) of {user} within {timeout:?}, expected {n}; log:\n{}",
            self.saved(user),
            tail(&self.log(), 40)
        );
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- kamailio 127.0.0.1:{} log (last 60 lines) ----\n{}",
                self.port,
                tail(&self.log(), 60)
            );
        }
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(2));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// coturn

/// coturn's `turnserver` as a STUN-only server (no TURN, no TLS/DTLS, no auth) on `addr`
/// (UDP and TCP) inside the network namespace `ns` made by the test; its SQLite file and log
/// in a temporary directory of its own. Ready when it answers a Binding request. Killed on
/// drop.
pub struct Coturn {
    pub addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
    log: PathBuf,
    child: Option<Child>,
}

impl Coturn {
    pub fn start_in_netns(ns: &str, addr: std::net::SocketAddr) -> Coturn {
        let bin = peer_bin("turnserver");
        let dir = tempfile::Builder::new()
            .prefix("coturn")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("turnserver.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(peer_bin("ip"))
            .args(["netns", "exec", ns])
            .arg(&bin)
            // No configuration file: everything is on the command line.
            .arg("-n")
            .arg(format!("--listening-ip={}", addr.ip()))
            .arg(format!("--listening-port={}", addr.port()))
            .args([
                "--stun-only",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--no-software-attribute",
                "--simple-log",
                "--log-file=stdout",
            ])
            .arg(format!(
                "--pidfile={}",
                dir.path().join("turnserver.pid").display()
            ))
            .arg(format!("--db={}", dir.path().join("turndb").display()))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let mut c = Coturn {
            addr,
            dir,
            log,
            child: Some(child),
        };
        c.wait_ready(Duration::from_secs(10), ns);
        c
    }

    /// Sends Binding requests from inside `ns` until one is answered.
    fn wait_ready(&mut self, timeout: Duration, ns: &str) {
        let sock = udp_socket_in_netns(ns, std::net::SocketAddr::new(self.addr.ip(), 0));
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let end = Instant::now() + timeout;
        let mut n = 0u8;
        while Instant::now() < end {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "turnserver exited at start ({status}); log:\n{}",
                    tail(&self.log(), 40)
                );
            }
            n = n.wrapping_add(1);
            let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
            req.extend_from_slice(&[n; 12]);
            let _ = sock.send_to(&req, self.addr);
            let mut buf = [0u8; 1500];
            if let Ok((len, _)) = sock.recv_from(&mut buf)
                && len >= 20
                && buf[..2] == [0x01, 0x01]
                && buf[8..20] == [n; 12]
            {
                return;
            }
        }
        panic!(
            "turnserver on {} did not answer a Binding request within {timeout:?}; log:\n{}",
            self.addr,
            tail(&self.log(), 40)
        );
    }

    /// Its log (stdout and stderr).
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    /// Its directory (log, pid file, database).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- turnserver {} log (last 30 lines) ----\n{}",
                self.addr,
                tail(&self.log(), 30)
            );
        }
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(2));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SIPp

/// How a SIPp run ended.
#[derive(Debug)]
pub struct SippResult {
    /// The exit code: 0 every call succeeded, 1 a call failed, 97/99 ended without calls,
    /// 255/254 fatal (bad scenario, cannot bind). None: killed by a signal (or by us on timeout).
    pub code: Option<i32>,
    /// The scenario file.
    pub scenario: String,
    /// `-trace_err`: every unexpected message and error.
    pub errors: String,
    /// `-trace_msg`: every message sent and received.
    pub messages: String,
    /// stdout and stderr (the screen).
    pub output: String,
}

impl SippResult {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics unless every call of the scenario succeeded.
    #[track_caller]
    pub fn assert_ok(&self) {
        assert!(self.ok(), "{}", self.report());
    }

    pub fn report(&self) -> String {
        format!(
            "sipp {} exited with {:?} (0 = every call succeeded)\n---- errors ----\n{}\n---- messages (last 120 lines) ----\n{}\n---- screen (last 30 lines) ----\n{}",
            self.scenario,
            self.code,
            self.errors.trim(),
            tail(&self.messages, 120),
            tail(&self.output, 30)
        )
    }

    /// Every message in the `-trace_msg` log, in order.
    pub fn parsed(&self) -> Vec<SippMsg> {
        let mut out = Vec::new();
        for chunk in self
            .messages
            .split("-----------------------------------------------")
        {
            let mut lines = chunk.lines();
            let stamp = lines.next().unwrap_or_default().trim().to_owned();
            let Some(kind) = lines.next() else { continue };
            let sent = kind.contains("message sent");
            if !sent && !kind.contains("message received") {
                continue;
            }
            let text: Vec<&str> = lines.map(|l| l.trim_end_matches('\r')).collect();
            let text = text.join("\n").trim().to_owned();
            // "2026-11-25 13:22:35.093422" -> seconds of the day
            let at = stamp
                .split_whitespace()
                .nth(1)
                .map(|t| {
                    t.split(':')
                        .map(|x| x.parse::<f64>().unwrap_or(0.0))
                        .fold(0.0, |acc, x| acc * 60.0 + x)
                })
                .unwrap_or(0.0);
            out.push(SippMsg { sent, at, text });
        }
        out
    }

    /// The messages SIPp received whose first line starts with `start` (e.g. `"SIP/2.0 200"`,
    /// `"BYE "`).
    pub fn received_msgs(&self, start: &str) -> Vec<SippMsg> {
        self.parsed()
            .into_iter()
            .filter(|m| !m.sent && m.text.starts_with(start))
            .collect()
    }

    /// The messages SIPp sent whose first line starts with `start`.
    pub fn sent_msgs(&self, start: &str) -> Vec<SippMsg> {
        self.parsed()
            .into_iter()
            .filter(|m| m.sent && m.text.starts_with(start))
            .collect()
    }

    /// How many messages SIPp received whose first line starts with `start`.
    pub fn received(&self, start: &str) -> usize {
        self.received_msgs(start).len()
    }

    /// How many messages SIPp sent whose first line starts with `start`.
    pub fn sent(&self, start: &str) -> usize {
        self.sent_msgs(start).len()
    }
}

/// One message of a SIPp `-trace_msg` log.
#[derive(Clone, Debug)]
pub struct SippMsg {
    pub sent: bool,
    /// Seconds since midnight (local time) when SIPp logged it.
    pub at: f64,
    /// The message, lines joined with `\n`.
    pub text: String,
}

impl SippMsg {
    /// The value of the first header `name` (case-insensitive, long form only).
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self.text.split("\n\n").next().unwrap_or_default();
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body (after the blank line).
    pub fn body(&self) -> &str {
        self.text.split_once("\n\n").map(|x| x.1).unwrap_or("")
    }
}

/// A SIPp process running in the background (typically a UAS waiting for the phone's call).
pub struct Sipp {
    /// SIPp's SIP port on 127.0.0.1 (`-p`).
    pub port: u16,
    pub transport: &'static str,
    child: Option<Child>,
    dir: tempfile::TempDir,
    scenario: String,
}

/// The path of a scenario in tests/peers/sipp.
pub fn scenario_path(name: &str) -> PathBuf {
    let p = peers_dir().join("sipp").join(name);
    assert!(p.is_file(), "no SIPp scenario {}", p.display());
    p
}

impl Sipp {
    /// Starts `sipp` on scenario `tests/peers/sipp/<scenario>` with `args` (the remote
    /// `127.0.0.1:PORT` for a UAC, `-s USER`, `-t t1` for TCP, `-nr`, …). Added: `-sf`, `-i`,
    /// `-p` (a free port, unless `args` has one), loopback control and media sockets on free
    /// ports, `-m 1 -nostdin -timeout 20s -timeout_error`, error and message traces.
    /// Returns once SIPp's SIP socket is bound.
    pub fn spawn(scenario: &str, args: &[&str]) -> Sipp {
        // The ports are free when picked, but another test's process (a phone's or baresip's
        // RTP) may take one before SIPp binds it: then SIPp exits at once (errno 98) and is
        // started again on other ports, unless the caller chose the SIP port.
        let chosen = args.contains(&"-p");
        for _ in 0..4 {
            let mut s = Self::spawn_once(scenario, args);
            let exited = s.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited
                && !chosen
                && status.code() == Some(254)
                && read_lossy(&s.dir.path().join("errors.log")).contains("errno = 98")
            {
                continue;
            }
            return s;
        }
        Self::spawn_once(scenario, args)
    }

    fn spawn_once(scenario: &str, args: &[&str]) -> Sipp {
        let bin = peer_bin("sipp");
        let path = scenario_path(scenario);
        let dir = tempfile::Builder::new()
            .prefix("sipp")
            .tempdir()
            .expect("temp dir");
        let tcp = args.windows(2).any(|w| w[0] == "-t" && w[1].starts_with('t'));
        let port = match args.iter().position(|a| *a == "-p") {
            Some(i) => args[i + 1].parse().expect("-p PORT"),
            None if tcp => free_port_both(),
            None => free_udp_port(),
        };
        let mut cmd = Command::new(bin);
        cmd.arg("-sf").arg(&path).args(args);
        if !args.contains(&"-p") {
            cmd.args(["-p", &port.to_string()]);
        }
        let has = |o: &str| args.contains(&o);
        if !has("-i") {
            cmd.args(["-i", "127.0.0.1"]);
        }
        if !has("-m") {
            cmd.args(["-m", "1"]);
        }
        if !has("-timeout") {
            cmd.args(["-timeout", "20s"]);
        }
        cmd.args(["-ci", "127.0.0.1", "-cp", &free_udp_port().to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &free_udp_media_port().to_string()])
            .args(["-nostdin", "-timeout_error"])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.path().join("errors.log"))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.path().join("messages.log"));
        let out = std::fs::File::create(dir.path().join("screen.log")).unwrap();
        let child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning sipp: {e}"));
        let mut s = Sipp {
            port,
            transport: if tcp { "tcp" } else { "udp" },
            child: Some(child),
            dir,
            scenario: scenario.to_owned(),
        };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if is_bound(s.transport, port) {
                break;
            }
            if let Some(status) = s.child.as_mut().unwrap().try_wait().unwrap() {
                // A UAC may finish quickly; that is for wait() to judge.
                let _ = status;
                break;
            }
            if Instant::now() > end {
                panic!(
                    "sipp {scenario} did not bind {} 127.0.0.1:{port}:\n{}",
                    s.transport,
                    s.collect(None).report()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// `127.0.0.1:PORT` of SIPp's SIP socket.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A SIP URI reaching SIPp directly as `user`.
    pub fn uri(&self, user: &str) -> String {
        if self.transport == "tcp" {
            format!("sip:{user}@127.0.0.1:{};transport=tcp", self.port)
        } else {
            format!("sip:{user}@127.0.0.1:{}", self.port)
        }
    }

    /// Whether SIPp is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Waits up to `timeout` for SIPp to finish (killing it after that) and returns the result.
    pub fn wait(mut self, timeout: Duration) -> SippResult {
        let mut child = self.child.take().expect("sipp child");
        let end = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > end {
                terminate(&mut child, Duration::from_millis(500));
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.collect(status)
    }

    fn collect(&self, status: Option<ExitStatus>) -> SippResult {
        let mut output = read_lossy(&self.dir.path().join("screen.log"));
        if status.is_none() {
            output.push_str("\n[killed by the test harness: did not finish in time]");
        }
        SippResult {
            code: status.and_then(|s| s.code()),
            scenario: self.scenario.clone(),
            errors: read_lossy(&self.dir.path().join("errors.log")),
            messages: read_lossy(&self.dir.path().join("messages.log")),
            output,
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_millis(300));
        }
    }
}

/// Runs `sipp` on a scenario to completion (at most 30 s) and returns the result; see
/// `Sipp::spawn` for the arguments added.
pub fn sipp(scenario: &str, args: &[&str]) -> SippResult {
    Sipp::spawn(scenario, args).wait(Duration::from_secs(30))
}

// ---------------------------------------------------------------------------------------------
// baresip

/// A baresip softphone registered to a Kamailio as `user`, auto-answering, rendered from
/// `tests/peers/baresip/{config,accounts}.in`. Killed on drop.
pub struct Baresip {
    pub port: u16,
    pub ctrl_port: u16,
    rtp: u16,
    pub user: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Baresip {
    /// Starts baresip registered as `user` (password `pw<user>`) and waits until Kamailio
    /// saved the registration.
    pub fn start(kamailio: &Kamailio, user: &str) -> Baresip {
        Self::start_with_codecs(kamailio, user, "PCMU,PCMA")
    }

    /// As [`Baresip::start`], offering and accepting only `codecs` (baresip's names, e.g.
    /// "PCMA", "G722", "opus").
    pub fn start_with_codecs(kamailio: &Kamailio, user: &str, codecs: &str) -> Baresip {
        Self::start_with_tone(kamailio, user, codecs, 1000)
    }

    /// As [`Baresip::start_with_codecs`], playing a `freq` Hz tone as its microphone. Its
    /// ports are free when picked; one taken by another test's process before baresip binds
    /// it makes baresip exit, and it is started again on other ports.
    pub fn start_with_tone(kamailio: &Kamailio, user: &str, codecs: &str, freq: u32) -> Baresip {
        Self::start_with_srtp(kamailio, user, codecs, freq, "")
    }

    /// As [`Baresip::start_with_tone`], with its `srtp` module loaded and the account's
    /// `mediaenc` (`srtp-mand`: RTP/SAVP only, `srtp`: best effort; "" = no SRTP at all).
    pub fn start_with_srtp(
        kamailio: &Kamailio,
        user: &str,
        codecs: &str,
        freq: u32,
        mediaenc: &str,
    ) -> Baresip {
        for _ in 0..3 {
            match Self::try_start(kamailio, user, codecs, freq, mediaenc) {
                Ok(b) => return b,
                Err(log) if log.to_ascii_lowercase().contains("in use") => continue,
                Err(log) => panic!("baresip exited at start:\n{}", tail(&log, 40)),
            }
        }
        Self::try_start(kamailio, user, codecs, freq, mediaenc)
            .unwrap_or_else(|log| panic!("baresip exited at start:\n{}", tail(&log, 40)))
    }

    fn try_start(
        kamailio: &Kamailio,
        user: &str,
        codecs: &str,
        freq: u32,
        mediaenc: &str,
    ) -> Result<Baresip, String> {
        // baresip's file source must run at the codec's own rate.
        let first = codecs.split(',').next().unwrap_or("").to_ascii_lowercase();
        let srate: u32 = match first.as_str() {
            "g722" => 16000,
            "opus" => 48000,
            _ => 8000,
        };
        let channels: u32 = if first == "opus" { 2 } else { 1 };
        let bin = peer_bin("baresip");
        let sox = peer_bin("sox");
        let dir = tempfile::Builder::new()
            .prefix("baresip")
            .tempdir()
            .expect("temp dir");
        let port = free_udp_port();
        let ctrl_port = free_tcp_port();
        let rtp = free_udp_media_port();
        let tone = dir.path().join("tone1k.wav");
        let made = Command::new(sox)
            .args([
                "-n",
                "-r",
                &srate.to_string(),
                "-c",
                &channels.to_string(),
                "-b",
                "16",
            ])
            .arg(&tone)
            .args(["synth", "30", "sine", &freq.to_string(), "vol", "0.5"])
            .output()
            .expect("running sox");
        assert!(
            made.status.success(),
            "sox could not make the tone file: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let vars = [
            ("SIP_PORT", port.to_string()),
            ("CTRL_PORT", ctrl_port.to_string()),
            ("RTP_MIN", rtp.to_string()),
            ("RTP_MAX", (rtp + 3).to_string()),
            ("DIR", dir.path().display().to_string()),
            ("USER", user.to_owned()),
            ("PASSWORD", format!("pw{user}")),
            ("KPORT", kamailio.port.to_string()),
            ("CODECS", codecs.to_owned()),
            ("SRATE", srate.to_string()),
            ("CHANNELS", channels.to_string()),
            (
                "MEDIAENC",
                if mediaenc.is_empty() {
                    String::new()
                } else {
                    format!(";mediaenc={mediaenc}")
                },
            ),
            (
                "SRTP_MODULE",
                if mediaenc.is_empty() {
                    "# no SRTP".to_owned()
                } else {
                    "module\t\t\tsrtp.so".to_owned()
                },
            ),
        ];
        for name in ["config", "accounts"] {
            let t = std::fs::read_to_string(peers_dir().join(format!("baresip/{name}.in")))
                .unwrap_or_else(|e| panic!("tests/peers/baresip/{name}.in: {e}"));
            std::fs::write(dir.path().join(name), render(&t, &vars)).unwrap();
        }
        let before = kamailio.saved(user);
        let out = std::fs::File::create(dir.path().join("baresip.log")).unwrap();
        let child = Command::new(bin)
            .arg("-f")
            .arg(dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning baresip: {e}"));
        let mut b = Baresip {
            port,
            rtp,
            ctrl_port,
            user: user.to_owned(),
            child: Some(child),
            dir,
        };
        let end = Instant::now() + Duration::from_secs(10);
        while kamailio.saved(user) <= before {
            if let Some(s) = b.child.as_mut().unwrap().try_wait().unwrap() {
                b.child = None;
                return Err(format!("({s})\n{}", b.log()));
            }
            if Instant::now() > end {
                panic!(
                    "baresip did not register as {user} with kamailio within 10 s:\n{}\n---- kamailio ----\n{}",
                    tail(&b.log(), 40),
                    tail(&kamailio.log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(b)
    }

    /// baresip's output (it logs calls as `Call with ... terminated`, `Call established`…).
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("baresip.log"))
    }

    /// The run directory (tone file, `baresip-heard.wav`, `dump-*.wav`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// What baresip heard: sndfile's dump of its decoded audio, else aufile's player output.
    pub fn heard_wav(dir: &std::path::Path) -> PathBuf {
        std::fs::read_dir(dir)
            .expect("baresip dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav"))
            })
            .unwrap_or_else(|| dir.join("baresip-heard.wav"))
    }

    /// Its RTP ports (`rtp_ports` in its config).
    pub fn rtp_ports(&self) -> std::ops::RangeInclusive<u16> {
        self.rtp..=self.rtp + 3
    }

    /// Sends a command over its ctrl_tcp interface (a netstring of JSON), e.g. `dial` with
    /// `sip:1001@127.0.0.1:PORT`.
    pub fn command(&self, command: &str, params: &str) {
        use std::io::Write as _;
        let body = serde_json::json!({"command": command, "params": params, "token": "t"}).to_string();
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.ctrl_port))
            .unwrap_or_else(|e| panic!("baresip ctrl_tcp on {}: {e}", self.ctrl_port));
        c.write_all(format!("{}:{body},", body.len()).as_bytes())
            .expect("baresip ctrl_tcp write");
        // Wait for its answer, so the command ran.
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 512];
        let _ = std::io::Read::read(&mut c, &mut buf);
    }

    /// Waits until baresip's output contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "baresip did not log {needle:?} within {timeout:?}:\n{}",
            tail(&self.log(), 40)
        );
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- baresip 127.0.0.1:{} log (last 40 lines) ----\n{}",
                self.port,
                tail(&self.log(), 40)
            );
        }
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(2));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The phone under test

/// The `[account]` section of a phone config. `registrar` empty: no registration, direct calls
/// only (the URI's host is then 127.0.0.1).
pub fn account_toml(user: &str, password: &str, registrar: &str, transport: &str, expires: u32) -> String {
    let host = if registrar.is_empty() {
        "127.0.0.1"
    } else {
        registrar
    };
    format!(
        "[account]\n\
         uri = \"sip:{user}@{host}\"\n\
         username = \"{user}\"\n\
         password = \"{password}\"\n\
         registrar = \"{registrar}\"\n\
         transport = \"{transport}\"\n\
         listen = \"127.0.0.1:0\"\n\
         expires = {expires}\n\
         extension = \"{user}\"\n\
         display_name = \"Agent {user}\"\n\
         call_waiting = false\n"
    )
}

/// `ctiphone headless --config FILE [extra args]`: commands as JSON lines on stdin, events
/// read line by line from stdout on a thread. Killed on drop.
pub struct Phone {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Result<Value, String>>,
    /// Every event received so far, in order (including the ones `expect` skipped).
    seen: Vec<Value>,
    /// The `ready` event.
    pub ready: Value,
    dir: tempfile::TempDir,
    exit: Option<ExitStatus>,
    /// A panic message already carried the diagnostics.
    reported: bool,
}

impl Phone {
    /// The phone's HOME (its XDG directories are below it: `xdg-data` holds the history).
    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the phone with SIGKILL (no chance to clean up: a crash or a power cut).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM to the phone (as a service manager or a dropped SSH session would).
    pub fn terminate(&self) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }

    /// A new HOME for a phone (a temporary directory, removed with the phone).
    pub fn new_home() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("phone")
            .tempdir()
            .expect("temp dir")
    }

    /// Starts the phone on `config_toml` and waits (10 s) for its `ready` event.
    pub fn start(config_toml: &str, extra_args: &[&str]) -> Phone {
        let dir = Self::new_home();
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, config_toml).unwrap();
        Self::launch(dir, &cfg, extra_args, |_| {})
    }

    /// Starts the phone in `home` (from [`Phone::new_home`], prepared by the test) on the
    /// configuration file `config`, under `umask` (as an agent's login shell would set it),
    /// with `XDG_RUNTIME_DIR` at `home/xdg-runtime`; waits (10 s) for its `ready` event.
    pub fn start_in(home: tempfile::TempDir, config: &Path, extra_args: &[&str], umask: u32) -> Phone {
        let runtime = home.path().join("xdg-runtime");
        Self::launch(home, config, extra_args, move |cmd| {
            cmd.env("XDG_RUNTIME_DIR", &runtime);
            let mask = umask as libc::mode_t;
            // SAFETY: the hook only calls umask, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(mask);
                    Ok(())
                })
            };
        })
    }

    /// As [`Phone::start`], the command prefixed by `wrapper` (`["ip", "netns", "exec",
    /// NS]`: the phone in a network namespace).
    pub fn start_wrapped(config_toml: &str, extra_args: &[&str], wrapper: &[&str]) -> Phone {
        let dir = Self::new_home();
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, config_toml).unwrap();
        Self::launch_wrapped(dir, &cfg, extra_args, wrapper, |_| {})
    }

    fn launch(
        dir: tempfile::TempDir,
        cfg: &Path,
        extra_args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Phone {
        Self::launch_wrapped(dir, cfg, extra_args, &[], adjust)
    }

    fn launch_wrapped(
        dir: tempfile::TempDir,
        cfg: &Path,
        extra_args: &[&str],
        wrapper: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Phone {
        let err = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(ctiphone_bin());
                c
            }
            None => Command::new(ctiphone_bin()),
        };
        adjust(&mut cmd);
        let mut child = cmd
            .arg("headless")
            .arg("--config")
            .arg(cfg)
            .args(extra_args)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env("XDG_CONFIG_HOME", dir.path().join("xdg-config"))
            .env("XDG_DATA_HOME", dir.path().join("xdg-data"))
            .env("XDG_STATE_HOME", dir.path().join("xdg-state"))
            .env("XDG_CACHE_HOME", dir.path().join("xdg-cache"))
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning ctiphone headless: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\r', '\n']);
                        let item = match serde_json::from_str::<Value>(line) {
                            Ok(v) if v.get("event").and_then(Value::as_str).is_some() => Ok(v),
                            Ok(v) => Err(format!("stdout line without an \"event\" string: {v}")),
                            Err(e) => Err(format!("stdout line is not JSON ({e}): {line:?}")),
                        };
                        if tx.send(item).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("reading stdout: {e}")));
                        break;
                    }
                }
            }
        });
        let mut phone = Phone {
            child,
            stdin,
            rx,
            seen: Vec::new(),
            ready: Value::Null,
            dir,
            exit: None,
            reported: false,
        };
        phone.ready = phone.expect("ready", Duration::from_secs(10));
        phone
    }

    /// The listen address from the ready event (`127.0.0.1:PORT`).
    pub fn listen(&self) -> String {
        self.ready["listen"]
            .as_str()
            .unwrap_or_else(|| panic!("ready event without a \"listen\" string: {}", self.ready))
            .to_owned()
    }

    /// The port the phone listens on (from the ready event).
    pub fn port(&self) -> u16 {
        let l = self.listen();
        l.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("ready event listen {l:?} has no port"))
    }

    /// The phone's process id (for /proc/PID/status: its resident memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The phone's resident memory (VmRSS) in KiB, read from /proc/PID/status.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_else(|e| panic!("reading /proc/{}/status: {e}", self.pid()));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{}/status", self.pid()))
    }

    /// Whether the process is still running (not exited, not killed).
    pub fn alive(&mut self) -> bool {
        self.exit.is_none() && self.child.try_wait().ok().flatten().is_none()
    }

    /// `127.0.0.1:PORT`, the target for a SIPp UAC calling the phone directly.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// Sends one command (a JSON value) as a line on stdin.
    pub fn send(&mut self, cmd: Value) {
        self.send_raw(&cmd.to_string());
    }

    /// Sends one raw line on stdin (no newline needed).
    pub fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("phone stdin closed");
        let r = stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.write_all(b"\n"))
            .and_then(|_| stdin.flush());
        if let Err(e) = r {
            panic!(
                "writing {line:?} to the phone's stdin: {e}\n{}",
                self.diagnostics()
            );
        }
    }

    /// Closes the phone's stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the next event named `event`, skipping (and recording) the others. Panics with
    /// every event seen so far and the phone's stderr on timeout, on a non-JSON stdout line,
    /// or when the phone exits first.
    #[track_caller]
    pub fn expect(&mut self, event: &str, timeout: Duration) -> Value {
        self.expect_where(event, timeout, |_| true)
    }

    /// `event` of `call`, seen already or coming within `timeout` (for events whose order
    /// between calls is not fixed: a hold's 200 and another call's answer).
    pub fn expect_call(&mut self, event: &str, call: &str, timeout: Duration) -> Value {
        if let Some(v) = self
            .seen
            .iter()
            .find(|v| v["event"] == event && v["call"] == call)
        {
            return v.clone();
        }
        self.expect_where(event, timeout, |v: &Value| v["call"] == call)
    }

    /// Like `expect`, for the next `event` that also satisfies `pred`.
    #[track_caller]
    pub fn expect_where(&mut self, event: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let got = self.rx.recv_timeout(left);
            if !matches!(got, Ok(Ok(_))) {
                self.reported = true;
            }
            match got {
                Ok(Ok(v)) => {
                    self.seen.push(v.clone());
                    if v["event"] == event && pred(&v) {
                        return v;
                    }
                }
                Ok(Err(e)) => panic!("while waiting for {event:?}: {e}\n{}", self.diagnostics()),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {event:?} event within {timeout:?}\n{}", self.diagnostics())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let st = self.child.try_wait().ok().flatten();
                    panic!(
                        "the phone closed stdout (exit: {st:?}) before a {event:?} event\n{}",
                        self.diagnostics()
                    )
                }
            }
        }
    }

    /// Collects every event arriving within `window` (recording them) and returns them.
    pub fn drain(&mut self, window: Duration) -> Vec<Value> {
        let end = Instant::now() + window;
        let mut got = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.rx.recv_timeout(left) {
                Ok(Ok(v)) => {
                    self.seen.push(v.clone());
                    got.push(v);
                }
                Ok(Err(e)) => {
                    self.reported = true;
                    panic!("{e}\n{}", self.diagnostics())
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left);
                    break;
                }
            }
        }
        got
    }

    /// Panics if an event named `event` arrives within `window`.
    #[track_caller]
    pub fn expect_none(&mut self, event: &str, window: Duration) {
        let got = self.drain(window);
        if let Some(v) = got.iter().find(|v| v["event"] == event) {
            self.reported = true;
            panic!("unexpected {event:?} event: {v}\n{}", self.diagnostics());
        }
    }

    /// Every event received so far.
    pub fn seen(&self) -> &[Value] {
        &self.seen
    }

    /// How many events named `event` were received so far.
    pub fn count(&self, event: &str) -> usize {
        self.seen.iter().filter(|v| v["event"] == event).count()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.exit = Some(s);
                return Some(s);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The phone's stderr (its logs) so far.
    pub fn stderr(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("stderr.log")) {
            let mut b = Vec::new();
            let _ = f.read_to_end(&mut b);
            s = String::from_utf8_lossy(&b).into_owned();
        }
        s
    }

    /// Events seen and the tail of stderr, for failure messages.
    pub fn diagnostics(&self) -> String {
        let events: Vec<String> = self.seen.iter().map(|v| v.to_string()).collect();
        format!(
            "---- phone events seen ({}) ----\n{}\n---- phone stderr (last 60 lines) ----\n{}",
            events.len(),
            events.join("\n"),
            tail(&self.stderr(), 60)
        )
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.reported {
            eprintln!("{}", self.diagnostics());
        }
        if self.exit.is_none() && self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Seconds, for readable timeouts.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Milliseconds, for readable timeouts.
pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

// ---------------------------------------------------------------------------------------------
// Helpers for the mid-call, failure and robustness tests

impl Sipp {
    /// The messages SIPp logged so far (its `-trace_msg` file, read while it runs).
    pub fn trace_now(&self) -> SippResult {
        let mut r = self.collect(None);
        r.output = read_lossy(&self.dir.path().join("screen.log"));
        r.output.push_str("\n[still running]");
        r
    }

    /// Waits until SIPp has logged at least `n` received messages whose first line starts with
    /// `start` (e.g. `"ACK "`); panics with `why` and SIPp's trace after `timeout`.
    #[track_caller]
    pub fn wait_received(&self, start: &str, n: usize, timeout: Duration, why: &str) {
        let end = Instant::now() + timeout;
        loop {
            let r = self.trace_now();
            if r.received(start) >= n {
                return;
            }
            if Instant::now() > end {
                panic!(
                    "{why}: sipp {} received {} {start:?} message(s) within {timeout:?}, expected \
                     {n}\n{}",
                    self.scenario,
                    r.received(start),
                    r.report()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl SippMsg {
    /// The `branch` parameter of the top Via.
    pub fn branch(&self) -> Option<&str> {
        let via = self.header("Via")?;
        via.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("branch").then(|| v.trim())
        })
    }

    /// The CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let (n, m) = self.header("CSeq")?.split_once(' ')?;
        Some((n.trim().parse().ok()?, m.trim()))
    }
}

/// The `[account]` section of `account_toml` with `call_waiting = true`.
pub fn account_toml_call_waiting(
    user: &str,
    password: &str,
    registrar: &str,
    transport: &str,
    expires: u32,
) -> String {
    let t = account_toml(user, password, registrar, transport, expires);
    assert!(t.contains("call_waiting = false\n"));
    t.replace("call_waiting = false\n", "call_waiting = true\n")
}

/// `ctiphone history list --json` on the data directory of a phone whose HOME was `home`
/// (`Phone::home`): its call history, newest first, one JSON object per call.
pub fn history_list(home: &Path) -> Vec<Value> {
    history_list_with(home, &[])
}

/// As [`history_list`], with more arguments for `history list` (`--limit N`, filters).
pub fn history_list_with(home: &Path, extra: &[&str]) -> Vec<Value> {
    let out = Command::new(ctiphone_bin())
        .args(["history", "list", "--json"])
        .args(extra)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .output()
        .expect("run ctiphone history");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect()
}

impl Sipp {
    /// Kills SIPp and its process group with SIGKILL (a crash: no BYE, its sockets closed by
    /// the kernel, TCP connections reset).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as libc::pid_t;
            // SAFETY: signals to our own child's process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}
