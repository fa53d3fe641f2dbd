//! Which PulseAudio server the sound devices use: `[audio] pulse_server` (else the
//! `PULSE_SERVER` environment variable) parsed and checked, and the local relay that lets a
//! TCP server (the agent's own PC, forwarded with `ssh -R`) be used at all.
//!
//! cpal's PulseAudio host speaks the native protocol over a unix socket only: given
//! `PULSE_SERVER=tcp:…` it silently takes the socket in `$XDG_RUNTIME_DIR` instead, which on
//! a jump host is the jump host's own server. So for a TCP server the phone listens on a unix
//! socket in a private directory (mode 0700) and relays each connection, byte for byte, to a
//! new TCP connection to the server; `PULSE_SERVER` then names that socket. Each device open
//! is a new connection, so a server that went away is simply dialled again on the next open.
//! Authentication passes through: the cookie (`PULSE_COOKIE`, else `~/.config/pulse/cookie`,
//! else `~/.pulse-cookie`) is sent by the client inside the protocol, and the server's
//! `auth-ip-acl` sees 127.0.0.1 when the relay dials a local forward. An agent on a jump host
//! often has no cookie at all (no PulseAudio client ever ran there); a server kicks a client
//! that sends none ("protocol error"), so the relay then names a cookie of zeros in its own
//! directory: no credential, the server's `auth-ip-acl` / `auth-anonymous` decides.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

/// PulseAudio's TCP port when a server string names none.
pub const DEFAULT_PORT: u16 = 4713;
/// How long the relay waits for the TCP server to accept (a forward to a host that went away).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A PulseAudio server: a unix socket or a TCP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PulseServer {
    Unix(PathBuf),
    Tcp { host: String, port: u16 },
}

impl std::fmt::Display for PulseServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PulseServer::Unix(p) => write!(f, "unix:{}", p.display()),
            PulseServer::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            PulseServer::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

/// Parses one PulseAudio server string: `unix:/PATH`, `/PATH`, `tcp:HOST[:PORT]` (also
/// `tcp4:` / `tcp6:`, IPv6 in brackets), or `HOST[:PORT]`. "" (after trimming) → `None`.
/// Lists of servers and `{machine-id}` prefixes are refused: the phone uses one server.
pub fn parse(s: &str) -> Result<Option<PulseServer>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if let Some(c) = t.chars().find(|c| c.is_control()) {
        return Err(format!("contains the control character {:?}", c));
    }
    if t.chars().any(char::is_whitespace) || t.starts_with('{') {
        return Err("expected ONE server (no lists, no `{machine-id}` prefix)".into());
    }
    let unix_path = t
        .strip_prefix("unix:")
        .or_else(|| t.starts_with('/').then_some(t));
    if let Some(path) = unix_path {
        if !path.starts_with('/') || path.len() < 2 {
            return Err(format!("`{t}`: expected an absolute socket path after `unix:`"));
        }
        return Ok(Some(PulseServer::Unix(PathBuf::from(path))));
    }
    let addr = ["tcp4:", "tcp6:", "tcp:"]
        .iter()
        .find_map(|p| t.strip_prefix(p))
        .unwrap_or(t);
    let (host, port) = split_host_port(addr).ok_or_else(|| format!("`{t}`: expected HOST or HOST:PORT"))?;
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("`{t}`: the port `{p}` is not 1 to 65535")),
        },
    };
    let ipv6 = host.parse::<std::net::Ipv6Addr>().is_ok();
    let hostname = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !(ipv6 || hostname) {
        return Err(format!("`{t}`: `{host}` is not a host name or an IP address"));
    }
    Ok(Some(PulseServer::Tcp {
        host: host.to_owned(),
        port,
    }))
}

/// `[v6]:port`, `[v6]`, `host:port`, `host`, or a bare IPv6 address (several colons).
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            a => Some((host, Some(a.strip_prefix(':')?))),
        };
    }
    match s.matches(':').count() {
        0 => Some((s, None)),
        1 => s.split_once(':').map(|(h, p)| (h, Some(p))),
        _ => Some((s, None)),
    }
}

