//! Issue 25 (DPoP, RFC 9449) on the wire, against server doubles that check what a real one
//! checks: every proof's signature with the key its header carries, `typ`, `htm`, `htu`, `iat`,
//! a `jti` never seen before (a replay is refused with `invalid_dpop_proof`), `ath` and the
//! token's binding at the API, and a nonce each server demands once (`use_dpop_nonce`). Then
//! the failures, by reason `dpop`: a proof refused and a Bearer answer, at the token step and at
//! the canary step; the configuration errors; and `/probe?debug=true`, which shows each proof
//! decoded, never the proof, its signature or the key. And DPoP with the jwt-bearer grant, whose
//! assertion is signed afresh for the nonce retry as the proof is.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, RSA_PSS_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth2_exporter::config::{self, Overrides};
use serde_json::{Value, json};
use support::{Daemon, FakeServer, Provider, Recorded, Reply, sample};

const WAIT: Duration = Duration::from_secs(20);
/// The nonces the two servers demand (RFC 9449 sections 8 and 9), each its own.
const IDP_NONCE: &str = "idp-nonce.Zm9vYmFy";
const API_NONCE: &str = "api-nonce.YmF6cXV4";

fn decode(part: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| e.to_string())
            .unwrap(),
    )
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A DPoP proof as a server reads it, checked.
struct Checked {
    claims: Value,
    /// The RFC 7638 thumbprint of the header's key, worked out here.
    jkt: String,
}

/// Checks a request's `DPoP` header as RFC 9449 section 4.3 has a server do: one compact JWS,
/// `typ` `dpop+jwt`, an asymmetric `alg`, a public `jwk` the signature verifies with, `htm` and
/// `htu` of this request (the URL it came to, without the query), a recent `iat`, a `jti`. The
/// error is the server's words.
fn check_proof(request: &Recorded) -> Result<Checked, String> {
    let htu = format!(
        "http://{}{}",
        request.header("host").unwrap_or_default(),
        request.path
    );
    let proofs = request.header_all("dpop");
    let [proof] = proofs.as_slice() else {
        return Err(format!("{} DPoP headers, not one", proofs.len()));
    };
    let parts: Vec<&str> = proof.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("not a compact JWS".into());
    };
    let (header, claims) = (decode(header), decode(claims));
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "bad signature encoding")?;
    if header["typ"] != "dpop+jwt" {
        return Err("typ is not dpop+jwt".into());
    }
    let jwk = &header["jwk"];
    if jwk.get("d").is_some() || jwk.get("p").is_some() {
        return Err("the jwk holds a private key".into());
    }
    let b64 = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().unwrap_or_default())
            .unwrap_or_default()
    };
    let input = format!("{}.{}", parts[0], parts[1]);
    let (verified, canonical) = match (header["alg"].as_str(), jwk["kty"].as_str()) {
        (Some("ES256"), Some("EC")) => {
            let mut point = vec![4u8];
            point.extend(b64("x"));
            point.extend(b64("y"));
            (
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(input.as_bytes(), &signature)
                    .is_ok(),
                format!(
                    r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                    jwk["x"].as_str().unwrap_or_default(),
                    jwk["y"].as_str().unwrap_or_default()
                ),
            )
        }
        (Some("PS256"), Some("RSA")) => (
            PublicKeyComponents {
                n: b64("n"),
                e: b64("e"),
            }
            .verify(&RSA_PSS_2048_8192_SHA256, input.as_bytes(), &signature)
            .is_ok(),
            format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                jwk["e"].as_str().unwrap_or_default(),
                jwk["n"].as_str().unwrap_or_default()
            ),
        ),
        (alg, kty) => return Err(format!("unexpected alg {alg:?} with kty {kty:?}")),
    };
    if !verified {
        return Err("the signature does not verify with the jwk".into());
    }
    if claims["htm"] != request.method.as_str() {
        return Err("htm mismatch".into());
    }
    if claims["htu"] != htu.as_str() {
        return Err(format!("htu mismatch: {}", claims["htu"]));
    }
    if claims["iat"]
        .as_u64()
        .is_none_or(|iat| iat.abs_diff(now()) > 60)
    {
        return Err("iat is not recent".into());
    }
    if claims["jti"].as_str().is_none_or(str::is_empty) {
        return Err("no jti".into());
    }
    let jkt = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()));
    Ok(Checked { claims, jkt })
}

