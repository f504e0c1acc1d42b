//! Issue 12 §1 on the wire: a fake token endpoint asserts on the exact requests the daemon sends
//! for `private_key_jwt` (header `alg`, `kid`, `x5t`, `x5t#S256` computed here from the test
//! certificate; claims; a fresh `jti` every time; a signature that verifies with the public key;
//! no secret in the body), `client_secret_jwt` (HS256 with the secret), `tls_client_auth` (only
//! `client_id`), with the password grant too; a key rotated on disk is used without a restart,
//! a key that no longer fits its certificate is reason `client_assertion` with nothing sent; and
//! `/probe?debug=true` shows the decoded assertion, never the assertion itself. Issue 25: the
//! exact `jwt_bearer` grant request (every claim, the signature, with no client authentication,
//! with Basic, from a file, with a discovered audience), and `client_assertion_file` read for
//! every request, its `exp` exported, an expired or missing one reason `client_assertion`.

use crate::support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use support::{Daemon, FakeServer, Provider, Recorded, Reply, sample};

const WAIT: Duration = Duration::from_secs(20);
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const HMAC_SECRET: &str = "hs256-Secret-for-the-fake-0123456789";
const PASSWORD: &str = "pa55-for-the-fake";

/// A key pair made here, with a self-signed certificate for it.
struct Credential {
    key_pem: String,
    cert_pem: String,
    cert_der: Vec<u8>,
    /// The public key as a certificate holds it (for verifying signatures).
    public_key: Vec<u8>,
}

