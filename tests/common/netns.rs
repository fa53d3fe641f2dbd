//! The NAT topology of the issue-20 tests (tests/sip_nat.rs, tests/sip_stun.rs): network
//! namespaces "agent", "router" and "pbx" made by the test (names unique to the run, deleted
//! on drop even on failure), linked by veth pairs with addresses inside these namespaces only
//! (10.77.1.0/24 agent–router, 10.77.2.0/24 router–pbx; the host's own interfaces and routes
//! are never touched). The router forwards and masquerades (nftables) towards the pbx, its
//! UDP conntrack timeouts 30 s (per-namespace sysctls). The pbx has no route to 10.77.1.0/24:
//! only the router's mappings bring anything to the agent. Needs root, `ip` and `nft`.

use std::process::Command;

use super::peers::peer_bin;

pub const AGENT_IP: &str = "10.77.1.2";
pub const ROUTER_IN: &str = "10.77.1.1";
pub const ROUTER_OUT: &str = "10.77.2.1";
pub const PBX_IP: &str = "10.77.2.2";

/// Runs `ip netns exec NS ARGS…` (or `ip ARGS…` without NS) and panics when it fails.
pub fn run(ns: Option<&str>, args: &[&str]) {
    let mut cmd = Command::new(peer_bin("ip"));
    if let Some(ns) = ns {
        cmd.args(["netns", "exec", ns]);
    }
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{}ip {args:?} failed: {}",
        ns.map(|n| format!("(in {n}) ")).unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The three namespaces of one test variant; deleted on drop (their veths go with them).
pub struct Net {
    pub agent: String,
    pub router: String,
    pub pbx: String,
}

impl Net {
    /// The topology with the router masquerading everything from the agent.
    pub fn build(tag: &str) -> Net {
        Self::build_with(tag, "")
    }

    /// As [`Net::build`], `nat_rules` (nftables statements) in the router's postrouting chain
    /// before its catch-all masquerade (e.g. a fixed port mapping).
    pub fn build_with(tag: &str, nat_rules: &str) -> Net {
        remove_stale();
        let name = |role: &str| format!("ctp-{role}-{}-{tag}", std::process::id());
        let net = Net {
            agent: name("agent"),
            router: name("router"),
            pbx: name("pbx"),
        };
        for ns in [&net.agent, &net.router, &net.pbx] {
            run(None, &["netns", "add", ns]);
        }
        let (a, r, p) = (net.agent.as_str(), net.router.as_str(), net.pbx.as_str());
        // The veth pairs are made inside the router's namespace, their far ends moved at once
        // into the agent's and the pbx's: nothing is made in the host's.
        run(
            Some(r),
            &[
                "ip", "link", "add", "ra", "type", "veth", "peer", "name", "ar", "netns", a,
            ],
        );
        run(
            Some(r),
            &[
                "ip", "link", "add", "rp", "type", "veth", "peer", "name", "pr", "netns", p,
            ],
        );
        for (ns, dev, addr) in [
            (a, "ar", "10.77.1.2/24"),
            (r, "ra", "10.77.1.1/24"),
            (r, "rp", "10.77.2.1/24"),
            (p, "pr", "10.77.2.2/24"),
        ] {
            run(Some(ns), &["ip", "addr", "add", addr, "dev", dev]);
            run(Some(ns), &["ip", "link", "set", dev, "up"]);
        }
        for ns in [a, r, p] {
            run(Some(ns), &["ip", "link", "set", "lo", "up"]);
        }
        run(Some(a), &["ip", "route", "add", "default", "via", ROUTER_IN]);
        let nft = peer_bin("nft");
        let rules = format!(
            "table ip nat {{\n chain post {{\n  type nat hook postrouting priority srcnat;\n  \
             {nat_rules}\n  oifname \"rp\" masquerade\n }}\n}}\n"
        );
        let rules_file = std::env::temp_dir().join(format!("{r}.nft"));
        std::fs::write(&rules_file, &rules).unwrap();
        let out = Command::new(peer_bin("ip"))
            .args(["netns", "exec", r])
            .arg(&nft)
            .arg("-f")
            .arg(&rules_file)
            .output()
            .expect("running nft");
        let _ = std::fs::remove_file(&rules_file);
        assert!(
            out.status.success(),
            "nft in {r}: {}\n{rules}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Per-namespace sysctls (checked on Linux 6.x: the host's values are left as they are).
        run(
            Some(r),
            &[
                "sysctl",
                "-w",
                "net.ipv4.ip_forward=1",
                "net.netfilter.nf_conntrack_udp_timeout=30",
                "net.netfilter.nf_conntrack_udp_timeout_stream=30",
            ],
        );
        net
    }
}

/// Deletes the namespaces of earlier runs of these tests that were killed before their guard
/// ran (`ctp-ROLE-PID-TAG` whose PID is gone).
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix("ctp-").and_then(|r| r.split('-').nth(1));
        if let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok())
            && pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

impl Net {
    /// SIPp in "pbx" running `scenario` (tests/peers) once against Kamailio at
    /// `PBX_IP:5060`, calling 1002, its media on `media_port`, its messages traced into
    /// `dir/messages.log`; output silenced, ready to spawn.
    pub fn sipp_call(&self, scenario: &str, media_port: u16, dir: &std::path::Path) -> Command {
        let mut sipp = Command::new(peer_bin("ip"));
        sipp.args(["netns", "exec", &self.pbx])
            .arg(peer_bin("sipp"))
            .arg("-sf")
            .arg(super::peers::scenario_path(scenario))
            .arg(format!("{PBX_IP}:5060"))
            .args(["-s", "1002", "-i", PBX_IP, "-p", "5070", "-mi", PBX_IP, "-mp"])
            .arg(media_port.to_string())
            .args(["-ci", "127.0.0.1", "-cp", "8888", "-m", "1", "-nostdin"])
            .args(["-timeout", "20s", "-timeout_error", "-trace_msg", "-message_file"])
            .arg(dir.join("messages.log"))
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        sipp
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.agent, &self.router, &self.pbx] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
