//! Locating SIP servers (RFC 3263 §4): the ordered list of addresses to try for the registrar,
//! the outbound proxy and dialled domains.
//!
//! A host that is an IP literal, or that comes with an explicit port, is looked up for A/AAAA
//! only. Otherwise: NAPTR (services `SIP+D2U`, `SIP+D2T`, `SIPS+D2T` picked by the configured
//! transport), then SRV (`_sip._udp`, `_sip._tcp`, `_sips._tcp`) ordered by priority with
//! weighted random order inside a priority (RFC 2782), then A/AAAA of each target; no SRV
//! records: A/AAAA of the host on 5060 (5061 over TLS).
//!
//! The DNS client is hickory-resolver (docs/decisions.md D8). `[account] dns_servers` sets the
//! servers asked; without it the system's (`/etc/resolv.conf`) answer NAPTR and SRV and the
//! system's own lookup (`/etc/hosts`, nsswitch) answers A/AAAA, as before.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use rand::Rng;

use super::transport::Proto;

/// An SRV record (RFC 2782), its target as a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// The DNS client for server location; cheap to clone (the cache is shared).
#[derive(Clone)]
pub struct Resolver {
    /// `None`: no DNS configuration could be read (no NAPTR/SRV, the system's lookup only).
    dns: Option<TokioResolver>,
    /// `[account] dns_servers` given: A/AAAA asked of them too (not of the system).
    custom: bool,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("dns", &self.dns.is_some())
            .field("custom", &self.custom)
            .finish()
    }
}

/// Parses a `dns_servers` entry: `IP:port`, `[IPv6]:port` or a bare IP (port 53).
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("`{s}` is not an IP address or IP:port"))
}

impl Resolver {
    /// A resolver asking `servers` (over UDP, then TCP), or the system's when there are none.
    pub fn new(servers: &[SocketAddr]) -> Self {
        if servers.is_empty() {
            let dns = TokioResolver::builder_tokio().and_then(|b| b.build());
            if let Err(e) = &dns {
                tracing::info!(error = %e, "no DNS configuration: no NAPTR/SRV lookups");
            }
            return Self {
                dns: dns.ok(),
                custom: false,
            };
        }
        let name_servers = servers
            .iter()
            .map(|a| {
                let mut udp = ConnectionConfig::udp();
                udp.port = a.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = a.port();
                NameServerConfig::new(a.ip(), true, vec![udp, tcp])
            })
            .collect();
        let config = ResolverConfig::from_parts(None, Vec::new(), name_servers);
        let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        let opts = builder.options_mut();
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        opts.use_hosts_file = ResolveHosts::Never;
        let dns = builder.build();
        if let Err(e) = &dns {
            tracing::warn!(error = %e, "cannot set up the DNS client for dns_servers");
        }
        Self {
            dns: dns.ok(),
            custom: true,
        }
    }

    /// The addresses to try for `host` (and an explicit `port`, if any) over `proto`, the most
    /// preferred first (RFC 3263 §4). An error when there are none.
    pub async fn locate(
        &self,
        host: &str,
        port: Option<u16>,
        proto: Proto,
    ) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let default_port = if proto == Proto::Tls { 5061 } else { 5060 };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port.unwrap_or(default_port))]);
        }
        if let Some(p) = port {
            return self.addresses(host, p).await;
        }
        let mut out: Vec<SocketAddr> = Vec::new();
        for srv in self.srv_records(host, proto).await {
            match self.addresses(&srv.target, srv.port).await {
                Ok(addrs) => {
                    for a in addrs {
                        if !out.contains(&a) {
                            out.push(a);
                        }
                    }
                }
                Err(e) => tracing::debug!(target = %srv.target, error = %e, "SRV target without address"),
            }
        }
        if out.is_empty() {
            out = self.addresses(host, default_port).await?;
        }
        Ok(out)
    }

    /// The SRV records for `host` over `proto`, in the order to try (NAPTR first: its
    /// replacement names for our transport, else the usual SRV name).
    async fn srv_records(&self, host: &str, proto: Proto) -> Vec<Srv> {
        let Some(dns) = &self.dns else {
            return Vec::new();
        };
        let fqdn = fqdn(host);
        let mut names = Vec::new();
        if let Ok(l) = dns.lookup(fqdn.as_str(), RecordType::NAPTR).await {
            let mut naptr: Vec<(u16, u16, String)> = l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::NAPTR(n)
                        if n.flags.eq_ignore_ascii_case(b"s")
                            && n.services.eq_ignore_ascii_case(naptr_service(proto).as_bytes()) =>
                    {
                        Some((n.order, n.preference, n.replacement.to_ascii()))
                    }
                    _ => None,
                })
                .collect();
            naptr.sort();
            names.extend(naptr.into_iter().map(|(_, _, n)| n));
        }
        if names.is_empty() {
            names.push(format!("{}.{fqdn}", srv_prefix(proto)));
        }
        let mut out = Vec::new();
        for name in names {
            let Ok(l) = dns.lookup(name.as_str(), RecordType::SRV).await else {
                continue;
            };
            let recs: Vec<Srv> = l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some(Srv {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: s.target.to_ascii(),
                    }),
                    _ => None,
                })
                .collect();
            out.extend(order_srv(recs, &mut rand::rng()));
        }
        out
    }

    /// A/AAAA of `host`, on `port`.
    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if self.custom
            && let Some(dns) = &self.dns
        {
            let ips = dns
                .lookup_ip(fqdn(host).as_str())
                .await
                .map_err(|e| format!("cannot resolve `{host}`: {e}"))?;
            let v: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, port)).collect();
            if v.is_empty() {
                return Err(format!("`{host}` has no address"));
            }
            return Ok(v);
        }
        let v: Vec<SocketAddr> = tokio::net::lookup_host((host.trim_end_matches('.'), port))
            .await
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .collect();
        if v.is_empty() {
            return Err(format!("`{host}` has no address"));
        }
        Ok(v)
    }
}

