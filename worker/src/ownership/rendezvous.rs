//! Rendezvous (highest-random-weight) hashing: which live worker a shard prefers.
//!
//! Every worker computes the same answer from the same member list, without
//! talking to the others, and a join or a death moves only the shards of that
//! one member. The hash is spelled out (FNV-1a plus a mixer) rather than taken
//! from `std`, so that two builds of the worker agree during a rolling upgrade.

/// The member that `shard` of `stream` prefers, or `None` when nobody is alive.
pub fn preferred_owner<'a>(members: &'a [String], stream: &str, shard: u32) -> Option<&'a str> {
    members.iter().max_by_key(|m| (weight(m, stream, shard), m.as_str())).map(String::as_str)
}

fn weight(member: &str, stream: &str, shard: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = member.bytes().chain([0]).chain(stream.bytes()).chain([0]).chain(shard.to_le_bytes());
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64 finaliser: FNV alone spreads short, similar keys poorly.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("worker-{i}")).collect()
    }

    #[test]
    fn shares_shards_and_moves_few_on_a_join() {
        let three = members(3);
        let owners: Vec<&str> = (0..64).map(|s| preferred_owner(&three, "ORDERS", s).unwrap()).collect();
        for m in &three {
            let n = owners.iter().filter(|o| **o == m.as_str()).count();
            assert!((10..=35).contains(&n), "{m} got {n} of 64");
        }
        let four = members(4);
        let moved =
            (0..64).filter(|s| preferred_owner(&four, "ORDERS", *s).unwrap() != owners[*s as usize]).count();
        // Only shards that now prefer the newcomer move.
        assert!((0..64).all(|s| {
            let now = preferred_owner(&four, "ORDERS", s).unwrap();
            now == owners[s as usize] || now == "worker-3"
        }));
        assert!(moved > 5 && moved < 30, "{moved} moved");
    }

    #[test]
    fn nobody_alive_means_no_owner() {
        assert_eq!(preferred_owner(&[], "ORDERS", 1), None);
    }
}
