//! SIP transports: one UDP socket and a TCP (or TLS) listener on the same address, plus
//! outgoing TCP and TLS connections (reused for requests coming back). Datagrams are parsed
//! one message each, read by the user agent's own loop ([`Datagrams`]); streams are framed by
//! Content-Length (RFC 3261 §18.3) with a 64 KiB cap, and their messages go to the user
//! agent's channel with where they came from. Requests too broken to parse are answered 400
//! (or 505) here. Keep-alives (RFC 5626 §3.5.1): CRLFs between messages are skipped, a
//! double-CRLF ping on a stream is answered with a single-CRLF pong, a CRLF datagram is
//! dropped quietly; [`Transport::ping`] sends our pings and [`Transport::heard_from`] says
//! when a connection last carried anything (the pong check is the registration's).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::message::{self, MAX_MESSAGE, Message};

/// How long a message may take to arrive whole on a stream, from its first byte: a stream
/// whose message never ends (a Content-Length past the bytes sent, no empty line, a peer
/// dripping bytes) is closed then (RFC 4475 §3.1.2.2: "close the connection if none is
/// forthcoming within a reasonable period of time").
pub const STREAM_MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The transport a message travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
    Tls,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
            Proto::Tls => "TLS",
        }
    }

    /// A stream transport: no retransmissions, framing by Content-Length.
    pub fn is_stream(self) -> bool {
        self != Proto::Udp
    }
}

/// TLS settings: whom we trust as a client, and our certificate as a server.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// A PEM file of CA certificates to trust; none: the system's trust store.
    pub ca: Option<std::path::PathBuf>,
    /// Our certificate chain and key (PEM), for incoming TLS connections.
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// The name to verify outgoing connections against (the registrar's host).
    pub server_name: Option<String>,
    /// TLS is in use (the account's transport, or a certificate to serve): only then are the
    /// trust store and certificates loaded.
    pub enabled: bool,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the TLS client and (when a certificate is configured) server configurations.
