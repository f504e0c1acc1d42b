//! Unit tests of client authentication: each method adds exactly its fields, and prepared
//! material (the Basic header, a parsed key) is reused while its source is unchanged and made
//! again when it changes (issue 15: rebuilding the Basic header every cycle cost ~6 % of CPU).

use std::time::Duration;

use super::*;
use crate::config::load_str;

fn token_config(extra: &str) -> TokenConfig {
    let toml = format!(
        "[providers.p.token]\nurl = \"http://127.0.0.1:1/token\"\nclient_id = \"id\"\n{extra}"
    );
    load_str(&toml, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .providers[0]
        .token
        .clone()
}

fn with_secret(secret: &str) -> Credentials {
    Credentials {
        client_secret: Some(Secret::new(secret)),
        password: None,
        key: None,
        key_fingerprint: 0,
        assertion_file: None,
    }
}

fn endpoint() -> Url {
    Url::parse("http://127.0.0.1:1/token").unwrap()
}

#[test]
fn each_method_adds_exactly_its_fields() {
    let names = |decoration: &Decoration| -> Vec<String> {
        decoration.fields.iter().map(|(k, _)| k.clone()).collect()
    };
    let rows: [(&str, &[&str], bool); 4] = [
        (
            "client_secret = \"s3cret-value\"",
            &["client_id", "client_secret"],
            false,
        ),
        (
            "client_secret = \"s3cret-value\"\nauth_method = \"client_secret_basic\"",
            &[],
            true,
        ),
        (
            "client_secret = \"s3cret-value\"\nauth_method = \"json_body\"\njson_fields = { client_id = \"clientId\", client_secret = \"clientSecret\" }",
            &["clientId", "clientSecret"],
            false,
        ),
        (
            "client_secret = \"s3cret-value\"\nauth_method = \"client_secret_jwt\"",
            &["client_id", "client_assertion_type", "client_assertion"],
            false,
        ),
    ];
    for (extra, fields, basic) in rows {
        let config = token_config(extra);
        let mut scrubber = Scrubber::default();
        let decoration = ClientAuth::default()
            .decorate(
                &config,
                &with_secret("s3cret-value"),
                &endpoint(),
                &mut scrubber,
            )
            .unwrap();
        assert_eq!(names(&decoration), fields, "{extra}");
        assert_eq!(decoration.authorization.is_some(), basic, "{extra}");
        // Whatever was sent is scrubbed from what comes back.
        assert_eq!(scrubber.scrub("echo s3cret-value"), "echo [redacted]");
        if let Some((_, assertion)) = decoration
            .fields
            .iter()
            .find(|(k, _)| k == "client_assertion")
        {
            assert_eq!(scrubber.scrub(assertion), "[redacted]");
            assert!(!assertion.contains("s3cret-value"));
            let shown = &decoration.assertions[0];
            assert_eq!(shown.header["alg"], "HS256");
            assert_eq!(shown.claims["aud"], "http://127.0.0.1:1/token");
        }
    }
    // tls_client_auth: only the client id (the certificate is the TLS layer's; validation has
    // checked it is configured).
    let mut config = token_config("client_secret = \"unused\"");
    config.auth_method = AuthMethod::TlsClientAuth;
    config.client_secret = None;
    let credentials = Credentials {
        client_secret: None,
        password: None,
        key: None,
        key_fingerprint: 0,
        assertion_file: None,
    };
    let decoration = ClientAuth::default()
        .decorate(&config, &credentials, &endpoint(), &mut Scrubber::default())
        .unwrap();
    assert_eq!(names(&decoration), ["client_id"]);
    assert!(decoration.authorization.is_none() && decoration.assertions.is_empty());
}

#[test]
fn the_basic_header_is_built_again_only_when_the_secret_changes() {
    let config = token_config("client_secret = \"first\"\nauth_method = \"client_secret_basic\"");
    let mut auth = ClientAuth::default();
    let mut header = |secret: &str| {
        auth.decorate(
            &config,
            &with_secret(secret),
            &endpoint(),
            &mut Scrubber::default(),
        )
        .unwrap()
        .authorization
        .unwrap()
    };
    let first = header("first-secret");
    let again = header("first-secret");
    assert_eq!(first, again);
    // The same bytes, not a copy: the cached value was handed out.
    assert_eq!(first.as_bytes().as_ptr(), again.as_bytes().as_ptr());
    let rotated = header("rotated-secret");
    assert_ne!(rotated, first);
    assert_eq!(
        rotated,
        basic_authorization(BasicEncoding::Form, "id", "rotated-secret")
    );
}

#[tokio::test]
async fn a_key_is_parsed_again_only_when_its_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.key");
    let write_key = || {
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&path, key.serialize_pem()).unwrap();
    };
    write_key();
    let config = token_config(&format!(
        "auth_method = \"private_key_jwt\"\nprivate_key_file = {:?}",
        path.display().to_string()
    ));
    let mut auth = ClientAuth::default();
    let deadline = Duration::from_secs(5);
    let key = |credentials: &Credentials| Arc::clone(credentials.key.as_ref().unwrap());
    let first = key(&auth.read(&config, deadline).await.unwrap());
    let again = key(&auth.read(&config, deadline).await.unwrap());
    assert!(
        Arc::ptr_eq(&first, &again),
        "unchanged file: the parsed key is reused"
    );
    write_key();
    let rotated = key(&auth.read(&config, deadline).await.unwrap());
    assert!(!Arc::ptr_eq(&first, &rotated), "a new key is parsed");
    assert_eq!(rotated.algorithm, Algorithm::Es256);

    // A file that no longer holds a usable key: the assertion cannot be made.
    std::fs::write(
        &path,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAMCAQA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let error = auth.read(&config, deadline).await.err().unwrap();
    assert!(
        matches!(&error, AuthError::Assertion(m) if m.contains("holds an encrypted private key")),
        "{error}"
    );
    // A vanished one is a secret that cannot be read.
    std::fs::remove_file(&path).unwrap();
    let error = auth.read(&config, deadline).await.err().unwrap();
    assert!(
        matches!(&error, AuthError::KeyUnreadable(m) if m.contains("no such file")),
        "{error}"
    );
}

