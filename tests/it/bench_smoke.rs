//! Smoke run of the benchmark harness (issue 6): CI does not time benchmarks, but it keeps the
//! harness working. 100 providers probed every 2 s for 5 s by the exporter binary, by the bare
//! reqwest client lane (issue 15; in a thread here) and by blackbox_exporter through `/probe`
//! when it is installed, against the load target on
//! loopback; asserts that the table is complete and that the exporter probed every provider,
//! reused its connections and reported latencies close to the target's own.
//!
//! No timing is asserted beyond what a busy 2-core machine meets by orders of magnitude: the
//! numbers of a real run are in BENCHMARKS.md. blackbox is skipped (printing why) when
//! `prometheus-blackbox-exporter` is not on PATH, unless `OAUTH2_EXPORTER_REQUIRE_PEERS=1`.

use std::path::PathBuf;
use std::time::Duration;

use crate::harness::{self, Blackbox, Cell, Launch, Scenario, Setup};

const PROVIDERS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_produces_a_complete_table_and_the_exporter_probes_every_provider() {
    let blackbox = Blackbox::from_path();
    if let Blackbox::Off { why } = &blackbox {
        assert!(
            std::env::var("OAUTH2_EXPORTER_REQUIRE_PEERS").as_deref() != Ok("1"),
            "OAUTH2_EXPORTER_REQUIRE_PEERS=1 but {why} (scripts/install-peers installs it)"
        );
        eprintln!("SKIPPED the blackbox part of bench_smoke: {why}");
    }
    let blackbox_ran = matches!(blackbox, Blackbox::Binary(_));
    let scenario = Scenario {
        providers: PROVIDERS,
        interval: Duration::from_secs(2),
        duration: Duration::from_secs(5),
        scrape_every: Duration::from_secs(1),
        fault: Default::default(),
        exporter_nofile: None,
    };
    let setup = Setup {
        exporter: PathBuf::from(env!("CARGO_BIN_EXE_oauth2-exporter")),
        // No example binary is built for this test: the target runs in a thread of it.
        target: Launch::InProcess,
        // The bare reqwest client lane (issue 15) too, in a thread with its own runtime.
        bare: Launch::InProcess,
        blackbox,
        verbose: false,
    };
    let report = harness::run(&scenario, &setup)
        .await
        .expect("the harness run failed");
    let table = report.markdown();
    println!("{table}");

    // A complete table: every row has every cell it should have.
    let rows = report.rows();
    assert!(rows.len() >= 15, "{table}");
    for row in &rows {
        assert_ne!(row.exporter, Cell::Missing, "{}\n{table}", row.measure);
        assert_ne!(row.bare, Cell::Missing, "{}\n{table}", row.measure);
        assert_ne!(row.bare_ratio, Cell::Missing, "{}\n{table}", row.measure);
        if blackbox_ran {
            assert_ne!(row.blackbox, Cell::Missing, "{}\n{table}", row.measure);
            assert_ne!(row.ratio, Cell::Missing, "{}\n{table}", row.measure);
        } else {
            assert!(matches!(row.blackbox, Cell::NotApplicable(_)), "{table}");
        }
    }
    assert!(!table.contains("MISSING"), "{table}");
    assert_eq!(report.problems(), Vec::<String>::new(), "{table}");

    // The exporter probed every provider, token and canary, and every last cycle succeeded.
    assert_eq!(report.providers_seen, PROVIDERS, "{table}");
    assert_eq!(report.providers_ok, PROVIDERS, "{table}");
    let traffic = &report.exporter_traffic;
    assert!(traffic.token_requests >= PROVIDERS as u64, "{table}");
    assert!(traffic.canary_requests >= PROVIDERS as u64, "{table}");
    assert!(traffic.cycles_in_window > 0, "{table}");
    assert_eq!(traffic.rejected, 0, "{table}");
    assert_eq!(report.exporter_warnings, 0, "{table}");
    // Every provider ran at least twice, so lateness has a sample per provider.
    let lateness = traffic.lateness_ms.expect("no lateness sample");
    assert!(lateness.count >= PROVIDERS, "{table}");
    // Keep-alive: far fewer connections than token requests.
    assert!(
        traffic.token_connections * 4 <= traffic.token_requests,
        "{} connections for {} token requests\n{table}",
        traffic.token_connections,
        traffic.token_requests
    );
    // Fidelity is measured for nearly every provider (a cycle in flight at the last scrape
    // leaves one out), and the reported latency is never below what the target itself spent.
    assert!(
        report.fidelity.providers_compared >= PROVIDERS - 5,
        "{table}"
    );
    let overhead = report.fidelity.token_overhead_ms.expect("no fidelity");
    assert!(overhead.p50 >= 0.0, "{table}");
    // /metrics: a real page, smaller compressed.
    assert!(report.scrape.during_run >= 2, "{table}");
    assert!(
        report.scrape.gzip_bytes > 0 && report.scrape.gzip_bytes < report.scrape.plain_bytes,
        "{table}"
    );

    // The bare reqwest client lane (issue 15) made the same requests, all answered, and its
    // CPU ratio is printed.
    let bare = report.bare.as_ref().expect("no bare client lane");
    assert_eq!(bare.failures, 0, "{table}");
    assert_eq!(bare.providers_seen, PROVIDERS, "{table}");
    assert!(bare.traffic.cycles_in_window > 0, "{table}");
    assert!(
        bare.traffic.token_connections * 4 <= bare.traffic.token_requests,
        "{table}"
    );
    let cpu_row = rows
        .iter()
        .find(|row| {
            row.measure
                .starts_with("CPU per 1 000 cycles, ms, probing only")
        })
        .expect("no probing CPU row");
    assert!(matches!(cpu_row.bare_ratio, Cell::Value(_)), "{table}");

    if let Some(blackbox) = &report.blackbox {
        assert!(blackbox.probes_sent >= PROVIDERS as u64, "{table}");
        assert_eq!(blackbox.probes_failed, 0, "{table}");
        assert!(
            blackbox.traffic.token_requests >= PROVIDERS as u64,
            "{table}"
        );
        // What blackbox answers for a rejected secret: a failure without a reason.
        let (_, rejected) = &blackbox.views[1];
        assert!(
            rejected.iter().any(|line| line == "probe_success 0"),
            "{rejected:?}"
        );
        assert!(
            !rejected.iter().any(|line| line.contains("invalid_client")),
            "{rejected:?}"
        );
    }
}