/// What the two doubles of the first test saw.
#[derive(Default)]
struct Seen {
    jtis: BTreeSet<String>,
    idp_nonce_demands: u32,
    api_nonce_demands: u32,
    /// Issued tokens and the key thumbprint each is bound to.
    tokens: BTreeMap<String, String>,
    /// Every refusal, in the server's words (none expected).
    refused: Vec<String>,
}

fn dpop_error(status: u16, code: &str, description: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": code, "error_description": description}),
    )
}

/// A token endpoint that requires DPoP with its nonce and refuses a replayed proof.
fn token_endpoint(seen: &Mutex<Seen>, request: &Recorded) -> Reply {
    let mut seen = seen.lock().unwrap();
    let checked = match check_proof(request) {
        Ok(checked) => checked,
        Err(why) => {
            seen.refused.push(format!("idp: {why}"));
            return dpop_error(400, "invalid_dpop_proof", &why);
        }
    };
    let jti = checked.claims["jti"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !seen.jtis.insert(jti) {
        return dpop_error(400, "invalid_dpop_proof", "DPoP proof JWT replay detected");
    }
    if checked.claims["nonce"] != IDP_NONCE {
        seen.idp_nonce_demands += 1;
        return Reply::raw(
            400,
            &[
                ("content-type", "application/json"),
                ("dpop-nonce", IDP_NONCE),
            ],
            json!({"error": "use_dpop_nonce", "error_description": "nonce is required in the DPoP proof"}).to_string(),
        );
    }
    let token = format!("at-dpop-{}", seen.tokens.len() + 1);
    seen.tokens.insert(token.clone(), checked.jkt);
    Reply::json(
        200,
        json!({"access_token": token, "token_type": "DPoP", "expires_in": 3600}),
    )
}

/// An API that takes only DPoP-bound tokens, with a proof of the key the token is bound to.
fn api(seen: &Mutex<Seen>, request: &Recorded) -> Reply {
    let mut seen = seen.lock().unwrap();
    let refuse = |seen: &mut Seen, why: String| {
        seen.refused.push(format!("api: {why}"));
        let challenge = format!(r#"DPoP error="invalid_dpop_proof", error_description="{why}""#);
        Reply::raw(401, &[("www-authenticate", challenge.as_str())], "")
    };
    let Some(token) = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("DPoP "))
        .map(str::to_string)
    else {
        return refuse(&mut seen, "not Authorization: DPoP".into());
    };
    let checked = match check_proof(request) {
        Ok(checked) => checked,
        Err(why) => return refuse(&mut seen, why),
    };
    let ath = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()));
    if checked.claims["ath"] != ath.as_str() {
        return refuse(&mut seen, "ath mismatch".into());
    }
    if seen.tokens.get(&token) != Some(&checked.jkt) {
        return refuse(
            &mut seen,
            "the token is not bound to the proof's key".into(),
        );
    }
    let jti = checked.claims["jti"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !seen.jtis.insert(jti) {
        return refuse(&mut seen, "replayed jti".into());
    }
    if checked.claims["nonce"] != API_NONCE {
        seen.api_nonce_demands += 1;
        return Reply::raw(
            401,
            &[
                (
                    "www-authenticate",
                    r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
                ),
                ("dpop-nonce", API_NONCE),
            ],
            "",
        );
    }
    Reply::json(200, json!({"ok": true}))
}

/// A fresh `algorithm` key written as PEM to `dir/name`: its path.
fn new_key_file(
    dir: &std::path::Path,
    name: &str,
    algorithm: &'static rcgen::SignatureAlgorithm,
) -> std::path::PathBuf {
    let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
    support::certs::write(dir, name, &key.serialize_pem())
}

