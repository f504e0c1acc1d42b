//! Sharding a fleet over several processes (`--shard N --total-shards M`): which shard owns a
//! provider, by rendezvous (highest random weight) hashing of its name, so every shard that
//! loads the same configuration agrees without talking to the others, and growing from M to
//! M+1 shards moves only the providers the new shard wins, about 1/(M+1) of them.
//!
//! The hash is FNV-1a (64 bit) with a SplitMix64 finish, written out here: it must give the
//! same answer in every process, on every platform and in every release, which std's
//! `RandomState` (randomly keyed per process) and `DefaultHasher` (unspecified) do not promise.

use std::fmt;

/// This process's part of the fleet: shard `ordinal` of `total` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    ordinal: u32,
    total: u32,
}

impl Shard {
    /// Shard `ordinal` of `total`, or why not (`0 <= ordinal < total`).
    pub fn new(ordinal: u32, total: u32) -> Result<Shard, String> {
        if total == 0 {
            return Err("--total-shards: must be at least 1".to_string());
        }
        if ordinal >= total {
            return Err(format!(
                "--shard: {ordinal} is not a shard of --total-shards {total}; allowed: 0 to {}",
                total - 1
            ));
        }
        Ok(Shard { ordinal, total })
    }

    /// The ordinal of a Kubernetes StatefulSet pod from its name (`oauth2-exporter-2` -> 2), as
    /// kube-state-metrics' automated sharding reads it.
    pub fn ordinal_from_pod_name(pod: &str) -> Result<u32, String> {
        pod.rsplit_once('-')
            .and_then(|(_, suffix)| suffix.parse::<u32>().ok().filter(|_| !suffix.starts_with('+')))
            .ok_or_else(|| {
                format!(
                    "--shard-from-pod-name: {pod:?} does not end in a StatefulSet ordinal; expected NAME-N, e.g. \"oauth2-exporter-2\""
                )
            })
    }

    pub fn ordinal(&self) -> u32 {
        self.ordinal
    }

    pub fn total(&self) -> u32 {
        self.total
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {} of {}", self.ordinal, self.total)
    }
}

/// Every shard loads the same configuration and keeps its own part of it: `providers` (each
/// called `name(provider)`) split into those `shard` probes and the others, each of those with
/// the ordinal of the shard that does (for `/probe` and `check` to name it). Without a shard,
/// all are this process's. The one place the scheduler and `check` take their part.
pub fn split<P>(
    shard: Option<Shard>,
    providers: Vec<P>,
    name: impl Fn(&P) -> &str,
) -> (Vec<P>, Vec<(P, u32)>) {
    let Some(shard) = shard else {
        return (providers, Vec::new());
    };
    let mut mine = Vec::with_capacity(providers.len() / shard.total as usize + 1);
    let mut elsewhere = Vec::new();
    for provider in providers {
        match owner(name(&provider), shard.total) {
            ordinal if ordinal == shard.ordinal => mine.push(provider),
            ordinal => elsewhere.push((provider, ordinal)),
        }
    }
    (mine, elsewhere)
}

/// The shard (0-based) of `total` that owns the provider called `name`: the one with the
/// highest weight for it. Ties (astronomically rare) go to the lower ordinal.
pub fn owner(name: &str, total: u32) -> u32 {
    let mut best = (0u64, 0u32);
    for shard in 0..total {
        let weight = weight(name, shard);
        if shard == 0 || weight > best.0 {
            best = (weight, shard);
        }
    }
    best.1
}

/// The rendezvous weight of `name` on `shard`.
fn weight(name: &str, shard: u32) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    // The name, a separator no name contains, then the shard: "a" on 12 and "a1" on 2 differ.
    for byte in name.bytes().chain([0xff]).chain(shard.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    // FNV-1a's low bits mix poorly for short, similar inputs; SplitMix64's finish spreads them.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("provider-{i:04}")).collect()
    }

    /// Pinned values: a change of the hash would silently move providers between shards of a
    /// running fleet during a rolling upgrade, so it must be a deliberate, visible change.
    #[test]
    fn the_hash_is_stable() {
        let owners: Vec<u32> = ["okq8", "eqhub", "cube", "nextome", "everactive"]
            .iter()
            .map(|name| owner(name, 3))
            .collect();
        assert_eq!(owners, PINNED_OWNERS_OF_3);
        assert_eq!(weight("okq8", 0), PINNED_WEIGHT);
    }

    const PINNED_OWNERS_OF_3: [u32; 5] = [1, 1, 1, 0, 2];
    const PINNED_WEIGHT: u64 = 6_045_566_619_406_200_390;

    #[test]
    fn shards_split_a_fleet_evenly_and_growing_moves_about_one_in_m_plus_1() {
        let fleet = names(3000);
        for total in [2u32, 3, 4, 7] {
            let mut counts = vec![0usize; total as usize];
            for name in &fleet {
                counts[owner(name, total) as usize] += 1;
            }
            let even = fleet.len() / total as usize;
            for count in &counts {
                assert!(
                    count * 10 > even * 8 && count * 10 < even * 12,
                    "{total} shards: {counts:?}"
                );
            }
            let moved = fleet
                .iter()
                .filter(|name| owner(name, total) != owner(name, total + 1))
                .count();
            // Only providers the new shard wins move.
            for name in &fleet {
                let after = owner(name, total + 1);
                assert!(after == owner(name, total) || after == total, "{name}");
            }
            let share = moved as f64 / fleet.len() as f64;
            let expected = 1.0 / f64::from(total + 1);
            assert!(
                (share - expected).abs() < 0.03,
                "{total} -> {}: moved {share:.3}, expected about {expected:.3}",
                total + 1
            );
        }
    }

    /// The pinned owners above, as the scheduler and `check` take their part.
    #[test]
    fn a_shard_keeps_its_providers_and_names_the_owners_of_the_rest() {
        let fleet = ["okq8", "eqhub", "cube", "nextome", "everactive"];
        let (mine, elsewhere) = split(Shard::new(1, 3).ok(), fleet.to_vec(), |name| name);
        assert_eq!(mine, ["okq8", "eqhub", "cube"]);
        assert_eq!(elsewhere, [("nextome", 0), ("everactive", 2)]);
        let (mine, elsewhere) = split(None, fleet.to_vec(), |name| name);
        assert_eq!(mine, fleet);
        assert!(elsewhere.is_empty());
    }

    #[test]
    fn one_shard_owns_everything() {
        assert!(names(50).iter().all(|name| owner(name, 1) == 0));
    }

    #[test]
    fn shard_numbers_are_validated() {
        assert!(Shard::new(0, 1).is_ok());
        assert!(Shard::new(2, 3).is_ok());
        assert_eq!(
            Shard::new(3, 3).unwrap_err(),
            "--shard: 3 is not a shard of --total-shards 3; allowed: 0 to 2"
        );
        assert_eq!(
            Shard::new(0, 0).unwrap_err(),
            "--total-shards: must be at least 1"
        );
    }

    #[test]
    fn pod_names_give_their_ordinal() {
        assert_eq!(Shard::ordinal_from_pod_name("oauth2-exporter-2"), Ok(2));
        assert_eq!(Shard::ordinal_from_pod_name("a-b-c-10"), Ok(10));
        for bad in [
            "oauth2-exporter",
            "oauth2-exporter-",
            "exporter-x",
            "7",
            "x-+1",
        ] {
            assert!(Shard::ordinal_from_pod_name(bad).is_err(), "{bad}");
        }
    }
}
