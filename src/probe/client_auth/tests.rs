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
            let shown = decoration.assertion.as_ref().unwrap();
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
    };
    let decoration = ClientAuth::default()
        .decorate(&config, &credentials, &endpoint(), &mut Scrubber::default())
        .unwrap();
    assert_eq!(names(&decoration), ["client_id"]);
    assert!(decoration.authorization.is_none() && decoration.assertion.is_none());
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
