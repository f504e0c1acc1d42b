//! Sharding a fleet over several processes (issue 14, section 4), end to end with the real
//! binary: three processes started with `--total-shards 3` on one configuration of 300
//! providers against one loopback token server; the server's log shows every provider probed,
//! each by exactly one process. Then four shards: about a quarter of the providers move, all to
//! the new shard, and every process agrees with the pinned assignment. Also: `/probe`
//! of another shard's provider, the shard self-metrics, `check` with the same flags, and the
//! flag validation.
//!
//! Which process probed a provider: every process gets the same configuration, where the
//! client secret comes from `SHARD_SECRET`, and a different value of that variable; the token
//! server records the (client id, secret) pairs.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use support::peers::http_request;
use support::{Binary, FakeServer, Reply, Running, sample};

const PROVIDERS: usize = 300;
/// How long every provider gets to be probed once, on a shared 2-core machine (each provider's
/// first cycle comes within its 3 s interval, after the start-up jitter).
const ALL_PROBED: Duration = Duration::from_secs(45);

// Shard membership is pinned here, computed once from the rendezvous hash, not taken from
// `oauth2_exporter::shard::owner`, which the processes under test call themselves: a change of
// the hash moves providers between the shards of a running fleet and must show here.
/// Providers per shard among `fleet-000`..`fleet-299`, with 3 and with 4 shards.
const COUNTS_OF_3: [usize; 3] = [107, 88, 105];
const COUNTS_OF_4: [usize; 4] = [73, 58, 77, 92];
/// The shards of `fleet-000`..`fleet-011`, of 3 and of 4.
const FIRST_OF_3: [u32; 12] = [1, 0, 2, 1, 2, 1, 2, 2, 1, 1, 2, 1];
const FIRST_OF_4: [u32; 12] = [1, 0, 2, 1, 2, 1, 2, 3, 1, 1, 2, 1];
/// The providers that move growing from 3 shards to 4 (all to the new one).
const MOVED_3_TO_4: usize = 92;
/// The indexes among `fleet-000`..`fleet-059` that shard 1 of 2 owns.
const OWNED_BY_1_OF_2: [usize; 31] = [
    0, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 18, 19, 20, 22, 23, 29, 30, 32, 33, 36, 37, 43, 45, 49,
    50, 51, 53, 54, 58, 59,
];

fn name(i: usize) -> String {
    format!("fleet-{i:03}")
}