/// Keeps the relay's directory (and so its socket) for as long as the phone runs.
#[derive(Debug)]
pub struct Relay {
    dir: tempfile::TempDir,
}

impl Relay {
    /// The unix socket the sound devices connect to.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("native")
    }
}

/// Points this process's sound devices at `configured` (`[audio] pulse_server`), or, when
/// that is empty, at the server `PULSE_SERVER` names. A TCP server gets the relay (see the
/// module doc) and `PULSE_SERVER` names its socket; the relay lives as long as the returned
/// value. Nothing configured and no usable `PULSE_SERVER`: `Ok(None)`, nothing changes.
///
/// # Safety
///
/// Sets environment variables: call it before any other thread of the process exists (it
/// starts the relay's own thread after setting them).
pub unsafe fn apply(configured: &str) -> Result<Option<Relay>, String> {
    let from_config = parse(configured).map_err(|e| format!("[audio] pulse_server: {e}"))?;
    let chosen = match from_config {
        Some(s) => Some(s),
        // A `PULSE_SERVER` the phone cannot read is left to the sound libraries as it is.
        None => std::env::var("PULSE_SERVER")
            .ok()
            .and_then(|v| parse(&v).ok().flatten()),
    };
    match chosen {
        None => Ok(None),
        Some(PulseServer::Unix(path)) => {
            // SAFETY: the caller guarantees no other thread runs yet.
            unsafe { std::env::set_var("PULSE_SERVER", format!("unix:{}", path.display())) };
            Ok(None)
        }
        Some(PulseServer::Tcp { host, port }) => {
            let base = std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .filter(|d| d.is_dir())
                .unwrap_or_else(std::env::temp_dir);
            let dir = tempfile::Builder::new()
                .prefix("ctiphone-pulse-")
                .tempdir_in(&base)
                .map_err(|e| format!("audio server relay: {}: {e}", base.display()))?;
            let relay = Relay { dir };
            let socket = relay.socket();
            let listener = UnixListener::bind(&socket)
                .map_err(|e| format!("audio server relay: {}: {e}", socket.display()))?;
            let filler = if has_cookie() {
                None
            } else {
                let path = relay.dir.path().join("cookie");
                crate::private::write(&path, &[0u8; COOKIE_LEN])
                    .map_err(|e| format!("audio server relay: {}: {e}", path.display()))?;
                Some(path)
            };
            // SAFETY: the caller guarantees no other thread runs yet; the relay thread starts below.
            unsafe {
                std::env::set_var("PULSE_SERVER", format!("unix:{}", socket.display()));
                if let Some(path) = filler {
                    std::env::set_var("PULSE_COOKIE", path);
                }
            }
            let target = (host, port);
            std::thread::Builder::new()
                .name("pulse-relay".into())
                .spawn(move || accept_loop(&listener, &target))
                .map_err(|e| format!("audio server relay: {e}"))?;
            Ok(Some(relay))
        }
    }
}

/// The length of a PulseAudio cookie; the server refuses any other.
const COOKIE_LEN: usize = 256;

/// Whether a cookie is where PulseAudio clients look for one.
fn has_cookie() -> bool {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    std::env::var_os("PULSE_COOKIE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            home.iter()
                .flat_map(|h| [h.join(".config/pulse/cookie"), h.join(".pulse-cookie")]),
        )
        .any(|p| p.is_file())
}

fn accept_loop(listener: &UnixListener, target: &(String, u16)) {
    for conn in listener.incoming() {
        // A failed accept (out of descriptors) drops that one client; its open fails and is
        // tried again later.
        let Ok(conn) = conn else { continue };
        let target = target.clone();
        let _ = std::thread::Builder::new()
            .name("pulse-relay-conn".into())
            .spawn(move || relay_one(conn, &target));
    }
}

