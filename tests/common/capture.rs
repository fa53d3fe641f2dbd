//! Packets on the loopback interface, as a stranger on the path sees them: `tcpdump` writes a
//! capture file while a test runs, and a small reader of the classic pcap format gives back each
//! IPv4 UDP datagram (ports and payload).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running capture.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

/// One UDP datagram seen on the wire.
#[derive(Clone, Debug)]
pub struct Datagram {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

impl Capture {
    /// Starts capturing UDP on `lo` to or from any of `ports`; returns once tcpdump listens.
    pub fn udp_ports(ports: &[u16]) -> Capture {
        let bin = ["/usr/bin/tcpdump", "/usr/sbin/tcpdump"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("tcpdump is not installed: apt-get install -y tcpdump (tests/run.sh installs it)");
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("lo.pcap");
        let log = dir.path().join("tcpdump.log");
        let filter = ports
            .iter()
            .map(|p| format!("port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let child = Command::new(bin)
            .args(["-i", "lo", "-U", "-n", "-s", "0", "-w"])
            .arg(&file)
            .arg(format!("udp and ({filter})"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawning tcpdump");
        let end = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("listening on")
        {
            assert!(
                Instant::now() < end,
                "tcpdump did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Capture {
            child: Some(child),
            file,
            _dir: dir,
        }
    }

    /// Stops the capture and reads what it saw.
    pub fn finish(mut self) -> Vec<Datagram> {
        if let Some(mut c) = self.child.take() {
            // SIGINT: tcpdump flushes and closes the file.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let _ = c.wait();
        }
        read_pcap(&std::fs::read(&self.file).expect("the capture file"))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The IPv4 UDP datagrams of a classic pcap file (link types Ethernet, Linux cooked v1, raw IP).
pub fn read_pcap(bytes: &[u8]) -> Vec<Datagram> {
    let mut out = Vec::new();
    if bytes.len() < 24 {
        return out;
    }
    let le = match bytes[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("not a pcap file"),
    };
    let u32_at = |b: &[u8], i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let link = u32_at(bytes, 20);
    let l2 = match link {
        1 => 14,   // Ethernet
        113 => 16, // Linux cooked v1
        101 => 0,  // raw IP
        other => panic!("pcap link type {other} not handled"),
    };
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32_at(bytes, at + 8) as usize;
        let start = at + 16;
        let Some(frame) = bytes.get(start..start + len) else {
            break;
        };
        at = start + len;
        let Some(ip) = frame.get(l2..) else { continue };
        if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
            continue;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let Some(udp) = ip.get(ihl..) else { continue };
        if udp.len() < 8 {
            continue;
        }
        out.push(Datagram {
            src_port: u16::from_be_bytes([udp[0], udp[1]]),
            dst_port: u16::from_be_bytes([udp[2], udp[3]]),
            payload: udp[8..].to_vec(),
        });
    }
    out
}