fn write_config(dir: &Path, token_url: &str, count: usize) -> std::path::PathBuf {
    let mut toml = String::from("[defaults]\ninterval = \"3s\"\ntimeout = \"5s\"\n");
    for i in 0..count {
        toml.push_str(&format!(
            "[providers.{n}.token]\nurl = \"{token_url}\"\nclient_id = \"{n}\"\nclient_secret_env = \"SHARD_SECRET\"\n",
            n = name(i)
        ));
    }
    let path = dir.join("exporter.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn secret_of(ordinal: u32) -> String {
    format!("secret-of-shard-{ordinal}")
}

/// Starts `total` shards on `config` and waits until the token server saw every provider;
/// returns the processes and, per provider, the shards (by their secret) that probed it.
async fn run_fleet(
    total: u32,
    config: &Path,
    server: &FakeServer,
) -> (Vec<Running>, BTreeMap<String, BTreeSet<u32>>) {
    let mut shards = Vec::new();
    for ordinal in 0..total {
        let mut shard = Binary::new()
            .config(config)
            .listen_loopback()
            .args(["--total-shards", &total.to_string()])
            .args(["--shard", &ordinal.to_string()])
            .env("SHARD_SECRET", secret_of(ordinal))
            .spawn();
        shard.address().await;
        shards.push(shard);
    }
    let deadline = Instant::now() + ALL_PROBED;
    loop {
        let seen = probed_by(server, total);
        if seen.len() == PROVIDERS {
            // One more look a little later, so that a second prober would have shown up too.
            tokio::time::sleep(Duration::from_secs(4)).await;
            return (shards, probed_by(server, total));
        }
        assert!(
            Instant::now() < deadline,
            "{total} shards probed only {} of {PROVIDERS} providers within {ALL_PROBED:?}",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn probed_by(server: &FakeServer, total: u32) -> BTreeMap<String, BTreeSet<u32>> {
    let secrets: BTreeMap<String, u32> = (0..total).map(|k| (secret_of(k), k)).collect();
    let mut seen: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for request in server.requests_to("/token") {
        let form = request.form_map();
        let shard = secrets
            .get(form.get("client_secret").map(String::as_str).unwrap_or(""))
            .copied()
            .unwrap_or_else(|| panic!("a token request with an unknown secret: {form:?}"));
        seen.entry(form["client_id"].clone())
            .or_default()
            .insert(shard);
    }
    seen
}

/// Each provider probed by exactly one shard, as many per shard as `pinned_counts` says and the
/// first twelve where `pinned_first` says; returns provider -> shard.
fn assert_partition(
    total: u32,
    seen: &BTreeMap<String, BTreeSet<u32>>,
    pinned_counts: &[usize],
    pinned_first: &[u32],
) -> BTreeMap<String, u32> {
    assert_eq!(seen.len(), PROVIDERS, "every provider is probed");
    let mut owners = BTreeMap::new();
    for (provider, shards) in seen {
        assert_eq!(shards.len(), 1, "{provider} probed by shards {shards:?}");
        owners.insert(provider.clone(), *shards.iter().next().unwrap());
    }
    let first: Vec<u32> = (0..pinned_first.len()).map(|i| owners[&name(i)]).collect();
    assert_eq!(first, pinned_first, "the shards of the first providers");
    let mut counts = vec![0; total as usize];
    for shard in owners.values() {
        counts[*shard as usize] += 1;
    }
    assert_eq!(counts, pinned_counts, "providers per shard of {total}");
    let even = PROVIDERS / total as usize;
    assert!(
        counts
            .iter()
            .all(|c| c * 10 > even * 6 && c * 10 < even * 14),
        "{total} shards share {PROVIDERS} providers unevenly: {counts:?}"
    );
    owners
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_split_the_fleet_and_a_fourth_shard_moves_about_a_quarter() {
    let server = FakeServer::start(|_| Reply::token("shared-token", 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.url("/token"), PROVIDERS);

    let (mut three, seen) = run_fleet(3, &config, &server).await;
    let before = assert_partition(3, &seen, &COUNTS_OF_3, &FIRST_OF_3);

    // What each shard shows: its own providers only, its ordinal and the total, and a 404
    // naming the owner for another shard's provider.
    for (ordinal, shard) in three.iter_mut().enumerate() {
        let ordinal = ordinal as u32;
        let addr = shard.address().await;
        let metrics = http_request(addr, "GET", "/metrics", &[], b"")
            .unwrap()
            .body;
        assert_eq!(
            sample(&metrics, "oauth2_exporter_shard_ordinal"),
            Some(f64::from(ordinal))
        );
        assert_eq!(sample(&metrics, "oauth2_exporter_total_shards"), Some(3.0));
        let exported = exported(&metrics, PROVIDERS);
        let own: BTreeSet<String> = before
            .iter()
            .filter(|(_, s)| **s == ordinal)
            .map(|(p, _)| p.clone())
            .collect();
        assert_eq!(
            exported, own,
            "shard {ordinal}'s /metrics shows its providers only"
        );
        let foreign = before.iter().find(|(_, s)| **s != ordinal).unwrap();
        let answer = http_request(
            addr,
            "GET",
            &format!("/probe?provider={}", foreign.0),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(answer.status, 404, "{}", answer.body);
        assert_eq!(
            answer.body,
            format!(
                "provider \"{}\" is probed by shard {} of 3; this is shard {ordinal} of 3\n",
                foreign.0, foreign.1
            )
        );
        let page = http_request(addr, "GET", "/", &[], b"").unwrap().body;
        assert!(
            page.contains(&format!("{} providers", own.len())),
            "shard {ordinal}'s status page counts its own providers"
        );
    }
    for mut shard in three {
        let (status, _) = shard.stop().await;
        assert!(status.success(), "{}", shard.stderr());
    }

    let server = FakeServer::start(|_| Reply::token("shared-token", 3600)).await;
    let config = write_config(dir.path(), &server.url("/token"), PROVIDERS);
    let (four, seen) = run_fleet(4, &config, &server).await;
    let after = assert_partition(4, &seen, &COUNTS_OF_4, &FIRST_OF_4);
    let moved: Vec<&String> = before
        .keys()
        .filter(|provider| before[*provider] != after[*provider])
        .collect();
    for provider in &moved {
        assert_eq!(
            after[*provider], 3,
            "{provider} moved, but not to the new shard"
        );
    }
    assert_eq!(
        moved.len(),
        MOVED_3_TO_4,
        "providers moved from 3 to 4 shards"
    );
    let share = moved.len() as f64 / PROVIDERS as f64;
    assert!(
        (0.15..0.35).contains(&share),
        "growing from 3 to 4 shards moved {share:.2} of the providers, expected about 1/4"
    );
    for mut shard in four {
        let (status, _) = shard.stop().await;
        assert!(status.success(), "{}", shard.stderr());
    }
}

/// `check` takes the same flags and checks only its shard's providers; another shard's
/// provider named with `--provider` is an error naming its shard.
#[tokio::test(flavor = "multi_thread")]
async fn check_checks_only_its_shard() {
    let server = FakeServer::start(|_| Reply::token("shared-token", 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.url("/token"), PROVIDERS);
    let output = Binary::new()
        .config(&config)
        .args([
            "check",
            "--output",
            "json",
            "--shard-from-pod-name",
            "oauth2-exporter-1",
        ])
        .args(["--total-shards", "3"])
        .env("SHARD_SECRET", secret_of(1))
        .limit(Duration::from_secs(60))
        .run_async()
        .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let checked: BTreeSet<String> = server
        .requests_to("/token")
        .iter()
        .map(|r| r.form_map()["client_id"].clone())
        .collect();
    assert_eq!(checked.len(), COUNTS_OF_3[1], "shard 1 of 3 checks its own");
    for (i, shard) in FIRST_OF_3.iter().enumerate() {
        assert_eq!(checked.contains(&name(i)), *shard == 1, "{}", name(i));
    }

    // fleet-001 belongs to shard 0 of 3.
    let foreign = name(1);
    let output = Binary::new()
        .config(&config)
        .args([
            "check",
            "--shard",
            "1",
            "--total-shards",
            "3",
            "--provider",
            &foreign,
        ])
        .env("SHARD_SECRET", secret_of(1))
        .run_async()
        .await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("error: provider \"{foreign}\" is checked by shard 0 of 3; this is shard 1 of 3\n")
    );
}

/// Both or neither, 0 <= N < M, and a pod name with an ordinal: anything else exits 2 with one
/// line saying what is allowed, before anything starts.
#[test]
fn shard_flags_are_validated() {
    for (args, expected) in [
        (
            vec!["--shard", "1"],
            "error: --shard needs --total-shards: give both (or --shard-from-pod-name and --total-shards) or neither\n",
        ),
        (
            vec!["--total-shards", "3"],
            "error: --total-shards needs --shard or --shard-from-pod-name: give both or neither\n",
        ),
        (
            vec!["--shard", "3", "--total-shards", "3"],
            "error: --shard: 3 is not a shard of --total-shards 3; allowed: 0 to 2\n",
        ),
        (
            vec!["--shard", "0", "--total-shards", "0"],
            "error: --total-shards: must be at least 1\n",
        ),
        (
            vec![
                "--shard-from-pod-name",
                "oauth2-exporter",
                "--total-shards",
                "3",
            ],
            "error: --shard-from-pod-name: \"oauth2-exporter\" does not end in a StatefulSet ordinal; expected NAME-N, e.g. \"oauth2-exporter-2\"\n",
        ),
    ] {
        let output = Binary::new().args(&args).arg("--config.check").run();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            expected,
            "{args:?}"
        );
    }
}

/// The providers of `fleet` a shard's `/metrics` shows.
fn exported(metrics: &str, fleet: usize) -> BTreeSet<String> {
    (0..fleet)
        .map(name)
        .filter(|p| metrics.contains(&format!("provider=\"{p}\"")))
        .collect()
}

/// A reload applies the same rule to the new configuration: providers added to the file join
/// the shard that owns them, and only that one.
#[tokio::test(flavor = "multi_thread")]
async fn reload_keeps_the_assignment_rule() {
    let server = FakeServer::start(|_| Reply::token("shared-token", 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.url("/token"), 30);
    let mut shard = Binary::new()
        .config(&config)
        .listen_loopback()
        .args(["--shard", "1", "--total-shards", "2"])
        .env("SHARD_SECRET", secret_of(1))
        .spawn();
    let addr = shard.address().await;
    let own = |fleet: usize| -> BTreeSet<String> {
        OWNED_BY_1_OF_2
            .iter()
            .filter(|i| **i < fleet)
            .map(|i| name(*i))
            .collect()
    };
    let metrics = http_request(addr, "GET", "/metrics", &[], b"")
        .unwrap()
        .body;
    assert_eq!(exported(&metrics, 60), own(30));

    write_config(dir.path(), &server.url("/token"), 60);
    let reload = http_request(addr, "POST", "/-/reload", &[], b"").unwrap();
    assert_eq!(reload.status, 200, "{}", reload.body);
    let metrics = http_request(addr, "GET", "/metrics", &[], b"")
        .unwrap()
        .body;
    assert_eq!(exported(&metrics, 60), own(60));
    let (status, _) = shard.stop().await;
    assert!(status.success(), "{}", shard.stderr());
}