/// Dials the server for one client and copies both ways until either side closes; then both
/// are shut down, so the client sees the server go away (and the server the client).
fn relay_one(client: UnixStream, (host, port): &(String, u16)) {
    let Some(server) = dial(host, *port) else {
        // Dropping the client's end: its connect handshake fails, the open returns an error.
        return;
    };
    let _ = server.set_nodelay(true);
    let (Ok(client_up), Ok(server_up)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::Builder::new()
        .name("pulse-relay-up".into())
        .spawn(move || {
            copy(&client_up, &server_up);
            let _ = server_up.shutdown(Shutdown::Both);
            let _ = client_up.shutdown(Shutdown::Both);
        });
    if up.is_err() {
        return;
    }
    copy(&server, &client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

fn dial(host: &str, port: u16) -> Option<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    addrs
        .iter()
        .find_map(|a| TcpStream::connect_timeout(a, CONNECT_TIMEOUT).ok())
}

/// Copies `from` into `to` until end of file or an error on either side.
fn copy(mut from: impl Read, mut to: impl Write) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Option<PulseServer> {
        Some(PulseServer::Tcp {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn server_strings() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("  "), Ok(None));
        assert_eq!(parse("tcp:127.0.0.1:4714"), Ok(tcp("127.0.0.1", 4714)));
        assert_eq!(parse("tcp:localhost"), Ok(tcp("localhost", DEFAULT_PORT)));
        assert_eq!(parse("tcp4:10.0.0.2:1"), Ok(tcp("10.0.0.2", 1)));
        assert_eq!(parse("tcp6:[::1]:4713"), Ok(tcp("::1", 4713)));
        assert_eq!(parse("tcp6:::1"), Ok(tcp("::1", DEFAULT_PORT)));
        assert_eq!(parse("[::1]"), Ok(tcp("::1", DEFAULT_PORT)));
        assert_eq!(parse("pc-17.example:4713"), Ok(tcp("pc-17.example", 4713)));
        assert_eq!(
            parse("unix:/run/user/1000/pulse/native"),
            Ok(Some(PulseServer::Unix("/run/user/1000/pulse/native".into())))
        );
        assert_eq!(parse("/tmp/s"), Ok(Some(PulseServer::Unix("/tmp/s".into()))));
        for s in ["tcp:127.0.0.1:4714", "tcp:[::1]:4713", "unix:/tmp/s"] {
            let p = parse(s).unwrap().unwrap();
            assert_eq!(parse(&p.to_string()).unwrap(), Some(p));
        }
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for (s, why) in [
            ("tcp:127.0.0.1:0", "port"),
            ("tcp:127.0.0.1:99999", "port"),
            ("tcp:127.0.0.1:x", "port"),
            ("tcp:", "host"),
            ("tcp:a..b", "host"),
            ("tcp:a_b", "host"),
            ("tcp:[::1", "HOST"),
            ("tcp:[::1]x", "HOST"),
            ("unix:", "absolute"),
            ("unix:relative", "absolute"),
            ("tcp:a\u{1b}[2J", "control"),
            ("tcp:a\u{0}", "control"),
            ("unix:/a tcp:b", "ONE"),
            ("{abc}tcp:b", "ONE"),
        ] {
            let e = parse(s).expect_err(s);
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }

    #[test]
    fn the_relay_copies_both_ways_and_closes_when_the_server_goes() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("native");
        let listener = UnixListener::bind(&sock).unwrap();
        let target = ("127.0.0.1".to_owned(), port);
        std::thread::spawn(move || accept_loop(&listener, &target));
        let mut client = UnixStream::connect(&sock).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (mut peer, _) = server.accept().unwrap();
        client.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        peer.write_all(b"pong").unwrap();
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        // The server goes away: the client reads end of file.
        drop(peer);
        drop(server);
        assert_eq!(client.read(&mut got).unwrap(), 0);
        // Nobody listens now: a new client is closed at once.
        let mut again = UnixStream::connect(&sock).unwrap();
        again.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(again.read(&mut got).unwrap_or(0), 0);
    }
}
