//! DNS per RFC 3263 (issue 20): dnsmasq on a loopback port serves NAPTR and SRV records for
//! `pbx.test` pointing at two Kamailio registrars (SRV priorities 10 and 20); a phone with
//! `registrar = "pbx.test"` and `dns_servers` set to dnsmasq registers on the first; the first
//! stopped, it fails over to the second within one refresh interval and a call through it works;
//! the first back, the phone registers there again (failback); the first stopped again, a call
//! placed at once goes to it, gets no answer and is sent to the second (INVITE failover).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::peers::{Kamailio, Phone, free_port_both, secs, wait_bound};

/// dnsmasq in the foreground on 127.0.0.1:`port`, killed on drop.
struct Dnsmasq {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    fn start(records: &[String]) -> (Self, u16) {
        let bin = Path::new("/usr/sbin/dnsmasq");
        assert!(
            bin.exists(),
            "dnsmasq is not installed: apt-get install -y dnsmasq-base (tests/run.sh installs it)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("dnsmasq.log");
        let port = free_port_both();
        let out = std::fs::File::create(&log).expect("dnsmasq log");
        let err = out.try_clone().expect("dnsmasq log");
        let child = Command::new(bin)
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--user=root",
                "--log-queries",
                "--log-facility=-",
                // Authoritative for .test: what is not here does not exist (no upstream wait).
                "--local=/test/",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .args(records)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start dnsmasq");
        wait_bound("udp", port, secs(5), "dnsmasq");
        (
            Self {
                child,
                log,
                _dir: dir,
            },
            port,
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server(ev: &Value) -> String {
    ev["server"].as_str().unwrap_or_default().to_owned()
}

/// The next `registered` event naming `addr`, within `timeout`.
fn registered_at(p: &mut Phone, addr: &str, timeout: Duration) -> Value {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "not registered at {addr} within {timeout:?}");
        let ev = p.expect("registered", left);
        if server(&ev) == addr {
            return ev;
        }
    }
}

#[test]
fn srv_failover_and_failback() {
    let started = Instant::now();
    let mut k1 = Kamailio::start();
    let k2 = Kamailio::start();
    let (dns, dns_port) = Dnsmasq::start(&[
        // NAPTR: UDP goes to the usual SRV name; a TCP entry the phone (on UDP) must skip.
        "--naptr-record=pbx.test,10,10,s,SIP+D2U,,_sip._udp.pbx.test".into(),
        "--naptr-record=pbx.test,5,10,s,SIP+D2T,,_sip._tcp.nowhere.test".into(),
        format!("--srv-host=_sip._udp.pbx.test,kam1.test,{},10,0", k1.port),
        format!("--srv-host=_sip._udp.pbx.test,kam2.test,{},20,0", k2.port),
        "--host-record=kam1.test,127.0.0.1".into(),
        "--host-record=kam2.test,127.0.0.1".into(),
    ]);
    let (a1, a2) = (k1.addr(), k2.addr());
    // expires 20: refreshed (and, on the backup, the first tried again) every 10 s.
    let caller_cfg = format!(
        "[account]\nuri = \"sip:1001@pbx.test\"\nusername = \"1001\"\npassword = \"pw1001\"\n\
         registrar = \"pbx.test\"\ntransport = \"udp\"\nlisten = \"127.0.0.1:0\"\nexpires = 20\n\
         dns_servers = [\"127.0.0.1:{dns_port}\"]\n\
         [audio]\ninput = \"null\"\noutput = \"null\"\ncodecs = [\"PCMU\"]\nring = false\n"
    );
    let mut caller = Phone::start(&caller_cfg, &[]);
    let ev = caller.expect("registered", secs(10));
    assert_eq!(
        server(&ev),
        a1,
        "registered on the SRV record of priority 10: {ev}"
    );
    k1.wait_saved("1001", 1, secs(5));
    assert_eq!(k2.saved("1001"), 0, "nothing registered on the backup yet");
    let log = dns.log();
    assert!(log.contains("query[NAPTR] pbx.test"), "{log}");
    assert!(log.contains("query[SRV] _sip._udp.pbx.test"), "{log}");

    // The callee, registered on the second Kamailio by its address.
    let callee_cfg = format!(
        "[account]\nuri = \"sip:1002@pbx.test\"\nusername = \"1002\"\npassword = \"pw1002\"\n\
         registrar = \"{a2}\"\ntransport = \"udp\"\nlisten = \"127.0.0.1:0\"\nexpires = 60\n\
         [audio]\ninput = \"null\"\noutput = \"null\"\ncodecs = [\"PCMU\"]\nring = false\n"
    );
    let mut callee = Phone::start(&callee_cfg, &["--auto-answer"]);
    callee.expect("registered", secs(10));

    // The first stops: the next refresh (≤ 10 s) gets no answer within 5 s, the second now.
    k1.stop();
    let t = Instant::now();
    let ev = registered_at(&mut caller, &a2, secs(20));
    let took = t.elapsed();
    assert!(took <= secs(17), "failover took {took:?}");
    k2.wait_saved("1001", 1, secs(5));
    let warned = caller
        .seen()
        .iter()
        .any(|e| e["event"] == "warning" && e.to_string().contains("failing over to"));
    assert!(warned, "a warning names the failover: {:?}", caller.seen());
    eprintln!("failover after {took:?}: {ev}");

    // A call through the second.
    caller.send(json!({"cmd": "dial", "to": "1002"}));
    callee.expect("incoming", secs(10));
    caller.expect("answered", secs(10));
    caller.send(json!({"cmd": "hangup"}));
    caller.expect("ended", secs(5));
    callee.expect("ended", secs(5));
    assert!(k2.requests("INVITE") >= 1, "{}", k2.log());

    // The first comes back: the next refresh goes there first (failback).
    k1.restart();
    let t = Instant::now();
    registered_at(&mut caller, &a1, secs(25));
    k1.wait_saved("1001", 1, secs(5));
    eprintln!("failback after {:?}", t.elapsed());

    // INVITE failover: the first stops again and a call goes out at once, to it; no answer
    // (not even 100 Trying) within 5 s, the INVITE goes to the second, which puts it through.
    k1.stop();
    let invites = k2.requests("INVITE");
    let t = Instant::now();
    caller.send(json!({"cmd": "dial", "to": "1002"}));
    callee.expect("incoming", secs(15));
    caller.expect("answered", secs(10));
    eprintln!("call answered through the backup after {:?}", t.elapsed());
    let warned = caller
        .seen()
        .iter()
        .any(|e| e["event"] == "warning" && e.to_string().contains(&format!("trying {a2}")));
    assert!(
        warned,
        "a warning names the INVITE's next target: {:?}",
        caller.seen()
    );
    assert!(k2.requests("INVITE") > invites, "{}", k2.log());
    caller.send(json!({"cmd": "hangup"}));
    caller.expect("ended", secs(5));
    callee.expect("ended", secs(5));
    eprintln!("the whole test took {:?}", started.elapsed());
    caller.send(json!({"cmd": "quit"}));
    let _ = caller.wait_exit(secs(3));
}

#[test]
fn a_dns_server_that_is_not_an_address_is_a_located_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[account]\ndns_servers = [\"ns.example\"]\n").expect("write");
    let out = Command::new(common::peers::ctiphone_bin())
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .expect("run ctiphone");
    let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("c.toml:2:15: `[account] dns_servers`: `ns.example` is not an IP address or IP:port"),
        "{err}"
    );
}
