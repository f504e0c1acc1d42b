//! Unit tests of the TLS client certificate followed on disk (issue 22): an unchanged pair
//! keeps the client, a renewed pair gets a new one, a pair whose key is not the certificate's
//! fails naming both files and keeps the old client until a good pair is in place; the
//! thumbprint `certificate_bound` compares with follows the pair presented (issue 25).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::config::load_str;

/// A certificate with its own key, PEM: (certificate, key).
fn pair() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["exporter".into()]).unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn provider(cert: &Path, key: &Path) -> ProviderConfig {
    let toml = format!(
        "[providers.p.token]\nurl = \"https://127.0.0.1:1/token\"\nclient_id = \"id\"\nauth_method = \"tls_client_auth\"\n[providers.p.tls]\nclient_cert_file = {:?}\nclient_key_file = {:?}\n",
        cert.display().to_string(),
        key.display().to_string(),
    );
    load_str(&toml, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .providers
        .remove(0)
}

fn files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("client.pem"), dir.join("client.key"))
}

/// Whether two clients are the same one (the chains record is made per client).
fn same(a: &Client, b: &Client) -> bool {
    Arc::ptr_eq(&a.chains, &b.chains)
}

#[tokio::test]
async fn a_renewed_pair_gets_a_new_client_and_a_mismatched_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = files(dir.path());
    let (first_cert, first_key) = pair();
    std::fs::write(&cert_path, &first_cert).unwrap();
    std::fs::write(&key_path, &first_key).unwrap();
    let config = provider(&cert_path, &key_path);
    let built =
        transport::build_client(&config.tls, &config.proxy, &transport::Slots::new(4)).unwrap();
    let mut client = built.clone();
    let mut identity = TlsIdentity::new(&config);
    let deadline = Duration::from_secs(5);

    // What certificate_bound compares with (issue 25): the presented certificate's x5t#S256.
    let thumbprint = |pem: &str| {
        crate::signing::Certificate::from_pem(pem.as_bytes())
            .unwrap()
            .x5t_s256
    };
    assert_eq!(
        identity.thumbprint(),
        Some(thumbprint(&first_cert).as_str())
    );
    let checked = identity.check(&config, &mut client, deadline).await;
    assert!(checked.failure.is_none() && !checked.renewed, "{checked:?}");
    assert!(
        same(&client, &built),
        "the pair loaded at start: same client"
    );
    assert!(checked.seen.is_some_and(|seen| seen.not_after.is_some()));

    // A new certificate whose key is not in place yet (or never will be).
    let (second_cert, second_key) = pair();
    std::fs::write(&cert_path, &second_cert).unwrap();
    for attempt in 1..=2 {
        let checked = identity.check(&config, &mut client, deadline).await;
        let Some(TokenError::Transport(TransportError::Tls(message))) = &checked.failure else {
            panic!("attempt {attempt}: {checked:?}");
        };
        assert!(
            message.contains(&cert_path.display().to_string())
                && message.contains(&key_path.display().to_string())
                && message.contains("do not match"),
            "names both files: {message}"
        );
        assert!(
            !message.contains("PRIVATE KEY") && !message.contains(second_key.trim()),
            "{message}"
        );
        assert_eq!(
            checked.failure.as_ref().map(TokenError::reason),
            Some(crate::probe::token::TokenReason::Tls)
        );
        assert!(
            same(&client, &built),
            "attempt {attempt}: the old client is kept"
        );
        assert_eq!(
            identity.thumbprint(),
            Some(thumbprint(&first_cert).as_str()),
            "still presenting the first certificate"
        );
    }

    std::fs::write(&key_path, &second_key).unwrap();
    let checked = identity.check(&config, &mut client, deadline).await;
    assert!(checked.failure.is_none() && checked.renewed, "{checked:?}");
    assert!(!same(&client, &built), "a new client presents the new pair");
    assert_eq!(
        identity.thumbprint(),
        Some(thumbprint(&second_cert).as_str()),
        "tokens are now bound to the renewed certificate"
    );
    let renewed = client.clone();
    let checked = identity.check(&config, &mut client, deadline).await;
    assert!(checked.failure.is_none() && !checked.renewed, "{checked:?}");
    assert!(same(&client, &renewed), "unchanged since: kept");

    // A vanished key file: say so, keep presenting the last good pair.
    std::fs::remove_file(&key_path).unwrap();
    let checked = identity.check(&config, &mut client, deadline).await;
    assert!(
        matches!(&checked.failure, Some(TokenError::KeyUnavailable(m)) if m.contains("client_key_file") && m.contains("no such file")),
        "{checked:?}"
    );
    assert!(same(&client, &renewed));
}
