//! The phone behind NAT (issue 20): network namespaces "agent", "router" and "pbx" made by
//! the test (tests/common/netns.rs: names unique to the run, deleted at the end even on
//! failure), linked by veth pairs with addresses inside these namespaces only (10.77.1.0/24 agent–router, 10.77.2.0/24
//! router–pbx; the host's own interfaces and routes are never touched). The router forwards
//! and masquerades (nftables) towards the pbx, its UDP conntrack timeouts set to 30 s (these
//! sysctls are per network namespace), like a home router forgetting an idle UDP mapping. The
//! pbx has no route to 10.77.1.0/24: only the router's mapping brings anything to the agent.
//!
//! Kamailio runs in "pbx", `ctiphone headless` in "agent", registered over UDP through the NAT
//! with an expiry of 3600 s (no REGISTER refresh for 30 minutes). A call from SIPp in "pbx"
//! through Kamailio right away reaches the agent (the way through the NAT works). After 2
//! minutes idle (four conntrack timeouts) SIPp calls again:
//! - keep-alives on (the default 25 s): the call reaches the agent (`incoming`, answered);
//! - keep-alives off (`keepalive_seconds = 0`): the mapping is gone, the INVITE dies at the
//!   router, the agent sees nothing.
//!
//! The two variants run in parallel, in namespaces of their own.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables), kamailio and sipp: fails loudly without them.

mod common;

use std::time::{Duration, Instant};

use common::netns::{AGENT_IP, Net, PBX_IP, ROUTER_OUT};
use common::peers::{Kamailio, Phone, secs};

/// How long the phone stays idle before the call: the 2 minutes.
const IDLE: Duration = Duration::from_secs(120);

/// Builds the namespaces, registers the agent through the NAT with `keepalive_seconds`, waits
/// [`IDLE`], then has SIPp call it through Kamailio. Whether the call reached the agent.
fn call_after_idle(tag: &str, keepalive: u32) -> bool {
    let net = Net::build(tag);
    let k = Kamailio::start_in_netns(&net.pbx, PBX_IP.parse().unwrap());
    let cfg = format!(
        "[account]\nuri = \"sip:1002@{PBX_IP}\"\nusername = \"1002\"\npassword = \"pw1002\"\n\
         registrar = \"{PBX_IP}:5060\"\ntransport = \"udp\"\nlisten = \"{AGENT_IP}:5060\"\n\
         expires = 3600\nkeepalive_seconds = {keepalive}\n\
         [audio]\ninput = \"null\"\noutput = \"null\"\n"
    );
    let wrapper = ["ip", "netns", "exec", net.agent.as_str()];
    let mut p = Phone::start_wrapped(&cfg, &["--auto-answer"], &wrapper);
    p.expect("registered", secs(10));
    // Kamailio saw the router's address (the NAT), and the phone registered that Contact (a
    // second REGISTER after the first 200 OK showed the address: wait for Kamailio's line).
    let want = format!("CTIPHONE-SAVED 1002 expires=3600 contact=<sip:1002@{ROUTER_OUT}:");
    let deadline = Instant::now() + secs(5);
    let mut saved = k.log();
    while !saved.contains(&want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        saved = k.log();
    }
    assert!(
        saved.contains(&want),
        "registered through the NAT with the router's address:\n{saved}"
    );
    // The way through the NAT works: a call right away reaches the agent (the pbx has no
    // other way to it).
    let (reached, summary) = call_through_kamailio(&net, &mut p, "right after registering");
    eprintln!("[{tag}] right after registering the call {summary}");
    assert!(
        reached,
        "[{tag}] a call right after registering reaches the agent: {summary}"
    );
    let start = Instant::now();
    let idle = p.drain(IDLE);
    eprintln!(
        "[{tag}] keepalive_seconds = {keepalive}: idle {:.0} s, events {idle:?}",
        start.elapsed().as_secs_f64()
    );
    assert!(
        !idle
            .iter()
            .any(|e| e["event"] == "registered" || e["event"] == "incoming"),
        "nothing happened while idle (no REGISTER refresh): {idle:?}"
    );
    let (reached, summary) = call_through_kamailio(&net, &mut p, "after the idle minutes");
    eprintln!("[{tag}] after {IDLE:?} idle the call {summary}");
    drop(p);
    drop(k);
    drop(net);
    reached
}

/// SIPp in "pbx" calls 1002 through Kamailio (authenticating as 1001) and hangs up after 1 s.
/// Whether the agent saw the call (`incoming`; it answers by itself), and what happened, in
/// words. A call that reaches the agent must complete; one that does not must fail at SIPp.
fn call_through_kamailio(net: &Net, p: &mut Phone, when: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut sipp = net.sipp_call("uac_auth_call_bye.xml", 16000, dir.path());
    let mut child = sipp.spawn().expect("spawning sipp");
    let events = p.drain(secs(15));
    let reached = events.iter().any(|e| e["event"] == "incoming");
    let status = child.wait().expect("sipp");
    let log = std::fs::read_to_string(dir.path().join("messages.log")).unwrap_or_default();
    // The responses SIPp received, in order.
    let responses: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("SIP/2.0 "))
        .map(|l| l.trim())
        .collect();
    let summary = format!(
        "{} the agent (sipp exit {:?}, responses {responses:?})",
        if reached { "reached" } else { "did not reach" },
        status.code()
    );
    if reached {
        assert!(
            status.success(),
            "{when}: an answered call completes: {summary}\n{log}"
        );
        assert!(
            events.iter().any(|e| e["event"] == "ended"),
            "{when}: the call ended: {events:?}"
        );
    } else {
        assert!(!status.success(), "{when}: sipp fails the call: {summary}\n{log}");
    }
    (reached, summary)
}

#[test]
fn behind_nat_a_call_after_two_idle_minutes_reaches_the_agent_only_with_keepalives() {
    let on = std::thread::spawn(|| call_after_idle("on", 25));
    let off = std::thread::spawn(|| call_after_idle("off", 0));
    let (on, off) = (on.join(), off.join());
    let on = on.unwrap_or_else(|e| std::panic::resume_unwind(e));
    let off = off.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(
        on,
        "keep-alives on: the call reaches the agent after 2 idle minutes"
    );
    assert!(
        !off,
        "keep-alives off: the NAT forgot the agent, the call does not reach it"
    );
}
