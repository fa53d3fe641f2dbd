//! Raw SIP on the wire for the robustness tests: a UDP socket or TCP connection to the phone
//! that sends bytes as they are and reads the phone's answers (framed by Content-Length on
//! TCP), and readers for a response's status and headers.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// The transport a message is sent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

/// What [`Conn::recv`] got.
pub enum Recv {
    Msg(Vec<u8>),
    Timeout,
    Closed,
}

/// A UDP socket or a TCP connection to the phone.
pub enum Conn {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream, Vec<u8>),
}

impl Conn {
    pub fn open(proto: Proto, to: SocketAddr) -> Conn {
        match proto {
            Proto::Udp => {
                let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
                Conn::Udp(s, to)
            }
            Proto::Tcp => {
                let s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
                    .expect("connect to the phone over TCP");
                s.set_nodelay(true).ok();
                Conn::Tcp(s, Vec::new())
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        match self {
            Conn::Udp(s, to) => {
                s.send_to(bytes, *to).expect("udp send");
            }
            Conn::Tcp(s, _) => {
                // The phone may have closed the connection already; that is for the caller to see.
                let _ = s.write_all(bytes);
            }
        }
    }

    /// The next message from the phone, waiting until `deadline`.
    pub fn recv(&mut self, deadline: Instant) -> Recv {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Recv::Timeout;
            }
            match self {
                Conn::Udp(s, _) => {
                    s.set_read_timeout(Some(left)).unwrap();
                    let mut buf = vec![0u8; 70_000];
                    match s.recv_from(&mut buf) {
                        Ok((n, _)) => return Recv::Msg(buf[..n].to_vec()),
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                            return Recv::Timeout;
                        }
                        // ICMP errors of earlier sends.
                        Err(_) => continue,
                    }
                }
                Conn::Tcp(s, buf) => {
                    if let Some(len) = frame(buf) {
                        return Recv::Msg(buf.drain(..len).collect());
                    }
                    s.set_read_timeout(Some(left)).unwrap();
                    let mut chunk = [0u8; 16 * 1024];
                    match s.read(&mut chunk) {
                        Ok(0) => return Recv::Closed,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                            return Recv::Timeout;
                        }
                        Err(_) => return Recv::Closed,
                    }
                }
            }
        }
    }
}

/// The length of the first complete message in a TCP buffer (the phone always writes
/// Content-Length).
pub fn frame(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let cl: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case("content-length") || n == "l").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= end + cl).then_some(end + cl)
}

/// The status code of a response (`None` for anything else).
pub fn status(raw: &[u8]) -> Option<u16> {
    let line = raw.split(|b| *b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    (parts.next()? == "SIP/2.0").then_some(())?;
    parts.next()?.trim().parse().ok()
}

/// A header of a response the phone wrote (canonical names).
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

pub fn first_line(raw: &[u8]) -> String {
    let line = raw.split(|b| *b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line)
        .trim_end()
        .chars()
        .take(70)
        .collect()
}

impl Conn {
    /// Our local address (the source of what we send).
    pub fn local(&self) -> SocketAddr {
        match self {
            Conn::Udp(s, _) => s.local_addr().unwrap(),
            Conn::Tcp(s, _) => s.local_addr().unwrap(),
        }
    }
}
