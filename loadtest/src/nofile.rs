//! The open-file limit (raised so that a burst of 100,000 connections fits) and
//! the loopback source addresses that spread those connections over port ranges.

pub use tps_runtime::limits::raise_nofile;

/// Source addresses 127.0.0.1 … 127.0.0.n for `connections` loopback
/// connections, one per ~25,000 so each stays within the ephemeral port range.
pub fn loopback_sources(connections: usize) -> Vec<std::net::IpAddr> {
    let n = connections.div_ceil(25_000).clamp(1, 250);
    (1..=n as u8).map(|i| std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, i))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_by_25k() {
        assert_eq!(loopback_sources(1_024).len(), 1);
        assert_eq!(loopback_sources(100_000).len(), 4);
        assert_eq!(loopback_sources(100_001).len(), 5);
        assert_eq!(loopback_sources(100_000)[3].to_string(), "127.0.0.4");
    }
}
