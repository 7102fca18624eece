//! Who the client is, for the per-IP limit: the TCP peer, or, when the peer is one
//! of our own proxies (`API_TRUSTED_PROXIES`), the address it says it forwarded for.
//!
//! `X-Forwarded-For` is a list every proxy appends to, so anyone can put anything at
//! its left. It is read from the right: the rightmost address our trusted proxies did
//! not themselves add is the client. From an untrusted peer the header is ignored,
//! so a client cannot choose its own bucket.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The CIDRs of the proxies (ingress controllers, load balancers) whose
/// `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of CIDRs or single addresses; empty trusts nobody.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{p:?} is not a CIDR (e.g. 10.0.0.0/8) or an IP address"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl TrustedProxies {
    /// Whether `ip` is one of ours.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether any proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client's address: `peer`, or what trusted proxies forwarded for.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        // Header lines in order, each a comma-separated list: walk the whole list from the right.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.into_iter().rev() {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The key an address is limited under: an IPv4 address, or an IPv6 /64 (one
/// subscriber's usual allocation; per address, one host could rotate through 2^64 keys).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_address() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        assert_eq!(trusted.client(ip("203.0.113.9"), &headers(&["1.1.1.1"])), ip("203.0.113.9"));
        assert_eq!(TrustedProxies::default().client(ip("10.1.1.1"), &headers(&["1.1.1.1"])), ip("10.1.1.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8, 192.168.1.1".parse().unwrap();
        let peer = ip("10.0.0.7");
        // A client-supplied "6.6.6.6" at the left is not believed.
        assert_eq!(
            trusted.client(peer, &headers(&["6.6.6.6, 198.51.100.4, 192.168.1.1"])),
            ip("198.51.100.4")
        );
        assert_eq!(trusted.client(peer, &headers(&["6.6.6.6", "198.51.100.4:4711"])), ip("198.51.100.4"));
        assert_eq!(trusted.client(peer, &headers(&[])), peer, "no header: the proxy itself");
        assert_eq!(trusted.client(peer, &headers(&["10.2.2.2"])), ip("10.2.2.2"), "all ours: the leftmost");
        assert_eq!(trusted.client(peer, &headers(&["garbage, 10.2.2.2"])), ip("10.2.2.2"));
        assert_eq!(trusted.client(ip("::ffff:10.0.0.7"), &headers(&["[2001:db8::1]:80"])), ip("2001:db8::1"));
    }

    #[test]
    fn lists_parse_and_bad_entries_are_refused() {
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        assert!("10.0.0.0/8,fd00::/8".parse::<TrustedProxies>().unwrap().contains(ip("fd00::1")));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("proxy.local".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:3:4:5:6")), limit_key(ip("2001:db8:1:2:ffff::1")));
        assert_ne!(limit_key(ip("2001:db8:1:2::1")), limit_key(ip("2001:db8:1:3::1")));
        assert_eq!(limit_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
    }
}