fn credential(algorithm: &'static rcgen::SignatureAlgorithm) -> Credential {
    let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
    let params = rcgen::CertificateParams::new(vec!["okq8-exporter.test".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    Credential {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        public_key: parsed.public_key().subject_public_key.data.to_vec(),
    }
}

fn thumbprint(algorithm: &'static digest::Algorithm, der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(algorithm, der))
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The client assertion of a recorded token request: (header, claims, signing input, signature).
fn assertion_of(request: &Recorded) -> (Value, Value, String, Vec<u8>) {
    let form = request.form_map();
    split_jws(form.get("client_assertion").expect("a client_assertion"))
}

/// A compact JWS taken apart: (header, claims, signing input, signature).
fn split_jws(assertion: &str) -> (Value, Value, String, Vec<u8>) {
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    (
        decode(parts[0]),
        decode(parts[1]),
        format!("{}.{}", parts[0], parts[1]),
        URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
    )
}

/// Fails unless the assertion `claims` take the defaults: the client id as `iss` and `sub`, the
/// token URL as `aud`.
#[track_caller]
fn assert_default_iss_sub_aud(claims: &Value, client_id: &str, token_url: &str) {
    assert_eq!(claims["iss"], client_id);
    assert_eq!(claims["sub"], client_id);
    assert_eq!(claims["aud"], token_url, "default: the token URL");
}

/// The JOSE header of an RS256 assertion with key id `key_id`, naming the certificate
/// `cert_der` by both its thumbprints.
fn rs256_header(key_id: &str, cert_der: &[u8]) -> Value {
    json!({
        "alg": "RS256",
        "typ": "JWT",
        "kid": key_id,
        "x5t": thumbprint(&digest::SHA1_FOR_LEGACY_USE_ONLY, cert_der),
        "x5t#S256": thumbprint(&digest::SHA256, cert_der),
    })
}

/// An RSA and an EC credential made here, in a fresh directory that holds the RSA key and
/// certificate and the EC key: (the directory, which must live as long as the daemon reads
/// them, the RSA credential, the EC credential, the paths of the RSA key, the RSA certificate
/// and the EC key).
fn key_files() -> (
    tempfile::TempDir,
    Credential,
    Credential,
    String,
    String,
    String,
) {
    let dir = tempfile::tempdir().unwrap();
    let rsa = credential(&rcgen::PKCS_RSA_SHA256);
    let ec = credential(&rcgen::PKCS_ECDSA_P256_SHA256);
    let rsa_key = write(dir.path(), "rsa.key", &rsa.key_pem);
    let rsa_cert = write(dir.path(), "rsa.crt", &rsa.cert_pem);
    let ec_key = write(dir.path(), "ec.key", &ec.key_pem);
    (dir, rsa, ec, rsa_key, rsa_cert, ec_key)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_sends_exactly_what_it_must() {
    let idp = FakeServer::start(|request| match request.path.as_str() {
        path if path.starts_with("/token/") => Reply::token(&format!("t-{}", now()), 3600),
        _ => Reply::status(200),
    })
    .await;
    let (_dir, rsa, ec, rsa_key, rsa_cert, ec_key) = key_files();
    let toml = [
        support::config::defaults(&[("interval", r#""200ms""#), ("timeout", r#""2s""#)]),
        support::config::providers(&[
            Provider::new("rsa", &idp.url("/token/rsa"))
                .keyless("okq8-exporter", "private_key_jwt")
                .token_file("private_key_file", &rsa_key)
                .token_file("certificate_file", &rsa_cert)
                .token_key("key_id", r#""okq8-2026""#)
                .token_key("scopes", r#"["api://okq8/.default"]"#),
            Provider::new("ec", &idp.url("/token/ec"))
                .keyless("ec-client", "private_key_jwt")
                .token_key("grant_type", r#""password""#)
                .token_key("username", r#""probe@okq8.test""#)
                .token_key("password", &format!("\"{PASSWORD}\""))
                .token_file("private_key_file", &ec_key)
                .token_key(
                    "assertion_audience",
                    r#""https://login.okq8.test/tenant/v2.0""#,
                )
                .token_key("assertion_lifetime", r#""90s""#),
            Provider::new("hmac", &idp.url("/token/hmac"))
                .client("hmac-client", HMAC_SECRET)
                .token_key("auth_method", r#""client_secret_jwt""#),
            Provider::new("mtls", &idp.url("/token/mtls"))
                .keyless("mtls-client", "tls_client_auth")
                .tls_file("client_cert_file", &rsa_cert)
                .tls_file("client_key_file", &rsa_key),
        ]),
    ]
    .concat();
    let daemon = Daemon::start(&toml).await;
    for path in ["/token/rsa", "/token/ec", "/token/hmac", "/token/mtls"] {
        idp.wait_for_requests(path, 3, WAIT).await;
    }

    // private_key_jwt, RS256 with the certificate's thumbprints and the key id.
    let requests = idp.requests_to("/token/rsa");
    let mut jtis = BTreeSet::new();
    for request in &requests {
        assert!(request.header("authorization").is_none(), "no Basic header");
        let form = request.form_map();
        let fields = request.form();
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "grant_type",
                "client_id",
                "client_assertion_type",
                "client_assertion",
                "scope"
            ],
            "exactly these fields, no secret"
        );
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], "okq8-exporter");
        assert_eq!(form["client_assertion_type"], JWT_BEARER);
        let (header, claims, input, signature) = assertion_of(request);
        assert_eq!(header, rs256_header("okq8-2026", &rsa.cert_der));
        assert_default_iss_sub_aud(&claims, "okq8-exporter", &idp.url("/token/rsa"));
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat.abs_diff(now()) < 60, "iat is now");
        assert_eq!(claims["nbf"].as_u64(), Some(iat));
        assert_eq!(
            claims["exp"].as_u64(),
            Some(iat + 300),
            "default lifetime 5m"
        );
        assert_eq!(claims.as_object().unwrap().len(), 7, "{claims}");
        jtis.insert(claims["jti"].as_str().unwrap().to_string());
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &rsa.public_key)
            .verify(input.as_bytes(), &signature)
            .expect("the RS256 signature verifies with the certificate's key");
    }
    assert_eq!(jtis.len(), requests.len(), "a fresh jti each time");

    // private_key_jwt with the password grant, ES256, configured audience and lifetime.
    let request = idp.requests_to("/token/ec").pop().unwrap();
    let form = request.form_map();
    assert_eq!(form["grant_type"], "password");
    assert_eq!(form["username"], "probe@okq8.test");
    assert_eq!(form["password"], PASSWORD);
    assert!(!form.contains_key("client_secret"));
    let (header, claims, input, signature) = assertion_of(&request);
    assert_eq!(header, json!({"alg": "ES256", "typ": "JWT"}));
    assert_eq!(claims["aud"], "https://login.okq8.test/tenant/v2.0");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        90
    );
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &ec.public_key)
        .verify(input.as_bytes(), &signature)
        .expect("the ES256 signature verifies");

    // client_secret_jwt: HS256 with the secret, which itself is never sent.
    let request = idp.requests_to("/token/hmac").pop().unwrap();
    assert!(!request.body_text().contains(HMAC_SECRET));
    assert!(request.header("authorization").is_none());
    let (header, claims, input, signature) = assertion_of(&request);
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
    assert_eq!(claims["sub"], "hmac-client");
    let key = hmac::Key::new(hmac::HMAC_SHA256, HMAC_SECRET.as_bytes());
    hmac::verify(&key, input.as_bytes(), &signature).expect("the HS256 signature verifies");

    // tls_client_auth: only the client id (the certificate is in the TLS layer).
    let request = idp.requests_to("/token/mtls").pop().unwrap();
    assert_eq!(
        request.form(),
        [
            ("grant_type".to_string(), "client_credentials".to_string()),
            ("client_id".to_string(), "mtls-client".to_string()),
        ]
    );
    assert!(request.header("authorization").is_none());

    // The debug trace: the decoded header and claims, never the assertion or its signature.
    let trace = support::get_text(&daemon.url("/probe?provider=rsa&debug=true")).await;
    let last = idp.requests_to("/token/rsa").pop().unwrap();
    let sent = last.form_map()["client_assertion"].clone();
    assert!(trace.contains("client_assertion=[redacted]"), "{trace}");
    assert!(
        trace.contains("client assertion (private_key_jwt; decoded, signature not shown):"),
        "{trace}"
    );
    assert!(trace.contains(&format!(
        "\"x5t#S256\":\"{}\"",
        thumbprint(&digest::SHA256, &rsa.cert_der)
    )));
    assert!(trace.contains(&format!("\"aud\": \"{}\"", idp.url("/token/rsa"))));
    let signature = sent.rsplit('.').next().unwrap();
    assert!(!trace.contains(signature), "the signature is in the trace");
    for request in idp.requests_to("/token/rsa") {
        let assertion = &request.form_map()["client_assertion"];
        assert!(
            !trace.contains(assertion.as_str()),
            "an assertion is in the trace"
        );
    }
    for line in rsa.key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!trace.contains(line), "key material in the trace");
    }
    daemon.stop().await;
}

/// Rotation without restart: a new key and certificate written over the old ones are used by
/// the next request; a key that does not match its certificate (a half-done rotation) is
/// reason `client_assertion`, with no request sent, until the certificate follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_used_and_a_half_done_rotation_is_client_assertion() {
    let idp = FakeServer::start(|_| Reply::token("t", 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let old = credential(&rcgen::PKCS_ECDSA_P256_SHA256);
    let new = credential(&rcgen::PKCS_ECDSA_P256_SHA256);
    let key = write(dir.path(), "okq8.key", &old.key_pem);
    let cert = write(dir.path(), "okq8.crt", &old.cert_pem);
    let toml = Provider::new("okq8", &idp.url("/token"))
        .interval("200ms")
        .timeout("2s")
        .keyless("okq8", "private_key_jwt")
        .token_file("private_key_file", &key)
        .token_file("certificate_file", &cert)
        .toml();
    let daemon = Daemon::start(&toml).await;
    idp.wait_for_requests("/token", 2, WAIT).await;
    let x5t = |request: &Recorded| assertion_of(request).0["x5t#S256"].clone();
    let old_x5t = json!(thumbprint(&digest::SHA256, &old.cert_der));
    let new_x5t = json!(thumbprint(&digest::SHA256, &new.cert_der));
    assert_eq!(x5t(&idp.requests_to("/token").pop().unwrap()), old_x5t);

    // Half a rotation: the new key beside the old certificate.
    write(dir.path(), "okq8.key", &new.key_pem);
    let metrics = daemon
        .wait_for(
            |m| {
                sample(
                    m,
                    "oauth2_token_request_failures_total{provider=\"okq8\",reason=\"client_assertion\"}",
                )
                .is_some_and(|v| v >= 2.0)
            },
            WAIT,
        )
        .await;
    let sent_before = idp.count("/token");
    assert_eq!(
        sample(&metrics, "oauth2_probe_success{provider=\"okq8\"}"),
        Some(0.0)
    );
    // The whole rotation: the certificate follows, and the next request carries it.
    write(dir.path(), "okq8.crt", &new.cert_pem);
    idp.wait_for_requests("/token", sent_before + 2, WAIT).await;
    let last = idp.requests_to("/token").pop().unwrap();
    assert_eq!(x5t(&last), new_x5t);
    let (_, _, input, signature) = assertion_of(&last);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &new.public_key)
        .verify(input.as_bytes(), &signature)
        .expect("signed with the new key");
    // Nothing was sent while the key and certificate disagreed: every request carries a
    // certificate that matches its signature.
    for request in idp.requests_to("/token") {
        let (_, _, input, signature) = assertion_of(&request);
        let public_key = if x5t(&request) == old_x5t {
            &old.public_key
        } else {
            &new.public_key
        };
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key)
            .verify(input.as_bytes(), &signature)
            .expect("no request with a key that does not match its certificate");
    }
    daemon.stop().await;
}

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The assertion of a recorded jwt-bearer request (the `assertion` field).
fn grant_assertion_of(request: &Recorded) -> (Value, Value, String, Vec<u8>) {
    let form = request.form_map();
    split_jws(form.get("assertion").expect("an assertion"))
}

/// Issue 25 §1 on the wire: `grant_type = "jwt_bearer"` (RFC 7523 section 2.1) sends exactly
/// `grant_type`, `assertion` and the client authentication chosen: none (only `client_id`), a
/// secret method (Basic), or an assertion read from `client_assertion_file`. Every claim the
/// keys set is checked (a Google-style `scope` among `assertion_claims`), a fresh `jti` each
/// time, `exp - iat` the lifetime, and the signature against the public key; the default
/// audience is the token endpoint actually used, the discovered one for an `issuer` (whose
/// metadata, like Google's, lists only secret methods: `none` is not checked against them, the
/// grant is, by its registered URN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwt_bearer_grant_sends_exactly_its_assertion_and_optional_client_auth() {
    let idp = FakeServer::start_with_base(move |base, request| {
        match request.path.as_str() {
            "/disco/.well-known/openid-configuration" => Reply::json(
                200,
                json!({
                    "issuer": format!("{base}/disco"),
                    "token_endpoint": format!("{base}/found/token"),
                    "grant_types_supported": [JWT_BEARER_GRANT],
                    // As Google's: secret methods only. `none` authenticates no client,
                    // so it is not checked against them.
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                }),
            ),
            _ => Reply::token(&format!("t-{}", now()), 3600),
        }
    })
    .await;
    let (dir, rsa, ec, rsa_key, rsa_cert, ec_key) = key_files();
    let issued_elsewhere = support::jwt(&json!({
        "iss": "https://ci.example/oidc", "sub": "repo:okq8/exporter", "exp": now() + 3600,
    }));
    let assertion_file = write(dir.path(), "ci.jwt", &format!("{issued_elsewhere}\n"));
    let toml = [
        support::config::defaults(&[("interval", r#""200ms""#), ("timeout", r#""2s""#)]),
        support::config::providers(&[
            // Google-style: no client authentication, every assertion key set.
            Provider::new("google", &idp.url("/token/google"))
                .keyless("svc@project.iam.example", "none")
                .token_key("grant_type", r#""jwt_bearer""#)
                .token_file("private_key_file", &rsa_key)
                .token_file("certificate_file", &rsa_cert)
                .token_key("key_id", r#""google-2026""#)
                .token_key("assertion_issuer", r#""svc@project.iam.example""#)
                .token_key("assertion_subject", r#""probe@okq8.example""#)
                .token_key("assertion_audience", r#""https://oauth2.googleapis.test/token""#)
                .token_key("assertion_lifetime", r#""10m""#)
                .token_key(
                    "assertion_claims",
                    r#"{ scope = "https://www.googleapis.com/auth/cloud-platform", tenants = ["a", "b"], level = 3 }"#,
                ),
            // A confidential client: the grant's assertion and client_secret_basic, defaults.
            Provider::new("basic", &idp.url("/token/basic"))
                .client("bearer-client", "bearer-s3cret")
                .token_key("auth_method", r#""client_secret_basic""#)
                .token_key("grant_type", r#""jwt_bearer""#)
                .token_file("private_key_file", &ec_key)
                .token_key("scopes", r#"["orders.read"]"#),
            // The assertion issued elsewhere, sent as written.
            Provider::new("from_file", &idp.url("/token/from_file"))
                .keyless("ci-client", "none")
                .token_key("grant_type", r#""jwt_bearer""#)
                .token_file("client_assertion_file", &assertion_file),
            // With an issuer, the default audience is the discovered token endpoint.
            Provider::issuer("discovered", &idp.url("/disco"))
                .keyless("disco-client", "none")
                .token_key("grant_type", r#""jwt_bearer""#)
                .token_file("private_key_file", &ec_key),
        ]),
    ]
    .concat();
    let daemon = Daemon::start(&toml).await;
    for path in [
        "/token/google",
        "/token/basic",
        "/token/from_file",
        "/found/token",
    ] {
        idp.wait_for_requests(path, 3, WAIT).await;
    }

    // none: grant_type, assertion and client_id; no secret, no Authorization.
    let requests = idp.requests_to("/token/google");
    let mut jtis = BTreeSet::new();
    for request in &requests {
        assert!(request.header("authorization").is_none());
        let fields: Vec<String> = request.form().into_iter().map(|(k, _)| k).collect();
        assert_eq!(fields, ["grant_type", "assertion", "client_id"], "exactly");
        let form = request.form_map();
        assert_eq!(form["grant_type"], JWT_BEARER_GRANT);
        assert_eq!(form["client_id"], "svc@project.iam.example");
        let (header, claims, input, signature) = grant_assertion_of(request);
        assert_eq!(header, rs256_header("google-2026", &rsa.cert_der));
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat.abs_diff(now()) < 60, "iat is now");
        let jti = claims["jti"].as_str().unwrap().to_string();
        assert!(jti.len() >= 16, "{jti}");
        assert_eq!(
            claims,
            json!({
                "iss": "svc@project.iam.example",
                "sub": "probe@okq8.example",
                "aud": "https://oauth2.googleapis.test/token",
                "iat": iat,
                "nbf": iat,
                "exp": iat + 600,
                "jti": jti,
                "scope": "https://www.googleapis.com/auth/cloud-platform",
                "tenants": ["a", "b"],
                "level": 3,
            })
        );
        jtis.insert(jti);
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &rsa.public_key)
            .verify(input.as_bytes(), &signature)
            .expect("the RS256 signature verifies with the public key");
    }
    assert_eq!(jtis.len(), requests.len(), "a fresh jti each time");

    // client_secret_basic next to the grant's assertion, whose claims take the defaults.
    let request = idp.requests_to("/token/basic").pop().unwrap();
    assert_eq!(
        request.basic_credentials(),
        Some(("bearer-client".to_string(), "bearer-s3cret".to_string()))
    );
    let fields: Vec<String> = request.form().into_iter().map(|(k, _)| k).collect();
    assert_eq!(fields, ["grant_type", "assertion", "scope"]);
    assert_eq!(request.form_map()["scope"], "orders.read");
    let (header, claims, input, signature) = grant_assertion_of(&request);
    assert_eq!(header, json!({"alg": "ES256", "typ": "JWT"}));
    assert_default_iss_sub_aud(&claims, "bearer-client", &idp.url("/token/basic"));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300,
        "default lifetime 5m"
    );
    assert_eq!(claims.as_object().unwrap().len(), 7, "{claims}");
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &ec.public_key)
        .verify(input.as_bytes(), &signature)
        .expect("the ES256 signature verifies");

    // client_assertion_file feeds the grant: sent as its issuer wrote it.
    let request = idp.requests_to("/token/from_file").pop().unwrap();
    assert_eq!(
        request.form(),
        [
            ("grant_type".to_string(), JWT_BEARER_GRANT.to_string()),
            ("assertion".to_string(), issued_elsewhere.clone()),
            ("client_id".to_string(), "ci-client".to_string()),
        ]
    );

    // Discovery: the audience is the endpoint the request went to.
    let request = idp.requests_to("/found/token").pop().unwrap();
    assert_eq!(
        grant_assertion_of(&request).1["aud"],
        idp.url("/found/token")
    );

    // The grant is named in the metrics as configured, and the trace decodes the assertion.
    let metrics = daemon
        .wait_for_sample(r#"oauth2_probe_success{provider="google"}"#, 1.0, WAIT)
        .await;
    assert_eq!(
        sample(
            &metrics,
            r#"oauth2_token_grant_info{grant_type="jwt_bearer",provider="google"}"#
        ),
        Some(1.0)
    );
    let trace = support::get_text(&daemon.url("/probe?provider=google&debug=true")).await;
    assert!(trace.contains("assertion=[redacted]"), "{trace}");
    assert!(
        trace.contains(
            "jwt_bearer grant assertion (signed with private_key_file; decoded, signature not shown):"
        ),
        "{trace}"
    );
    assert!(trace.contains("\"sub\": \"probe@okq8.example\""), "{trace}");
    for request in idp.requests_to("/token/google") {
        let assertion = &request.form_map()["assertion"];
        assert!(
            !trace.contains(assertion.as_str()),
            "an assertion is in the trace"
        );
        assert!(!trace.contains(assertion.rsplit('.').next().unwrap()));
    }
    daemon.stop().await;
}

/// Issue 25 §2: `client_assertion_file` is read for every token request (a rewritten file is
/// sent by the next one, never a cached copy), sent with `client_assertion_type`, and its own
/// `exp` is `credential="client_assertion"`. Expired, then removed, it is reason
/// `client_assertion` with nothing sent, the detail saying which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_assertion_file_is_sent_fresh_and_an_expired_or_missing_one_is_named() {
    let idp = FakeServer::start(|_| Reply::token("t", 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = |n: u64, exp: u64| {
        support::jwt(
            &json!({"iss": "https://k8s.test", "sub": "system:serviceaccount:m:e", "n": n, "exp": exp}),
        )
    };
    let path = dir.path().join("token");
    let first_exp = now() + 3600;
    std::fs::write(&path, token(1, first_exp)).unwrap();
    // Every /probe below makes a real attempt.
    let web = "[web]\nprobe_min_interval = \"0s\"\n";
    let toml = web.to_string()
        + &Provider::new("entra", &idp.url("/token"))
            .interval("200ms")
            .timeout("2s")
            .keyless("entra-client", "client_assertion")
            .token_file("client_assertion_file", &path)
            .token_key(
                "client_assertion_type",
                r#""urn:ietf:params:oauth:client-assertion-type:jwt-spiffe""#,
            )
            .toml();
    let daemon = Daemon::start(&toml).await;
    let expiry = r#"oauth2_client_credential_expiry_timestamp_seconds{credential="client_assertion",provider="entra"}"#;
    daemon.wait_for_sample(expiry, first_exp as f64, WAIT).await;
    let first = idp.wait_for_requests("/token", 1, WAIT).await.remove(0);
    assert_eq!(
        first.form_map(),
        [
            ("grant_type", "client_credentials"),
            ("client_id", "entra-client"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
            ),
            ("client_assertion", token(1, first_exp).as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    );

    // Rewritten by its issuer: the next request carries the new one.
    let second_exp = now() + 7200;
    std::fs::write(&path, token(2, second_exp)).unwrap();
    daemon
        .wait_for_sample(expiry, second_exp as f64, WAIT)
        .await;
    let sent_before = idp.count("/token");
    let next = idp.wait_for_requests("/token", sent_before + 1, WAIT).await;
    assert_eq!(
        next.last().unwrap().form_map()["client_assertion"],
        token(2, second_exp)
    );

    // Expired: reason client_assertion, nothing sent, the gauge shows when it lapsed.
    let lapsed = now() - 5;
    std::fs::write(&path, token(3, lapsed)).unwrap();
    let failures =
        r#"oauth2_token_request_failures_total{provider="entra",reason="client_assertion"}"#;
    let metrics = daemon
        .wait_for(|m| sample(m, failures).is_some_and(|v| v >= 2.0), WAIT)
        .await;
    assert_eq!(sample(&metrics, expiry), Some(lapsed as f64));
    let sent = idp.count("/token");
    let trace = support::get_text(&daemon.url("/probe?provider=entra&debug=true")).await;
    let expired = format!(
        "reason client_assertion: cannot make the client assertion: client_assertion_file {} is expired: its exp is ",
        path.display()
    );
    assert!(trace.contains(&expired), "{trace}");
    assert!(
        idp.requests_to("/token")
            .iter()
            .all(|r| r.form_map()["client_assertion"] != token(3, lapsed)),
        "an expired assertion was sent"
    );

    // Removed: reason client_assertion, saying it is missing.
    std::fs::remove_file(&path).unwrap();
    let trace = support::get_text(&daemon.url("/probe?provider=entra&debug=true")).await;
    let missing = format!("client_assertion_file {} is missing", path.display());
    assert!(trace.contains(&missing), "{trace}");
    assert_eq!(
        idp.count("/token"),
        sent,
        "nothing sent without an assertion"
    );
    daemon.stop().await;
}