/// Issue 22: with `private_key_jwt` and `certificate_file`, a cycle that requests a token reads
/// the certificate once (client authentication used to read it again after the expiry watch
/// had), and the watch shows the notAfter of the certificate the assertion was made with.
#[tokio::test]
async fn a_token_cycle_reads_the_assertion_certificate_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["exporter".into()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2031, 5, 6);
    let certificate = params.self_signed(&key).unwrap();
    let key_path = dir.path().join("client.key");
    let cert_path = dir.path().join("client.pem");
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::write(&cert_path, certificate.pem()).unwrap();
    // A token endpoint that hangs up: the request is made (the key files are needed for it)
    // and fails, which is all this test needs of it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let toml = format!(
        "[providers.p.token]\nurl = {url:?}\nclient_id = \"id\"\nauth_method = \"private_key_jwt\"\nprivate_key_file = {:?}\ncertificate_file = {:?}\n",
        key_path.display().to_string(),
        cert_path.display().to_string(),
    );
    let config = load_str(&toml, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .providers
        .remove(0);
    let client = crate::probe::transport::build_client(
        &config.tls,
        &config.proxy,
        &crate::probe::transport::Slots::new(4),
    )
    .unwrap();
    let mut prober = crate::probe::Prober::new(Arc::new(config), client);
    for cycle in 1..=2 {
        let (certificate_reads, key_reads) =
            (files::reads_of(&cert_path), files::reads_of(&key_path));
        let report = prober.run_cycle(None).await;
        assert_eq!(report.token_requests.len(), 1, "cycle {cycle}: one request");
        assert_eq!(
            files::reads_of(&key_path) - key_reads,
            1,
            "cycle {cycle}: private_key_file read once"
        );
        assert_eq!(
            files::reads_of(&cert_path) - certificate_reads,
            1,
            "cycle {cycle}: certificate_file read once"
        );
        let expected = humantime::parse_rfc3339("2031-05-06T00:00:00Z").unwrap();
        assert_eq!(
            report.expiries.credential
                [crate::probe::expiry::Credential::ClientCertificate as usize],
            crate::probe::expiry::unix_seconds(expected),
            "cycle {cycle}: the watch has the certificate's notAfter"
        );
    }
    server.abort();
}