/// A token endpoint and an API that demand their own nonce (see `token_endpoint` and `api`),
/// recording what they saw in the shared `Seen`.
async fn nonce_demanding_servers() -> (Arc<Mutex<Seen>>, FakeServer, FakeServer) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let idp_seen = Arc::clone(&seen);
    let idp = FakeServer::start(move |request| token_endpoint(&idp_seen, request)).await;
    let api_seen = Arc::clone(&seen);
    let api_server = FakeServer::start(move |request| api(&api_seen, request)).await;
    (seen, idp, api_server)
}

/// The scrape once `provider`'s probe succeeds and it has made at least `canary_calls` API calls.
async fn wait_for_success_and_canary_calls(
    daemon: &Daemon,
    provider: &str,
    canary_calls: f64,
) -> String {
    let success = format!("oauth2_probe_success{{provider=\"{provider}\"}}");
    let calls = format!("oauth2_canary_requests_total{{provider=\"{provider}\"}}");
    daemon
        .wait_for(
            |m| {
                sample(m, &success) == Some(1.0)
                    && sample(m, &calls).is_some_and(|n| n >= canary_calls)
            },
            WAIT,
        )
        .await
}

/// Both steps with DPoP and a nonce each server demands: the first token request and the first
/// API call are refused with `use_dpop_nonce` and sent once more with the nonce, after which
/// each server's own nonce is remembered (neither demands it again, neither gets the other's);
/// every proof verifies and has its own `jti`; the token is DPoP-bound and presented as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_steps_carry_proofs_with_each_servers_nonce() {
    let (seen, idp, api_server) = nonce_demanding_servers().await;
    let toml = [
        support::config::defaults(&[
            ("interval", r#""300ms""#),
            ("timeout", r#""5s""#),
            ("dpop", "true"),
        ]),
        Provider::new("okta", &idp.url("/oauth2/token"))
            .canary(&api_server.url("/v1/orders?limit=1"))
            .toml(),
    ]
    .concat();
    let daemon = Daemon::start(&toml).await;
    let metrics = wait_for_success_and_canary_calls(&daemon, "okta", 3.0).await;
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.refused, Vec::<String>::new(), "no proof was refused");
        assert_eq!(
            seen.idp_nonce_demands, 1,
            "the identity provider's nonce is kept"
        );
        assert_eq!(seen.api_nonce_demands, 1, "the API's nonce is kept, apart");
        assert!(seen.tokens.len() >= 3);
        let keys: BTreeSet<&String> = seen.tokens.values().collect();
        assert_eq!(keys.len(), 1, "one key for the provider's life");
    }
    for series in [
        "oauth2_token_request_failures_total",
        "oauth2_canary_request_failures_total",
    ] {
        assert_eq!(
            support::provider_series(&metrics, series, "okta"),
            Vec::<String>::new(),
            "a nonce demand answered by the one retry is no failure"
        );
    }
    // The token request's form is as without DPoP: the proof is a header.
    let last = idp.requests_to("/oauth2/token").pop().unwrap();
    assert_eq!(last.form_map()["client_secret"], "secret");
    assert!(last.header("authorization").is_none());

    // The double is strict: a proof sent again is refused as a replay.
    let replay = support::http_client(Duration::from_secs(5))
        .post(idp.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("dpop", last.header("dpop").unwrap())
        .body(last.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["error"], "invalid_dpop_proof");

    // The trace: each proof decoded (the public jwk, htm, htu, nonce, ath), never a proof, a
    // signature or the token.
    let trace = support::get_text(&daemon.url("/probe?provider=okta&debug=true")).await;
    for expected in [
        "== DPoP key",
        "generated at start",
        "DPoP: [redacted] (the proof, decoded below)",
        "DPoP proof (decoded, signature not shown):",
        r#""typ":"dpop+jwt""#,
        r#""kty":"EC""#,
        &format!(r#""nonce": "{IDP_NONCE}""#),
        &format!(r#""nonce": "{API_NONCE}""#),
        &format!(r#""htu": "{}""#, api_server.url("/v1/orders")),
        r#""htm": "GET""#,
        r#""ath": "#,
        "Authorization: DPoP [redacted]",
        "result: passed",
    ] {
        assert!(trace.contains(expected), "{expected:?} not in\n{trace}");
    }
    let mut sent = idp.requests_to("/oauth2/token");
    sent.extend(api_server.requests_to("/v1/orders"));
    for request in &sent {
        let proof = request.header("dpop").unwrap();
        assert!(!trace.contains(proof), "a proof is in the trace");
        let signature = proof.rsplit('.').next().unwrap();
        assert!(
            !trace.contains(signature),
            "a proof's signature is in the trace"
        );
    }
    for token in seen.lock().unwrap().tokens.keys() {
        assert!(!trace.contains(token.as_str()), "the token is in the trace");
    }
    daemon.stop().await;
}

/// Issue 25's two halves together: the jwt-bearer grant (`auth_method = "none"`, signed with
/// `private_key_file`) with `dpop = true`. Every token request carries both the grant's
/// `assertion` and a DPoP proof; the retry the nonce demand causes signs a new assertion as well
/// as a new proof (a server may refuse a `jti` it saw, RFC 7523 section 3), and the bound token
/// is then used at the API. The trace shows both decoded and neither sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwt_bearer_grant_with_dpop_remakes_its_assertion_for_the_nonce_retry() {
    let (seen, idp, api_server) = nonce_demanding_servers().await;
    let dir = tempfile::tempdir().unwrap();
    let key = new_key_file(dir.path(), "sa.key", &rcgen::PKCS_ECDSA_P256_SHA256);
    let toml = Provider::new("google", &idp.url("/token"))
        .interval("300ms")
        .timeout("5s")
        .keyless("svc@project.iam.example", "none")
        .token_key("grant_type", r#""jwt_bearer""#)
        .token_file("private_key_file", &key)
        .token_key("dpop", "true")
        .canary(&api_server.url("/v1/orders"))
        .toml();
    let daemon = Daemon::start(&toml).await;
    wait_for_success_and_canary_calls(&daemon, "google", 2.0).await;
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.refused, Vec::<String>::new(), "no proof was refused");
        assert_eq!(seen.idp_nonce_demands, 1, "one nonce demand, one retry");
    }
    let sent = idp.requests_to("/token");
    assert!(sent.len() >= 2, "the refused request and its retry");
    let mut assertion_jtis = BTreeSet::new();
    for request in &sent {
        assert!(request.header("dpop").is_some(), "a proof on every request");
        let form = request.form_map();
        assert_eq!(
            form["grant_type"],
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
        assert_eq!(form["client_id"], "svc@project.iam.example");
        assert!(!form.contains_key("client_secret"));
        let assertion = &form["assertion"];
        let parts: Vec<&str> = assertion.split('.').collect();
        assert_eq!(parts.len(), 3, "a compact JWS");
        let claims = decode(parts[1]);
        assert_eq!(claims["iss"], "svc@project.iam.example");
        assert_eq!(claims["aud"], idp.url("/token"));
        let jti = claims["jti"].as_str().unwrap_or_default().to_string();
        assert!(
            assertion_jtis.insert(jti),
            "the retry sent the refused request's assertion again"
        );
        let header = decode(parts[0]);
        assert_ne!(
            header["typ"], "dpop+jwt",
            "the grant's assertion is not the proof"
        );
    }

    let trace = support::get_text(&daemon.url("/probe?provider=google&debug=true")).await;
    for expected in [
        "jwt_bearer grant assertion (signed with private_key_file; decoded, signature not shown):",
        "DPoP proof (decoded, signature not shown):",
        &format!(r#""nonce": "{IDP_NONCE}""#),
        "Authorization: DPoP [redacted]",
        "result: passed",
    ] {
        assert!(trace.contains(expected), "{expected:?} not in\n{trace}");
    }
    for request in idp.requests_to("/token") {
        let assertion = request.form_map()["assertion"].clone();
        let proof = request.header("dpop").unwrap().to_string();
        for sent in [assertion, proof] {
            let signature = sent.rsplit('.').next().unwrap();
            assert!(
                !trace.contains(&sent),
                "an assertion or proof is in the trace"
            );
            assert!(!trace.contains(signature), "a signature is in the trace");
        }
    }
    daemon.stop().await;
}

/// The failures, each counted as `dpop` with the server's words where it gave some: a token
/// endpoint that refuses the proof or answers a DPoP request with a Bearer token, an API that
/// refuses the proof or answers the DPoP-bound call with a Bearer challenge only. `[defaults]`
/// turns DPoP on for all of them; a provider's `dpop = false` turns it off again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_proofs_and_bearer_answers_are_reason_dpop() {
    let dpop_token = || {
        Reply::json(
            200,
            json!({"access_token": "at-bound-123456", "token_type": "DPoP", "expires_in": 3600}),
        )
    };
    let server = FakeServer::start(move |request| match request.path.as_str() {
        "/refuse/token" => dpop_error(
            400,
            "invalid_dpop_proof",
            "the proof's key is not the one registered for this client",
        ),
        "/bearer/token" | "/plain/token" => Reply::token("at-bearer-123456", 3600),
        "/api-refuses/api" => Reply::raw(
            401,
            &[(
                "www-authenticate",
                r#"DPoP algs="ES256", error="invalid_dpop_proof", error_description="htu does not match""#,
            )],
            "",
        ),
        "/api-bearer/api" => Reply::raw(
            401,
            &[(
                "www-authenticate",
                r#"Bearer realm="orders", error="invalid_token""#,
            )],
            "",
        ),
        "/plain/api" => Reply::status(200),
        _ => dpop_token(),
    })
    .await;
    let provider = |name: &str| {
        Provider::new(name, &server.url(&format!("/{name}/token")))
            .canary(&server.url(&format!("/{name}/api")))
    };
    let toml = [
        support::config::defaults(&[
            ("interval", r#""300ms""#),
            ("timeout", r#""5s""#),
            ("max_backoff", r#""0s""#),
            ("dpop", "true"),
        ]),
        support::config::providers(&[
            provider("refuse"),
            provider("bearer"),
            provider("api-refuses"),
            provider("api-bearer"),
            provider("plain").token_key("dpop", "false"),
        ]),
    ]
    .concat();
    let daemon = Daemon::start(&toml).await;
    let failures = |phase: &str, name: &str| {
        format!(r#"oauth2_{phase}_request_failures_total{{provider="{name}",reason="dpop"}}"#)
    };
    daemon
        .wait_for(
            |m| {
                [("token", "refuse"), ("token", "bearer")]
                    .iter()
                    .chain(&[("canary", "api-refuses"), ("canary", "api-bearer")])
                    .all(|(phase, name)| {
                        sample(m, &failures(phase, name)).is_some_and(|v| v >= 2.0)
                    })
                    && sample(m, r#"oauth2_probe_success{provider="plain"}"#) == Some(1.0)
            },
            WAIT,
        )
        .await;
    let cases = [
        (
            "refuse",
            "reason dpop: OAuth error invalid_dpop_proof: the proof's key is not the one registered for this client",
        ),
        (
            "bearer",
            r#"reason dpop: DPoP: the server answered token_type "Bearer" to a DPoP token request"#,
        ),
        (
            "api-refuses",
            "reason dpop: DPoP: the API refused the proof (401): invalid_dpop_proof: htu does not match",
        ),
        (
            "api-bearer",
            "reason dpop: DPoP: the API answered the DPoP-bound call with a Bearer challenge only (401: invalid_token): it does not take DPoP tokens",
        ),
    ];
    for (name, expected) in cases {
        let trace =
            support::get_text(&daemon.url(&format!("/probe?provider={name}&debug=true"))).await;
        assert!(trace.contains(expected), "{expected:?} not in\n{trace}");
    }
    // Every request of the DPoP providers carried a proof; the opted-out one's none, and its
    // canary went out as Bearer.
    for request in server.requests() {
        let plain = request.path.starts_with("/plain/");
        assert_eq!(request.header("dpop").is_none(), plain, "{request:?}");
        if request.path.ends_with("/api") {
            let scheme = if plain { "Bearer " } else { "DPoP " };
            assert!(
                request.header("authorization").unwrap().starts_with(scheme),
                "{request:?}"
            );
        }
    }
    daemon.stop().await;
}

/// `dpop_key_file` (PEM, the key's own algorithm unless `dpop_signing_algorithm` says) signs
/// the proofs, and a rotated key is taken up without a restart, with a fresh token (the held
/// one is bound to the old key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_signs_and_its_rotation_gets_a_fresh_token() {
    let server = FakeServer::start(|request| match request.path.as_str() {
        "/token" => Reply::json(
            200,
            json!({"access_token": format!("at-{}", now()), "token_type": "DPoP", "expires_in": 3600}),
        ),
        _ => Reply::status(200),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key = new_key_file(dir.path(), "dpop.key", &rcgen::PKCS_RSA_SHA256);
    let second = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let toml = Provider::new("keyed", &server.url("/token"))
        .interval("200ms")
        .timeout("5s")
        .token_key("reuse", "true")
        .token_key("dpop", "true")
        .token_key("dpop_signing_algorithm", r#""PS256""#)
        .token_file("dpop_key_file", &key)
        .canary(&server.url("/api"))
        .toml();
    let daemon = Daemon::start(&toml).await;
    server.wait_for_requests("/api", 3, WAIT).await;
    let jkt_of = |request: &Recorded| check_proof(request).unwrap().jkt;
    assert_eq!(
        server.count("/token"),
        1,
        "reuse: one token for these calls"
    );
    let old = jkt_of(&server.requests_to("/token")[0]);
    for call in server.requests_to("/api") {
        assert_eq!(jkt_of(&call), old, "the key file's key");
    }
    std::fs::write(&key, second.serialize_pem()).unwrap();
    server.wait_for_requests("/token", 2, WAIT).await;
    let calls_before = server.count("/api");
    server
        .wait_for_requests("/api", calls_before + 1, WAIT)
        .await;
    let new = jkt_of(&server.requests_to("/token")[1]);
    assert_ne!(new, old, "the rotated key signs");
    let last_call = server.requests_to("/api").pop().unwrap();
    assert_eq!(jkt_of(&last_call), new);
    daemon.stop().await;
}

/// Keys that cannot work stop loading, each named with what is allowed; the messages show no
/// key material.
#[test]
fn bad_dpop_settings_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let rsa_key = support::certs::write(dir.path(), "rsa.key", &rsa.serialize_pem());
    let missing = dir.path().join("missing.key");
    let problems = |defaults: &str, token: &str| {
        let toml = format!(
            "[defaults]\n{defaults}\n[providers.p.token]\nurl = \"https://idp.example/token\"\n\
             client_id = \"p\"\nclient_secret = \"s\"\n{token}"
        );
        match config::load_str(&toml, &Overrides::default()) {
            Ok(_) => vec!["loaded".to_string()],
            Err(error) => error.problems,
        }
    };
    let key =
        |path: &std::path::Path| format!("dpop_key_file = {:?}\n", path.display().to_string());
    let cases: Vec<(&str, String, String)> = vec![
        (
            "",
            "dpop = true\ndpop_signing_algorithm = \"ES512\"".into(),
            r#"key `providers.p.token.dpop_signing_algorithm`: unknown value "ES512"; allowed: ES256 (EC P-256, the default), RS256, PS256 (RSA)"#.into(),
        ),
        (
            "dpop_signing_algorithm = \"HS256\"",
            "dpop = true".into(),
            "key `defaults.dpop_signing_algorithm`: HS256 cannot sign a DPoP proof (RFC 9449 requires an asymmetric algorithm); allowed: ES256 (EC P-256, the default), RS256, PS256 (RSA)".into(),
        ),
        (
            "",
            format!("dpop = true\n{}", key(&missing)),
            format!(
                "key `providers.p.token.dpop_key_file`: cannot read {}: no such file or directory",
                missing.display()
            ),
        ),
        (
            "dpop = true",
            format!("dpop_signing_algorithm = \"ES256\"\n{}", key(&rsa_key)),
            format!(
                "key `providers.p.token.dpop_signing_algorithm`: ES256 does not fit an RSA key; allowed with it: RS256, PS256 (the key in {})",
                rsa_key.display()
            ),
        ),
        (
            "",
            key(&rsa_key),
            "key `providers.p.token.dpop_key_file`: only meaningful with dpop = true (here or in [defaults]); set it or remove this key".into(),
        ),
        (
            "dpop = \"yes\"",
            String::new(),
            r#"TOML source string: key `defaults.dpop`: expected true or false, found string "yes""#
                .into(),
        ),
    ];
    let mut failures = Vec::new();
    for (defaults, token, expected) in &cases {
        let got = problems(defaults, token);
        if got != [expected.as_str()] {
            failures.push(format!(
                "{defaults} / {token}\n  expected: {expected}\n  got:      {got:?}"
            ));
        }
        let body = rsa.serialize_pem().lines().nth(1).unwrap().to_string();
        assert!(!got.concat().contains(&body), "key material in {got:?}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // What works: on in [defaults], off for one provider; the key file's own algorithm.
    let loaded = config::load_str(
        &format!(
            "[defaults]\ndpop = true\n\
             [providers.on.token]\nurl = \"https://idp.example/token\"\nclient_id = \"a\"\nclient_secret = \"s\"\n{}\
             [providers.off.token]\nurl = \"https://idp.example/token\"\nclient_id = \"b\"\nclient_secret = \"s\"\ndpop = false\n",
            key(&rsa_key)
        ),
        &Overrides::default(),
    )
    .expect("loads");
    let dpop = |name: &str| {
        loaded
            .providers
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .token
            .dpop
            .clone()
    };
    let on = dpop("on").expect("inherited from [defaults]");
    assert_eq!(on.algorithm, None, "the key's own (RS256 for RSA)");
    assert_eq!(on.key_file.as_deref(), Some(rsa_key.as_path()));
    assert!(dpop("off").is_none());
}

/// With `issuer`, a DPoP algorithm the metadata's `dpop_signing_alg_values_supported` does not
/// list fails discovery saying so (every proof would be refused); one it lists is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_checks_the_dpop_algorithm() {
    let issuer = Arc::new(Mutex::new(String::new()));
    let metadata_issuer = Arc::clone(&issuer);
    let server = FakeServer::start(move |request| match request.path.as_str() {
        "/.well-known/openid-configuration" => {
            let issuer = metadata_issuer.lock().unwrap().clone();
            Reply::json(
                200,
                json!({
                    "issuer": issuer,
                    "token_endpoint": format!("{issuer}/token"),
                    "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
                }),
            )
        }
        "/token" => Reply::json(
            200,
            json!({"access_token": "at-discovered-1", "token_type": "DPoP", "expires_in": 3600}),
        ),
        _ => Reply::status(404),
    })
    .await;
    *issuer.lock().unwrap() = server.url("").trim_end_matches('/').to_string();
    let issuer_url = issuer.lock().unwrap().clone();
    let toml = [
        support::config::defaults(&[
            ("interval", r#""300ms""#),
            ("timeout", r#""5s""#),
            ("dpop", "true"),
        ]),
        support::config::providers(&[
            Provider::issuer("es256", &issuer_url),
            Provider::issuer("ps256", &issuer_url)
                .token_key("dpop_signing_algorithm", r#""PS256""#),
        ]),
    ]
    .concat();
    let daemon = Daemon::start(&toml).await;
    daemon
        .wait_for(
            |m| {
                sample(m, r#"oauth2_probe_success{provider="es256"}"#) == Some(1.0)
                    && sample(
                        m,
                        r#"oauth2_token_request_failures_total{provider="ps256",reason="discovery"}"#,
                    )
                    .is_some_and(|v| v >= 1.0)
            },
            WAIT,
        )
        .await;
    let trace = support::get_text(&daemon.url("/probe?provider=ps256&debug=true")).await;
    let expected = "discovery: the issuer does not take DPoP proofs signed PS256 (dpop_signing_algorithm): its dpop_signing_alg_values_supported lists [ES256, EdDSA]";
    assert!(trace.contains(expected), "{expected:?} not in\n{trace}");
    // The PS256 provider never asked for a token: each one went out with an ES256 proof.
    let tokens = server.requests_to("/token");
    assert!(!tokens.is_empty());
    for request in tokens {
        let proof = request.header("dpop").unwrap();
        assert_eq!(decode(proof.split('.').next().unwrap())["alg"], "ES256");
        check_proof(&request).unwrap();
    }
    daemon.stop().await;
}