/// Whether `host` (with `port` if one was given) goes through NAPTR/SRV: not for an IP literal
/// nor with an explicit port (RFC 3263 §4.2).
pub fn uses_srv(host: &str, port: Option<u16>) -> bool {
    port.is_none()
        && host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_err()
}

fn fqdn(host: &str) -> String {
    if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    }
}

/// The NAPTR service for a transport (RFC 3263 §4.1).
fn naptr_service(proto: Proto) -> &'static str {
    match proto {
        Proto::Udp => "SIP+D2U",
        Proto::Tcp => "SIP+D2T",
        Proto::Tls => "SIPS+D2T",
    }
}

/// The SRV name's prefix for a transport (RFC 3263 §4.2).
fn srv_prefix(proto: Proto) -> &'static str {
    match proto {
        Proto::Udp => "_sip._udp",
        Proto::Tcp => "_sip._tcp",
        Proto::Tls => "_sips._tcp",
    }
}

/// RFC 2782's order: by priority (lowest first); inside a priority, a weighted random order
/// (zero weights first, each pick with a chance proportional to its weight among those left).
/// A target of `.` (the service is not offered there) is left out.
pub fn order_srv<R: Rng + ?Sized>(mut recs: Vec<Srv>, rng: &mut R) -> Vec<Srv> {
    recs.retain(|r| r.target != "." && !r.target.is_empty());
    recs.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(recs.len());
    while !recs.is_empty() {
        let prio = recs[0].priority;
        let n = recs.iter().take_while(|r| r.priority == prio).count();
        let mut group: Vec<Srv> = recs.drain(..n).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = rng.random_range(0..=total);
            let mut sum = 0u32;
            let i = group
                .iter()
                .position(|r| {
                    sum += u32::from(r.weight);
                    sum >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(i));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    #[test]
    fn priority_first() {
        let mut rng = StdRng::seed_from_u64(1);
        let recs = vec![
            srv(20, 5, "b."),
            srv(10, 5, "a."),
            srv(30, 0, "c."),
            srv(10, 0, "."),
        ];
        let order: Vec<String> = order_srv(recs, &mut rng).into_iter().map(|r| r.target).collect();
        assert_eq!(order, ["a.", "b.", "c."]);
    }

    #[test]
    fn weights_share_the_first_place() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut first = [0u32; 3];
        for _ in 0..10_000 {
            let recs = vec![
                srv(10, 60, "a."),
                srv(10, 30, "b."),
                srv(10, 10, "c."),
                srv(20, 100, "z."),
            ];
            let o = order_srv(recs, &mut rng);
            assert_eq!(o.len(), 4);
            assert_eq!(o[3].target, "z.", "a lower priority never comes before");
            first[["a.", "b.", "c."].iter().position(|t| *t == o[0].target).unwrap()] += 1;
        }
        // 60/30/10 %, give or take.
        assert!((5_600..6_400).contains(&first[0]), "{first:?}");
        assert!((2_600..3_400).contains(&first[1]), "{first:?}");
        assert!((700..1_300).contains(&first[2]), "{first:?}");
    }

    #[test]
    fn zero_weights_still_come() {
        let mut rng = StdRng::seed_from_u64(3);
        let o = order_srv(vec![srv(1, 0, "a."), srv(1, 0, "b.")], &mut rng);
        assert_eq!(o.len(), 2);
    }

    #[test]
    fn ip_literals_and_explicit_ports_skip_srv() {
        assert!(!uses_srv("192.0.2.1", None));
        assert!(!uses_srv("[2001:db8::1]", None));
        assert!(!uses_srv("pbx.example", Some(5070)));
        assert!(uses_srv("pbx.example", None));
    }

    #[tokio::test]
    async fn literal_and_port_need_no_dns() {
        // A resolver pointed at a server that is not there: the answers must come without it.
        let r = Resolver::new(&["127.0.0.1:9".parse().unwrap()]);
        let a = r.locate("192.0.2.1", None, Proto::Udp).await.unwrap();
        assert_eq!(a, ["192.0.2.1:5060".parse().unwrap()]);
        let a = r.locate("[::1]", Some(5070), Proto::Tls).await.unwrap();
        assert_eq!(a, ["[::1]:5070".parse().unwrap()]);
        let a = r.locate("192.0.2.1", None, Proto::Tls).await.unwrap();
        assert_eq!(a, ["192.0.2.1:5061".parse().unwrap()]);
    }

    #[test]
    fn dns_server_entries() {
        assert_eq!(
            parse_dns_server("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(parse_dns_server("::1"), Ok("[::1]:53".parse().unwrap()));
        assert_eq!(parse_dns_server("10.0.0.1"), Ok("10.0.0.1:53".parse().unwrap()));
        assert!(parse_dns_server("dns.example").is_err());
    }
}