/// `client_assertion_file` (issue 25): read for each request and sent as its issuer wrote it;
/// each way it can be unusable is a `client_assertion` failure saying which, and its `exp` is
/// noted for the expiry gauge even when it has passed.
#[tokio::test]
async fn the_client_assertion_file_is_read_for_each_request_and_each_fault_is_named() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let config = token_config(&format!(
        "auth_method = \"client_assertion\"\nclient_assertion_file = '{}'",
        path.display()
    ));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let jwt = |claims: Value| {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k8s"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    };
    let mut auth = ClientAuth::default();
    let failure = |result: Result<Credentials, AuthError>| match result {
        Err(AuthError::Assertion(message)) => message,
        Err(other) => panic!("not a client_assertion failure: {other:?}"),
        Ok(_) => panic!("read an unusable assertion"),
    };
    let shown = path.display();

    let first = jwt(json!({"iss": "https://kubernetes.default.svc", "exp": now + 3600}));
    std::fs::write(&path, format!("{first}\n")).unwrap();
    let credentials = auth.read(&config, Duration::from_secs(5)).await.unwrap();
    let seen = auth.take_assertion_seen().unwrap();
    assert_eq!(seen.not_after, Some(now + 3600));
    let mut scrubber = Scrubber::default();
    let decoration = auth
        .decorate(&config, &credentials, &endpoint(), &mut scrubber)
        .unwrap();
    assert_eq!(
        decoration.fields,
        [
            ("client_id".to_string(), "id".to_string()),
            ("client_assertion_type".to_string(), JWT_BEARER.to_string()),
            ("client_assertion".to_string(), first.clone()),
        ],
        "sent as written, without its line break"
    );
    assert_eq!(scrubber.scrub(&first), "[redacted]");
    assert_eq!(decoration.assertions[0].header["kid"], "k8s");

    // Rewritten by its issuer: the next request sends the new one.
    let second = jwt(json!({"iss": "https://kubernetes.default.svc", "exp": now + 7200}));
    std::fs::write(&path, &second).unwrap();
    let credentials = auth.read(&config, Duration::from_secs(5)).await.unwrap();
    let decoration = auth
        .decorate(&config, &credentials, &endpoint(), &mut Scrubber::default())
        .unwrap();
    assert_eq!(decoration.fields[2].1, second);
    assert_ne!(
        credentials.fingerprints()[3],
        0,
        "its fingerprint is part of what a request sends"
    );

    std::fs::write(&path, jwt(json!({"iss": "x", "exp": now - 30}))).unwrap();
    let message = failure(auth.read(&config, Duration::from_secs(5)).await);
    assert!(
        message.starts_with(&format!(
            "client_assertion_file {shown} is expired: its exp is "
        )),
        "{message}"
    );
    assert!(
        message.ends_with("its issuer has not renewed the file"),
        "{message}"
    );
    assert_eq!(
        auth.take_assertion_seen().unwrap().not_after,
        Some(now - 30),
        "an expired assertion's exp still reaches the gauge"
    );

    std::fs::write(&path, jwt(json!({"iss": "x"}))).unwrap();
    assert_eq!(
        failure(auth.read(&config, Duration::from_secs(5)).await),
        format!(
            "client_assertion_file {shown} has no exp claim (RFC 7523 section 3: an assertion must say when it expires)"
        )
    );

    std::fs::write(&path, "not-a-jwt").unwrap();
    assert_eq!(
        failure(auth.read(&config, Duration::from_secs(5)).await),
        format!(
            "client_assertion_file {shown} is not a JWT (expected three base64url parts, a JSON header and JSON claims; an encrypted JWE cannot be sent as an assertion)"
        )
    );

    std::fs::write(&path, "\n").unwrap();
    assert_eq!(
        failure(auth.read(&config, Duration::from_secs(5)).await),
        format!("client_assertion_file {shown} is empty")
    );

    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        failure(auth.read(&config, Duration::from_secs(5)).await),
        format!(
            "client_assertion_file {shown} is missing (no such file or directory); has its issuer stopped writing it?"
        )
    );
}

/// Issue 25: with the jwt-bearer grant the key signs the grant's assertion while each client
/// authentication keeps its own: `client_secret_jwt` still HS256 with the secret, `none` only
/// the client id.
#[tokio::test]
async fn the_jwt_bearer_grant_signs_with_the_key_and_client_auth_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ec.key");
    std::fs::write(&key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let grant = format!(
        "grant_type = \"jwt_bearer\"\nprivate_key_file = '{}'\nassertion_subject = \"user@example.com\"\n",
        key.display()
    );
    let names = |decoration: &Decoration| -> Vec<String> {
        decoration.fields.iter().map(|(k, _)| k.clone()).collect()
    };
    for (auth, fields, algorithms) in [
        (
            "client_secret = \"s3cret-value-long-enough-for-hs256\"\nauth_method = \"client_secret_jwt\"",
            &[
                "assertion",
                "client_id",
                "client_assertion_type",
                "client_assertion",
            ][..],
            &["ES256", "HS256"][..],
        ),
        (
            "auth_method = \"none\"",
            &["assertion", "client_id"][..],
            &["ES256"][..],
        ),
    ] {
        let config = token_config(&format!("{grant}{auth}"));
        let mut auth_state = ClientAuth::default();
        let credentials = auth_state
            .read(&config, Duration::from_secs(5))
            .await
            .unwrap();
        let decoration = auth_state
            .decorate(&config, &credentials, &endpoint(), &mut Scrubber::default())
            .unwrap();
        assert_eq!(names(&decoration), fields, "{auth}");
        let shown: Vec<&Value> = decoration
            .assertions
            .iter()
            .map(|shown| &shown.header["alg"])
            .collect();
        assert_eq!(shown, algorithms, "{auth}");
        assert_eq!(decoration.assertions[0].claims["sub"], "user@example.com");
        assert_eq!(decoration.assertions[0].claims["iss"], "id");
        if let Some(client) = decoration.assertions.get(1) {
            assert_eq!(
                client.claims["sub"], "id",
                "a client assertion is about the client"
            );
        }
    }
}
