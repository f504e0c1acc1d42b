//! Issue 25 against a real server: DPoP (RFC 9449) with panva/oidc-provider 9
//! (`tests/peers/oidc/server.mjs --dpop`): its token endpoint checks every proof and requires its
//! nonce (`features.dPoP` with `nonceSecret` and `requireNonce`), the client gets only DPoP-bound
//! tokens (`dpop_bound_access_tokens`), and the peer's API, on another origin, takes a token
//! only with a proof of the key its `cnf.jkt` names (`ath`, `htm`, `htu`, a fresh `jti`) and its
//! own nonce, which it demands. A passing cycle proves the whole chain. Skipped like every peer
//! test when Node or the peer is not installed (a failure under
//! `OAUTH2_EXPORTER_REQUIRE_PEERS=1`).

use crate::support;

use std::time::Duration;

use support::peers::{Exporter, OidcPeer};
use support::sample;

/// Start-up jitter spreads first cycles over one 1 s interval; 2 shared cores.
const WAIT: Duration = Duration::from_secs(30);

/// One provider of the peer's DPoP client, with the peer's API as its canary.
fn provider(name: &str, peer: &OidcPeer, extra: &str) -> String {
    let client = peer.dpop_client.as_ref().expect("started with --dpop");
    format!(
        "[providers.{name}]\ninterval = \"1s\"\ntimeout = \"5s\"\n\
         [providers.{name}.token]\nurl = {url:?}\nclient_id = {id:?}\nclient_secret = {secret:?}\n\
         scopes = [{scope:?}]\nparams = {{ resource = {resource:?} }}\n{extra}\n\
         [providers.{name}.canary]\nurl = {canary:?}\n",
        url = peer.token_url,
        id = client.id,
        secret = client.secret,
        scope = peer.scope,
        resource = peer.resource,
        canary = peer
            .dpop_canary_url
            .as_deref()
            .expect("started with --dpop"),
    )
}

#[test]
fn dpop_on_both_steps_with_each_servers_nonce() {
    let Some(peer) = OidcPeer::start_dpop() else {
        return;
    };
    let config = [
        provider("dpop_es256", &peer, "dpop = true"),
        provider(
            "dpop_ps256",
            &peer,
            "dpop = true\ndpop_signing_algorithm = \"PS256\"",
        ),
        // The same client without DPoP: the server refuses it a token, so the passing cycles
        // above are not a server that ignores proofs.
        provider("no_dpop", &peer, "").replace(
            "interval = \"1s\"",
            "interval = \"1s\"\nmax_backoff = \"0s\"",
        ),
    ]
    .concat();
    let exporter = Exporter::start(&config);
    let names = ["dpop_es256", "dpop_ps256"];
    let m = exporter.wait_for_metrics(
        "three passing DPoP canary calls per provider, and the provider without DPoP refused",
        |m| {
            names.iter().all(|p| {
                sample(m, &format!("oauth2_probe_success{{provider=\"{p}\"}}")) == Some(1.0)
                    && sample(m, &format!("oauth2_canary_requests_total{{provider=\"{p}\"}}"))
                        .is_some_and(|v| v >= 3.0)
            }) && sample(
                m,
                "oauth2_token_request_failures_total{provider=\"no_dpop\",reason=\"invalid_grant\"}",
            )
            .is_some_and(|v| v >= 1.0)
        },
        WAIT,
    );
    let stats = peer.stats();
    let api = &stats["dpop_canary"];
    assert_eq!(
        api["refused"],
        serde_json::json!([]),
        "the API refused a proof: {stats:#}"
    );
    // Each provider was asked for the API's nonce once, then kept it (apart from the token
    // endpoint's, which is another origin's).
    assert_eq!(api["nonce_demands"], 2, "{stats:#}");
    assert!(api["200"].as_u64().is_some_and(|n| n >= 6), "{stats:#}");
    // The token endpoint demanded its nonce (and the retry with it was answered).
    assert!(
        stats["dpop_token_errors"]["use_dpop_nonce"]
            .as_u64()
            .is_some_and(|n| n >= 2),
        "{stats:#}"
    );
    for p in names {
        for series in [
            "oauth2_token_request_failures_total",
            "oauth2_canary_request_failures_total",
        ] {
            assert_eq!(
                support::provider_series(&m, series, p),
                Vec::<String>::new(),
                "{p}: a nonce demand answered by its one retry is not a failure"
            );
        }
    }

    // The trace: the token is bound to the key the proofs carry (its cnf.jkt is the key's
    // thumbprint), and the proofs are shown decoded.
    let trace = exporter.get("/probe?provider=dpop_ps256&debug=true").body;
    let jkt = trace
        .lines()
        .find_map(|line| line.split("thumbprint (jkt) ").nth(1))
        .unwrap_or_else(|| panic!("no key thumbprint in\n{trace}"))
        .trim()
        .to_string();
    for expected in [
        format!(r#""jkt": "{jkt}""#),
        r#""alg":"PS256""#.to_string(),
        r#""typ":"dpop+jwt""#.to_string(),
        "Authorization: DPoP [redacted]".to_string(),
        "result: passed".to_string(),
    ] {
        assert!(trace.contains(&expected), "{expected:?} not in\n{trace}");
    }
    let client = peer.dpop_client.as_ref().unwrap();
    let logs = exporter.logs();
    assert!(
        !logs.contains(&client.secret),
        "the client secret is in the logs"
    );
    assert!(
        !trace.contains(&client.secret),
        "the client secret is in the trace"
    );
}