pub fn tls_configs(s: &TlsSettings) -> Result<(Option<TlsConnector>, Option<TlsAcceptor>), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match &s.ca {
        Some(path) => {
            for cert in
                CertificateDer::pem_file_iter(path).map_err(|e| format!("tls_ca {}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("tls_ca {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("tls_ca {}: {e}", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let acceptor = match (&s.cert, &s.key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
            let server = rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| format!("tls_cert/tls_key: {e}"))?;
            Some(TlsAcceptor::from(Arc::new(server)))
        }
        (None, None) => None,
        _ => return Err("tls_cert and tls_key go together".to_owned()),
    };
    Ok((Some(TlsConnector::from(Arc::new(client))), acceptor))
}

/// A message received, and where to answer.
#[derive(Debug)]
pub struct Inbound {
    pub msg: Message,
    pub from: SocketAddr,
    pub proto: Proto,
}

/// A keep-alive ping (RFC 5626 §3.5.1): a double CRLF.
pub const PING: &[u8] = b"\r\n\r\n";
/// The answer to a ping on a stream: a single CRLF.
pub const PONG: &[u8] = b"\r\n";

/// An open stream connection.
#[derive(Clone)]
struct Conn {
    /// Bytes to write.
    tx: mpsc::Sender<Vec<u8>>,
    /// When bytes last arrived on it (a message, a pong, anything).
    heard: Arc<Mutex<std::time::Instant>>,
    /// Tells its reader to stop (the connection was given up: [`Transport::drop_connection`]).
    kill: Arc<tokio::sync::Notify>,
}

type Conns = Arc<Mutex<HashMap<(Proto, SocketAddr), Conn>>>;
/// Where the end of a stream connection is reported: its transport and peer.
type Closed = Arc<Mutex<Option<mpsc::UnboundedSender<(Proto, SocketAddr)>>>>;

/// Sends messages; cheap to clone.
#[derive(Clone)]
pub struct Transport {
    udp: Arc<UdpSocket>,
    conns: Conns,
    closed: Closed,
    inbound: mpsc::Sender<Inbound>,
    pub local: SocketAddr,
    /// The TLS client: made at start when the account uses TLS, else at the first TLS
    /// connection (a `sips:` call from an account on UDP), from `tls`.
    connector: Arc<std::sync::OnceLock<Result<TlsConnector, String>>>,
    tls: Arc<TlsSettings>,
    server_name: Option<String>,
    /// The name a TLS server at an address must prove (a dialled `sips:` host), over
    /// `server_name`.
    names: Arc<Mutex<HashMap<SocketAddr, String>>>,
    /// Stream connections reused for another address: a caller's Contact reached over the
    /// connection its INVITE came on ([`Transport::reuse_for`]).
    reuse: Arc<Mutex<HashMap<(Proto, SocketAddr), SocketAddr>>>,
    /// [`STREAM_MESSAGE_TIMEOUT`] (shorter in unit tests).
    message_timeout: std::time::Duration,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("local", &self.local).finish()
    }
}

impl Transport {
    /// Binds UDP and TCP on `listen` (port 0: one free port for both) and starts receiving.
    /// With a TLS acceptor, the stream listener speaks TLS.
    pub async fn bind(
        listen: SocketAddr,
        inbound: mpsc::Sender<Inbound>,
        tls: &TlsSettings,
    ) -> Result<Self, String> {
        Self::bind_with(listen, inbound, tls, STREAM_MESSAGE_TIMEOUT).await
    }

    async fn bind_with(
        listen: SocketAddr,
        inbound: mpsc::Sender<Inbound>,
        tls: &TlsSettings,
        message_timeout: std::time::Duration,
    ) -> Result<Self, String> {
        let connector = Arc::new(std::sync::OnceLock::new());
        let acceptor = if tls.enabled {
            let (c, a) = tls_configs(tls)?;
            if let Some(c) = c {
                let _ = connector.set(Ok(c));
            }
            a
        } else {
            None
        };
        let (udp, tcp) = bind_pair(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let local = udp.local_addr().map_err(|e| e.to_string())?;
        let t = Self {
            udp: Arc::new(udp),
            conns: Arc::default(),
            closed: Arc::default(),
            inbound,
            local,
            connector,
            tls: Arc::new(tls.clone()),
            server_name: tls.server_name.clone(),
            names: Arc::default(),
            reuse: Arc::default(),
            message_timeout,
        };
        t.spawn_tcp(tcp, acceptor);
        Ok(t)
    }

    /// From now on, every stream connection that ends (the peer closed or reset it, it could
    /// not be framed, a message did not end in time) is reported here with its transport and
    /// peer, once; the next send to that peer opens a new connection.
    pub fn closed_connections(&self) -> mpsc::UnboundedReceiver<(Proto, SocketAddr)> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut c) = self.closed.lock() {
            *c = Some(tx);
        }
        rx
    }

    /// The reader of the UDP socket's datagrams, for the user agent's own loop: a datagram is
    /// read and parsed in the task that handles it, with no hop through a channel and another
    /// task's wake-up between the INVITE and its 180 (docs/decisions.md D6).
    pub fn datagrams(&self) -> Datagrams {
        Datagrams {
            udp: self.udp.clone(),
            buf: vec![0u8; MAX_MESSAGE + 1],
        }
    }

    fn spawn_tcp(&self, listener: TcpListener, acceptor: Option<TlsAcceptor>) {
        let t = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, from)) = listener.accept().await {
                match &acceptor {
                    None => {
                        t.adopt(stream, from, Proto::Tcp);
                    }
                    Some(acc) => {
                        let (t, acc) = (t.clone(), acc.clone());
                        tokio::spawn(async move {
                            let hs =
                                tokio::time::timeout(std::time::Duration::from_secs(10), acc.accept(stream))
                                    .await;
                            match hs {
                                Ok(Ok(s)) => {
                                    t.adopt(s, from, Proto::Tls);
                                }
                                _ => tracing::debug!(%from, "TLS handshake failed"),
                            }
                        });
                    }
                }
            }
        });
    }

    /// Starts reading and writing a connection.
    fn adopt<S>(&self, stream: S, peer: SocketAddr, proto: Proto) -> mpsc::Sender<Vec<u8>>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
        let heard = Arc::new(Mutex::new(std::time::Instant::now()));
        let kill = Arc::new(tokio::sync::Notify::new());
        if let Ok(mut c) = self.conns.lock() {
            let conn = Conn {
                tx: tx.clone(),
                heard: heard.clone(),
                kill: kill.clone(),
            };
            c.insert((proto, peer), conn);
        }
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
        });
        let t = self.clone();
        let writer = tx.clone();
        let t_timeout = self.message_timeout;
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::with_capacity(4096);
            let mut chunk = vec![0u8; 16 * 1024];
            // When the first byte of the unfinished message in `buf` came.
            let mut started: Option<tokio::time::Instant> = None;
            'conn: loop {
                let read = async {
                    tokio::select! {
                        r = rd.read(&mut chunk) => Some(r),
                        () = kill.notified() => None,
                    }
                };
                let got = match started {
                    Some(t) => match tokio::time::timeout_at(t + t_timeout, read).await {
                        Ok(r) => r,
                        Err(_) => {
                            tracing::debug!(%peer, "closing a connection whose message did not end in time");
                            break;
                        }
                    },
                    None => read.await,
                };
                let n = match got {
                    // Given up by the registration (a dead flow): not reported.
                    None => break,
                    Some(Ok(0) | Err(_)) => break,
                    Some(Ok(n)) => n,
                };
                if let Ok(mut h) = heard.lock() {
                    *h = std::time::Instant::now();
                }
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    // Keep-alive CRLFs between messages: pongs skipped, pings answered.
                    let run = buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
                    for _ in 0..crlf_pings(&buf[..run]) {
                        let _ = writer.send(PONG.to_vec()).await;
                    }
                    buf.drain(..run);
                    match message::frame(&buf) {
                        Ok(None) => break,
                        Ok(Some(len)) => {
                            started = None;
                            let bytes: Vec<u8> = buf.drain(..len).collect();
                            match message::parse(&bytes, true) {
                                Ok((msg, _)) => {
                                    let inb = Inbound {
                                        msg,
                                        from: peer,
                                        proto,
                                    };
                                    if t.inbound.send(inb).await.is_err() {
                                        break 'conn;
                                    }
                                }
                                Err(e) => {
                                    if let Some(resp) =
                                        e.status.and_then(|s| error_response(&bytes, s, &e.message))
                                    {
                                        let _ = writer.send(resp).await;
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "closing a TCP connection that cannot be framed");
                            break 'conn;
                        }
                    }
                }
                if buf.is_empty() {
                    started = None;
                } else if started.is_none() {
                    started = Some(tokio::time::Instant::now());
                }
            }
            // Forget the connection, unless a newer one to the same peer took its place (a
            // send after the old one's writer failed), and report its end.
            let current = t.conns.lock().is_ok_and(|mut c| {
                let ours = c.get(&(proto, peer)).is_some_and(|s| s.tx.same_channel(&writer));
                if ours {
                    c.remove(&(proto, peer));
                }
                ours
            });
            if current && let Some(closed) = t.closed.lock().ok().and_then(|c| c.clone()) {
                let _ = closed.send((proto, peer));
            }
        });
        tx
    }

    /// Is there a live stream connection to `to` (or is `proto` UDP, which needs none)?
    pub fn ready_for(&self, proto: Proto, to: SocketAddr) -> bool {
        proto == Proto::Udp || self.live(proto, to).is_some()
    }

    /// Requests for `target` over the stream `proto` go over the connection from `peer`
    /// while it is up and there is none to `target` itself: a caller that has no server of
    /// its own (a phone without a TLS certificate) is reached at its Contact over the
    /// connection its INVITE came on (RFC 5923's connection reuse, as SIP Outbound does).
    pub fn reuse_for(&self, proto: Proto, target: SocketAddr, peer: SocketAddr) {
        if proto.is_stream()
            && target != peer
            && let Ok(mut r) = self.reuse.lock()
        {
            if r.len() >= 256 {
                // Bounded: the oldest callers' entries go (they are only a shortcut).
                r.clear();
            }
            r.insert((proto, target), peer);
        }
    }

    /// The live connection to `to` over `proto`, else the one reused for it.
    fn live(&self, proto: Proto, to: SocketAddr) -> Option<mpsc::Sender<Vec<u8>>> {
        let peer = self.reuse.lock().ok().and_then(|r| r.get(&(proto, to)).copied());
        let conns = self.conns.lock().ok()?;
        let open = |a: SocketAddr| {
            conns
                .get(&(proto, a))
                .filter(|conn| !conn.tx.is_closed())
                .map(|conn| conn.tx.clone())
        };
        open(to).or_else(|| peer.and_then(open))
    }

    /// Sends a keep-alive ping ([`PING`]) to `to`: a datagram over UDP; over a stream only on
    /// the connection already open (none, or its writer gone: an error, as the flow is dead).
    pub async fn ping(&self, proto: Proto, to: SocketAddr) -> std::io::Result<()> {
        if proto == Proto::Udp {
            return self.udp.send_to(PING, to).await.map(|_| ());
        }
        let conn = self.conns.lock().ok().and_then(|c| c.get(&(proto, to)).cloned());
        let dead = || std::io::Error::new(std::io::ErrorKind::NotConnected, "no connection");
        let conn = conn.ok_or_else(dead)?;
        conn.tx.send(PING.to_vec()).await.map_err(|_| dead())
    }

    /// When bytes last arrived on the stream connection to `to` (None: there is none).
    pub fn heard_from(&self, proto: Proto, to: SocketAddr) -> Option<std::time::Instant> {
        let conn = self.conns.lock().ok()?.get(&(proto, to)).cloned()?;
        conn.heard.lock().ok().map(|h| *h)
    }

    /// Gives up the stream connection to `to` (a dead flow): forgotten, its reader stopped and
    /// the socket closed, not reported to [`Transport::closed_connections`]; the next send
    /// opens a new one. Whether there was one.
    pub fn drop_connection(&self, proto: Proto, to: SocketAddr) -> bool {
        let conn = self.conns.lock().ok().and_then(|mut c| c.remove(&(proto, to)));
        match conn {
            Some(conn) => {
                conn.kill.notify_one();
                true
            }
            None => false,
        }
    }

    /// A TLS connection to `to` must show a certificate for `host` (not the registrar's name).
    pub fn expect_name(&self, to: SocketAddr, host: &str) {
        if let Ok(mut n) = self.names.lock() {
            n.insert(to, host.trim_start_matches('[').trim_end_matches(']').to_owned());
        }
    }

    /// Sends bytes to `to` over `proto` (a TCP connection is opened when there is none).
    pub async fn send(&self, proto: Proto, to: SocketAddr, bytes: Vec<u8>) -> std::io::Result<()> {
        match proto {
            Proto::Udp => self.udp.send_to(&bytes, to).await.map(|_| ()),
            Proto::Tcp | Proto::Tls => {
                let tx = match self.live(proto, to) {
                    Some(tx) => tx,
                    None => {
                        let timeout = std::time::Duration::from_secs(5);
                        let timed_out =
                            || std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
                        let stream = tokio::time::timeout(timeout, TcpStream::connect(to))
                            .await
                            .map_err(|_| timed_out())?
                            .map_err(|e| connect_failure(e, proto))?;
                        if proto == Proto::Tcp {
                            self.adopt(stream, to, proto)
                        } else {
                            let expected = self.names.lock().ok().and_then(|n| n.get(&to).cloned());
                            let name = match expected.as_ref().or(self.server_name.as_ref()) {
                                Some(n) => rustls::pki_types::ServerName::try_from(n.clone())
                                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
                                None => rustls::pki_types::ServerName::IpAddress(to.ip().into()),
                            };
                            let connector = self
                                .connector
                                .get_or_init(|| {
                                    tls_configs(&self.tls)?
                                        .0
                                        .ok_or_else(|| "TLS is not configured".to_owned())
                                })
                                .as_ref()
                                .map_err(|e| {
                                    std::io::Error::new(std::io::ErrorKind::Unsupported, e.clone())
                                })?;
                            let shown = expected
                                .or_else(|| self.server_name.clone())
                                .unwrap_or_else(|| to.ip().to_string());
                            let tls = tokio::time::timeout(timeout, connector.connect(name, stream))
                                .await
                                .map_err(|_| timed_out())?
                                .map_err(|e| std::io::Error::new(e.kind(), tls_failure(&e, &shown)))?;
                            self.adopt(tls, to, proto)
                        }
                    }
                };
                tx.send(bytes)
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection closed"))
            }
        }
    }
}

