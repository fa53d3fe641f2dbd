//! SIP transports: one UDP socket and a TCP listener on the same address, plus outgoing TCP
//! connections. Datagrams are parsed one message each; streams are framed by Content-Length
//! (RFC 3261 §18.3) with a 64 KiB cap. Every parsed message goes to the user agent's channel
//! with where it came from; requests too broken to parse are answered 400 (or 505) here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::message::{self, MAX_MESSAGE, Message};

/// The transport a message travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        }
    }
}

/// A message received, and where to answer.
#[derive(Debug)]
pub struct Inbound {
    pub msg: Message,
    pub from: SocketAddr,
    pub proto: Proto,
}

type Conns = Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>;

/// Sends messages; cheap to clone.
#[derive(Clone, Debug)]
pub struct Transport {
    udp: Arc<UdpSocket>,
    conns: Conns,
    inbound: mpsc::Sender<Inbound>,
    pub local: SocketAddr,
}

impl Transport {
    /// Binds UDP and TCP on `listen` (port 0: one free port for both) and starts receiving.
    pub async fn bind(listen: SocketAddr, inbound: mpsc::Sender<Inbound>) -> std::io::Result<Self> {
        let (udp, tcp) = bind_pair(listen).await?;
        let local = udp.local_addr()?;
        let t = Self {
            udp: Arc::new(udp),
            conns: Arc::default(),
            inbound,
            local,
        };
        t.spawn_udp();
        t.spawn_tcp(tcp);
        Ok(t)
    }

    fn spawn_udp(&self) {
        let t = self.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_MESSAGE + 1];
            loop {
                let (n, from) = match t.udp.recv_from(&mut buf).await {
                    Ok(v) => v,
                    // ICMP errors surface here on some systems: keep receiving.
                    Err(_) => continue,
                };
                let data = &buf[..n];
                if data.iter().all(|b| b.is_ascii_whitespace()) {
                    continue; // keep-alive
                }
                match Message::parse(data) {
                    Ok(msg) => {
                        if t.inbound
                            .send(Inbound {
                                msg,
                                from,
                                proto: Proto::Udp,
                            })
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%from, error = %e, "unparseable SIP datagram");
                        if let Some(resp) = e.status.and_then(|s| error_response(data, s, &e.message)) {
                            let _ = t.udp.send_to(&resp, from).await;
                        }
                    }
                }
            }
        });
    }

    fn spawn_tcp(&self, listener: TcpListener) {
        let t = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, from)) = listener.accept().await {
                t.adopt(stream, from);
            }
        });
    }

    /// Starts reading and writing a connection.
    fn adopt(&self, stream: TcpStream, peer: SocketAddr) -> mpsc::Sender<Vec<u8>> {
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
        if let Ok(mut c) = self.conns.lock() {
            c.insert(peer, tx.clone());
        }
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let t = self.clone();
        let writer = tx.clone();
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::with_capacity(4096);
            let mut chunk = vec![0u8; 16 * 1024];
            'conn: loop {
                let n = match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    // Keep-alive CRLFs between messages.
                    let skip = buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
                    buf.drain(..skip);
                    match message::frame(&buf) {
                        Ok(None) => break,
                        Ok(Some(len)) => {
                            let bytes: Vec<u8> = buf.drain(..len).collect();
                            match message::parse(&bytes, true) {
                                Ok((msg, _)) => {
                                    let inb = Inbound {
                                        msg,
                                        from: peer,
                                        proto: Proto::Tcp,
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
            }
            if let Ok(mut c) = t.conns.lock() {
                c.remove(&peer);
            }
        });
        tx
    }

    /// Sends bytes to `to` over `proto` (a TCP connection is opened when there is none).
    pub async fn send(&self, proto: Proto, to: SocketAddr, bytes: Vec<u8>) -> std::io::Result<()> {
        match proto {
            Proto::Udp => self.udp.send_to(&bytes, to).await.map(|_| ()),
            Proto::Tcp => {
                let existing = self.conns.lock().ok().and_then(|c| c.get(&to).cloned());
                let tx = match existing {
                    Some(tx) if !tx.is_closed() => tx,
                    _ => {
                        let stream =
                            tokio::time::timeout(std::time::Duration::from_secs(5), TcpStream::connect(to))
                                .await
                                .map_err(|_| {
                                    std::io::Error::new(std::io::ErrorKind::TimedOut, "TCP connect timed out")
                                })??;
                        self.adopt(stream, to)
                    }
                };
                tx.send(bytes)
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection closed"))
            }
        }
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
            if matches!(name.as_str(), "Via" | "From" | "To" | "Call-ID" | "CSeq") {
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
