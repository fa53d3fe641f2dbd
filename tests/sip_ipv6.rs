//! IPv6 (issue 20): Kamailio on [::1] only, two phones on [::1] registering with digest auth
//! and calling each other through it, over UDP and over TCP; the SDP says `IN IP6` and a tone
//! crosses the call (checked by frequency at the callee).

mod common;

use serde_json::json;

use common::peers::{Kamailio, Phone, secs};
use ctiphone::media::goertzel;

fn phone(k: &Kamailio, user: &str, transport: &str, args: &[&str]) -> Phone {
    let cfg = format!(
        "[account]\nuri = \"sip:{user}@{reg}\"\nusername = \"{user}\"\npassword = \"pw{user}\"\n\
         registrar = \"{reg}\"\ntransport = \"{transport}\"\nlisten = \"[::1]:0\"\nexpires = 60\n\
         [audio]\ninput = \"null\"\noutput = \"null\"\ncodecs = [\"PCMU\"]\nring = false\n",
        reg = k.addr()
    );
    Phone::start(&cfg, args)
}

fn call_over(transport: &str) {
    let k = Kamailio::start_v6();
    assert!(k.addr().starts_with("[::1]:"), "{}", k.addr());
    let dir = tempfile::tempdir().expect("temp dir");
    let (mic, heard) = (dir.path().join("mic.wav"), dir.path().join("heard.wav"));
    common::tone(&mic, 440.0, 8000, 10);
    let mut callee = phone(
        &k,
        "1002",
        transport,
        &["--auto-answer=100", &format!("--audio-out={}", heard.display())],
    );
    let mut caller = phone(&k, "1001", transport, &[&format!("--audio-in={}", mic.display())]);
    assert!(callee.listen().starts_with("[::1]:"), "{}", callee.listen());
    callee.expect("registered", secs(10));
    caller.expect("registered", secs(10));
    k.wait_saved("1002", 1, secs(5));
    let proto = if transport == "udp" { "udp" } else { "tcp" };
    let saved = k.request_lines("REGISTER");
    assert!(
        saved
            .iter()
            .all(|l| l.contains(&format!("src={proto}:::1:")) || l.contains(&format!("src={proto}:[::1]:"))),
        "{saved:?}"
    );
    caller.send(json!({"cmd": "dial", "to": "1002"}));
    callee.expect("incoming", secs(10));
    caller.expect("answered", secs(10));
    std::thread::sleep(secs(3));
    caller.send(json!({"cmd": "hangup"}));
    caller.expect("ended", secs(5));
    callee.expect("ended", secs(5));
    callee.send(json!({"cmd": "quit"}));
    let _ = callee.wait_exit(secs(3));
    let (samples, rate) = common::wav_channel(&heard, 0);
    let skip = rate as usize / 2;
    assert!(samples.len() > 3 * skip, "only {} samples", samples.len());
    let snr = goertzel::tone_snr_db(&samples[skip..samples.len() - skip], rate, 440.0);
    assert!(snr >= 15.0, "{transport}: 440 Hz at {snr:.1} dB");
    let log = k.log();
    assert!(log.contains("INVITE"), "{log}");
}

#[test]
fn register_and_call_over_ipv6_udp() {
    call_over("udp");
}

#[test]
fn register_and_call_over_ipv6_tcp() {
    call_over("tcp");
}