/// A stream connection that could not be opened: a refusal says that nothing listens there
/// for `proto` (a wrong port, or the server is down); other errors as they are.
fn connect_failure(e: std::io::Error, proto: Proto) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        let what = format!(
            "connection refused: nothing listens for {} there (wrong port, or the server is down)",
            proto.name()
        );
        std::io::Error::new(e.kind(), what)
    } else {
        e
    }
}

/// Why a TLS handshake with `name` failed, in words that say what to fix: the server's
/// certificate expired, names another host, or comes from a CA we do not trust; the server
/// refused our protocol versions; or the rustls error as it is.
pub fn tls_failure(e: &std::io::Error, name: &str) -> String {
    use rustls::{CertificateError as C, Error as E};
    let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return format!("TLS handshake with {name} failed: {}", crate::errors::chain(e));
    };
    let day = |t: &rustls::pki_types::UnixTime| {
        chrono::DateTime::from_timestamp(t.as_secs().min(i64::MAX as u64) as i64, 0).map_or_else(
            || t.as_secs().to_string(),
            |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
    };
    match err {
        E::InvalidCertificate(c) => match c {
            C::Expired => format!("TLS: the certificate of {name} has expired"),
            C::ExpiredContext { not_after, .. } => {
                format!("TLS: the certificate of {name} expired on {}", day(not_after))
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("TLS: the certificate of {name} is not valid yet (check this machine's clock)")
            }
            C::NotValidForName => format!("TLS: the server's certificate is not for {name}"),
            C::NotValidForNameContext { presented, .. } => format!(
                "TLS: the server's certificate is for {}, not {name}",
                if presented.is_empty() {
                    "no name".to_owned()
                } else {
                    presented
                        .iter()
                        .map(|p| bare_name(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            C::UnknownIssuer => format!(
                "TLS: the certificate of {name} is signed by an unknown CA (not in [account] tls_ca or the system's store)"
            ),
            C::Revoked => format!("TLS: the certificate of {name} is revoked"),
            C::BadSignature => format!(
                "TLS: the certificate of {name} has a bad signature: not signed by the trusted CA of that name (another CA with the same name? check [account] tls_ca)"
            ),
            other => format!("TLS: the certificate of {name} is not acceptable: {other:?}"),
        },
        E::AlertReceived(alert) => {
            format!("TLS: {name} refused the handshake ({alert:?}; no TLS version or cipher in common?)")
        }
        E::PeerIncompatible(why) => {
            format!("TLS: {name} has no TLS version or cipher in common with us ({why:?})")
        }
        other => format!("TLS handshake with {name} failed: {other}"),
    }
}

/// A name as rustls presents it (`DnsName("pbx.example")`, `IpAddress(…)`), without the
/// wrapper.
fn bare_name(presented: &str) -> &str {
    match (presented.find("(\""), presented.rfind("\")")) {
        (Some(a), Some(b)) if b > a + 2 => &presented[a + 2..b],
        _ => presented,
    }
}

/// Binds UDP and TCP on the same port (retrying when port 0 picked one TCP cannot have).
async fn bind_pair(listen: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(listen).await?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}

/// What the UDP socket brought: a SIP message, or a STUN datagram (RFC 5626 §4.4.1, RFC 7983:
/// told apart by its first byte and magic cookie) for [`super::stun`].
#[derive(Debug)]
pub enum Datagram {
    Sip(Inbound),
    Stun { data: Vec<u8>, from: SocketAddr },
}

/// Reads the UDP socket: [`Datagrams::recv`] returns the next message, answering the
/// unparseable requests (400, 505) and skipping keep-alives on the way.
pub struct Datagrams {
    udp: Arc<UdpSocket>,
    /// One receive buffer for the socket's life.
    buf: Vec<u8>,
}

impl Datagrams {
    /// The next SIP message or STUN datagram that arrives. Cancel-safe: dropping the future
    /// loses no datagram (nothing is awaited between reading one and returning it).
    pub async fn recv(&mut self) -> Datagram {
        loop {
            let (n, from) = match self.udp.recv_from(&mut self.buf).await {
                Ok(v) => v,
                // ICMP errors surface here on some systems: keep receiving.
                Err(_) => continue,
            };
            let data = &self.buf[..n];
            if data.iter().all(|b| b.is_ascii_whitespace()) {
                continue; // keep-alive
            }
            if super::stun::looks_like_stun(data) {
                return Datagram::Stun {
                    data: data.to_vec(),
                    from,
                };
            }
            match Message::parse(data) {
                Ok(msg) => {
                    return Datagram::Sip(Inbound {
                        msg,
                        from,
                        proto: Proto::Udp,
                    });
                }
                Err(e) => {
                    tracing::debug!(%from, error = %e, "unparseable SIP datagram");
                    if let Some(resp) = e.status.and_then(|s| error_response(data, s, &e.message)) {
                        // Not awaited: a full socket buffer drops it, as the network may.
                        let _ = self.udp.try_send_to(&resp, from);
                    }
                }
            }
        }
    }
}

/// How many keep-alive pings (double CRLFs, RFC 5626 §3.5.1) a run of CR and LF bytes
/// between messages holds: each is answered with a pong; a lone CRLF is a pong (never
/// answered, or two peers would ping-pong forever). A ping split over two reads is seen as
/// two pongs and not answered (the peer's next ping is).
pub fn crlf_pings(run: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = run;
    while let Some(i) = rest.windows(PING.len()).position(|w| w == PING) {
        n += 1;
        rest = &rest[i + PING.len()..];
    }
    n
}

/// A response to a request that could not be parsed, built from whatever Via, From, To,
/// Call-ID and CSeq lines it has; `None` when it is not a request or has none of them.
pub fn error_response(bytes: &[u8], status: u16, why: &str) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.next()?;
    if first.starts_with("SIP/") || first.is_empty() {
        return None;
    }
    let mut out = format!(
        "SIP/2.0 {status} {}\r\n",
        if status == 505 {
            "Version Not Supported"
        } else {
            "Bad Request"
        }
    );
    let mut found = 0;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = message::canonical(name.trim());
            if matches!(name.as_ref(), "Via" | "From" | "To" | "Call-ID" | "CSeq") {
                out.push_str(&format!("{name}: {}\r\n", value.trim()));
                found += 1;
            }
        }
    }
    if found == 0 {
        return None;
    }
    let warning: String = why
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(120)
        .collect();
    out.push_str(&format!(
        "Warning: 399 ctiphone \"{warning}\"\r\nContent-Length: 0\r\n\r\n"
    ));
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_failures_say_what_to_fix() {
        use rustls::pki_types::{ServerName, UnixTime};
        use rustls::{CertificateError as C, Error as E};
        let io = |e: E| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let expired = C::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_609_372_800)),
        };
        let wrong = C::NotValidForNameContext {
            expected: ServerName::try_from("pbx.example").unwrap().to_owned(),
            presented: vec!["DnsName(\"sbc.example\")".into(), "IpAddress(10.0.0.1)".into()],
        };
        let cases = [
            (E::InvalidCertificate(expired), "expired on 2020-12-31 00:00 UTC"),
            (
                E::InvalidCertificate(wrong),
                "is for sbc.example, IpAddress(10.0.0.1), not pbx.example",
            ),
            (E::InvalidCertificate(C::UnknownIssuer), "signed by an unknown CA"),
            (E::InvalidCertificate(C::NotValidYet), "not valid yet"),
            (
                E::AlertReceived(rustls::AlertDescription::ProtocolVersion),
                "pbx.example refused the handshake",
            ),
            (
                E::PeerIncompatible(rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13),
                "no TLS version or cipher in common",
            ),
        ];
        let mut seen = std::collections::HashSet::new();
        for (e, want) in cases {
            let why = tls_failure(&io(e), "pbx.example");
            assert!(why.contains(want), "{why}");
            assert!(why.starts_with("TLS"), "{why}");
            assert!(seen.insert(why.clone()), "each cause has its own words: {why}");
        }
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            tls_failure(&plain, "pbx.example"),
            "TLS handshake with pbx.example failed: reset"
        );
    }

    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_refused_connection_says_nothing_listens_there() {
        use std::io::{Error, ErrorKind};
        let e = connect_failure(Error::from(ErrorKind::ConnectionRefused), Proto::Tls);
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        assert!(e.to_string().contains("nothing listens for TLS there"), "{e}");
        let other = connect_failure(Error::new(ErrorKind::HostUnreachable, "no route"), Proto::Tls);
        assert_eq!(other.to_string(), "no route");
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK1\r\n\
From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    async fn transport(timeout: Duration) -> (Transport, mpsc::Receiver<Inbound>) {
        let (tx, rx) = mpsc::channel(8);
        let listen = "127.0.0.1:0".parse().unwrap();
        let t = Transport::bind_with(listen, tx, &TlsSettings::default(), timeout)
            .await
            .unwrap();
        (t, rx)
    }

    /// Reads until the phone closes the connection; how long that took (None: still open).
    async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut b = [0u8; 1024];
        loop {
            match tokio::time::timeout(limit, s.read(&mut b)).await {
                Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
                Ok(Ok(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    #[tokio::test]
    async fn a_stream_message_that_never_ends_is_closed_after_the_timeout() {
        let (t, mut rx) = transport(Duration::from_millis(300)).await;
        // RFC 4475 clerr: a Content-Length past the bytes sent.
        let clerr = String::from_utf8_lossy(OPTIONS).replace("Content-Length: 0", "Content-Length: 9999");
        let mut s = TcpStream::connect(t.local).await.unwrap();
        s.write_all(clerr.as_bytes()).await.unwrap();
        let took = closed_within(&mut s, Duration::from_secs(5))
            .await
            .expect("closed");
        assert!(took >= Duration::from_millis(250), "closed after {took:?}");
        // A header section that never ends, dripped a byte at a time (each byte in time).
        let mut s = TcpStream::connect(t.local).await.unwrap();
        for b in b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1" {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(closed_within(&mut s, Duration::from_secs(5)).await.is_some());
        assert!(rx.try_recv().is_err(), "nothing was delivered");
    }

    #[tokio::test]
    async fn a_lost_connection_is_reported_once_and_the_next_send_connects_again() {
        let (t, _rx) = transport(Duration::from_secs(5)).await;
        let mut closed = t.closed_connections();
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = peer.local_addr().unwrap();
        let read_some = |mut s: TcpStream| async move {
            let mut b = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
                .await
                .unwrap()
                .unwrap();
            b.truncate(n);
            (s, b)
        };
        assert!(t.ready_for(Proto::Udp, to), "UDP needs no connection");
        assert!(!t.ready_for(Proto::Tcp, to), "no connection yet");
        t.send(Proto::Tcp, to, OPTIONS.to_vec()).await.unwrap();
        assert!(t.ready_for(Proto::Tcp, to));
        let (s1, _) = peer.accept().await.unwrap();
        let (s1, got) = read_some(s1).await;
        assert_eq!(got, OPTIONS);
        // The peer closes the connection (a registrar restarting).
        drop(s1);
        let lost = tokio::time::timeout(Duration::from_secs(5), closed.recv()).await;
        assert_eq!(lost.unwrap(), Some((Proto::Tcp, to)));
        assert!(!t.ready_for(Proto::Tcp, to), "a lost connection is not ready");
        // The next send opens a new connection.
        t.send(Proto::Tcp, to, OPTIONS.to_vec()).await.unwrap();
        let (s2, _) = tokio::time::timeout(Duration::from_secs(5), peer.accept())
            .await
            .expect("a new connection")
            .unwrap();
        let (_s2, got) = read_some(s2).await;
        assert_eq!(got, OPTIONS);
        assert!(closed.try_recv().is_err(), "reported once");
    }

    #[tokio::test]
    async fn a_contact_without_a_server_is_reached_over_the_callers_connection() {
        let (t, mut rx) = transport(Duration::from_secs(5)).await;
        // The caller connects and sends; its Contact names a port where nothing listens.
        let mut caller = TcpStream::connect(t.local).await.unwrap();
        caller.write_all(OPTIONS).await.unwrap();
        let inb = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let contact: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(!t.ready_for(Proto::Tcp, contact));
        t.reuse_for(Proto::Tcp, contact, inb.from);
        assert!(t.ready_for(Proto::Tcp, contact));
        t.send(Proto::Tcp, contact, OPTIONS.to_vec()).await.unwrap();
        let mut b = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), caller.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b[..n], OPTIONS, "over the caller's own connection");
        // Once it is gone, the Contact is connected to as written (and refused here).
        drop(caller);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!t.ready_for(Proto::Tcp, contact));
        let e = t.send(Proto::Tcp, contact, OPTIONS.to_vec()).await.unwrap_err();
        assert!(e.to_string().contains("nothing listens for TCP"), "{e}");
    }

    #[tokio::test]
    async fn an_old_connection_ending_does_not_forget_the_newer_one() {
        let (t, _rx) = transport(Duration::from_secs(5)).await;
        let mut closed = t.closed_connections();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = l.local_addr().unwrap();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // Two connections to the same peer, the second adopted after the first.
        let a = TcpStream::connect(at).await.unwrap();
        let (far_a, _) = l.accept().await.unwrap();
        let b = TcpStream::connect(at).await.unwrap();
        let (mut far_b, _) = l.accept().await.unwrap();
        t.adopt(a, peer, Proto::Tcp);
        t.adopt(b, peer, Proto::Tcp);
        drop(far_a);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            closed.try_recv().is_err(),
            "the replaced connection is not the peer's any more"
        );
        // Sends still go over the newer connection.
        t.send(Proto::Tcp, peer, OPTIONS.to_vec()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), far_b.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], OPTIONS);
        drop(far_b);
        let lost = tokio::time::timeout(Duration::from_secs(5), closed.recv()).await;
        assert_eq!(lost.unwrap(), Some((Proto::Tcp, peer)));
    }

    #[tokio::test]
    async fn an_idle_connection_between_messages_stays_open() {
        let (t, mut rx) = transport(Duration::from_millis(200)).await;
        let mut s = TcpStream::connect(t.local).await.unwrap();
        s.write_all(OPTIONS).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        assert_eq!(first.unwrap().msg.method(), Some("OPTIONS"));
        // Idle (keep-alive CRLFs only) for longer than the timeout: still open.
        s.write_all(b"\r\n\r\n").await.unwrap();
        assert_eq!(closed_within(&mut s, Duration::from_millis(600)).await, None);
        // A message split over two writes, within the timeout, goes through.
        s.write_all(&OPTIONS[..40]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(&OPTIONS[40..]).await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        assert_eq!(second.unwrap().msg.method(), Some("OPTIONS"));
    }

    #[test]
    fn crlf_runs_hold_pings_and_pongs() {
        assert_eq!(crlf_pings(b""), 0);
        assert_eq!(crlf_pings(b"\r\n"), 0, "a pong is not answered");
        assert_eq!(crlf_pings(b"\r\n\r\n"), 1);
        assert_eq!(crlf_pings(b"\r\n\r\n\r\n"), 1, "a ping and a pong");
        assert_eq!(crlf_pings(b"\r\n\r\n\r\n\r\n"), 2);
        assert_eq!(crlf_pings(b"\n\n\r\n"), 0, "bare LFs are skipped, not pings");
    }

    /// Reads what the phone writes within `window`.
    async fn read_for(s: &mut TcpStream, window: Duration) -> Vec<u8> {
        let mut out = Vec::new();
        let mut b = [0u8; 4096];
        let end = tokio::time::Instant::now() + window;
        while let Ok(Ok(n)) = tokio::time::timeout_at(end, s.read(&mut b)).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&b[..n]);
        }
        out
    }

    #[tokio::test]
    async fn a_stream_ping_is_answered_with_a_pong_and_messages_around_it_pass() {
        let (t, mut rx) = transport(Duration::from_secs(5)).await;
        let mut s = TcpStream::connect(t.local).await.unwrap();
        // A ping before the first message, one between two messages in the same write.
        s.write_all(b"\r\n\r\n").await.unwrap();
        assert_eq!(read_for(&mut s, Duration::from_millis(300)).await, PONG);
        let mut two = OPTIONS.to_vec();
        two.extend_from_slice(PING);
        two.extend_from_slice(OPTIONS);
        s.write_all(&two).await.unwrap();
        for _ in 0..2 {
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap();
            assert_eq!(got.unwrap().msg.method(), Some("OPTIONS"));
        }
        assert_eq!(read_for(&mut s, Duration::from_millis(300)).await, PONG);
        // A pong (a lone CRLF) is not answered.
        s.write_all(PONG).await.unwrap();
        assert_eq!(read_for(&mut s, Duration::from_millis(300)).await, b"");
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn our_pings_go_on_the_open_connection_and_its_answers_are_heard() {
        let (t, _rx) = transport(Duration::from_secs(5)).await;
        let mut closed = t.closed_connections();
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = peer.local_addr().unwrap();
        // No connection: a stream ping does not open one (the flow is dead).
        assert!(t.ping(Proto::Tcp, to).await.is_err());
        assert_eq!(t.heard_from(Proto::Tcp, to), None);
        t.send(Proto::Tcp, to, OPTIONS.to_vec()).await.unwrap();
        let (mut far, _) = peer.accept().await.unwrap();
        assert_eq!(read_for(&mut far, Duration::from_millis(200)).await, OPTIONS);
        let before = t.heard_from(Proto::Tcp, to).unwrap();
        t.ping(Proto::Tcp, to).await.unwrap();
        assert_eq!(read_for(&mut far, Duration::from_millis(200)).await, PING);
        far.write_all(PONG).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            t.heard_from(Proto::Tcp, to).unwrap() > before,
            "the pong was heard"
        );
        // Given up: closed on our side, not reported as lost, the next send connects again.
        assert!(t.drop_connection(Proto::Tcp, to));
        assert!(closed_within(&mut far, Duration::from_secs(2)).await.is_some());
        assert!(!t.ready_for(Proto::Tcp, to));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            closed.try_recv().is_err(),
            "a connection given up is not reported"
        );
        t.send(Proto::Tcp, to, OPTIONS.to_vec()).await.unwrap();
        let (mut far2, _) = tokio::time::timeout(Duration::from_secs(5), peer.accept())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_for(&mut far2, Duration::from_millis(200)).await, OPTIONS);
    }

    #[tokio::test]
    async fn crlf_datagrams_are_dropped_quietly_and_udp_pings_are_sent() {
        let (t, _rx) = transport(Duration::from_secs(5)).await;
        let mut dg = t.datagrams();
        let far = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        far.send_to(PING, t.local).await.unwrap();
        far.send_to(PONG, t.local).await.unwrap();
        far.send_to(OPTIONS, t.local).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), dg.recv())
            .await
            .unwrap();
        let Datagram::Sip(got) = got else {
            panic!("not SIP: {got:?}")
        };
        assert_eq!(got.msg.method(), Some("OPTIONS"), "the CRLFs were skipped");
        let mut b = [0u8; 64];
        let answer = tokio::time::timeout(Duration::from_millis(300), far.recv_from(&mut b)).await;
        assert!(answer.is_err(), "nothing answers a CRLF datagram");
        t.ping(Proto::Udp, far.local_addr().unwrap()).await.unwrap();
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), far.recv_from(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&b[..n], from), (PING, t.local));
    }
}
