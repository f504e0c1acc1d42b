//! The built-in configuration: TOML strings, every placeholder filled, and every provider
//! driven with it against the server.

use super::*;

#[test]
fn toml_strings_round_trip() {
    assert_eq!(toml_string("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(toml_string("tab\there"), r#""tab\u0009here""#);
}

#[tokio::test]
async fn demo_config_drives_every_provider_against_the_server() {
    use figment::providers::Format as _;
    let demo = start().await;
    let text = demo.server.config_toml();
    let config: Value = figment::Figment::from(figment::providers::Toml::string(&text))
        .extract()
        .unwrap();
    assert_eq!(config["defaults"]["interval"], "5s");
    assert_eq!(config["defaults"]["timeout"], "2s");
    let providers = config["providers"].as_object().unwrap();
    let mut names: Vec<&str> = providers.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cube",
            "eqhub",
            "everactive",
            "everactive-password",
            "nextome",
            "okq8",
            "okq8-certificate",
            "okq8-rotated-secret"
        ]
    );
    assert_eq!(
        providers["okq8-certificate"]["token"]["auth_method"],
        "private_key_jwt"
    );
    assert_eq!(providers["cube"]["token"]["reuse"], true);
    assert_eq!(providers["cube"]["token"]["refresh_before"], "5m");
    assert_eq!(
        providers["everactive"]["token"]["auth_method"],
        "client_secret_basic"
    );
    assert_eq!(
        providers["everactive-password"]["token"]["grant_type"],
        "password"
    );
    assert_eq!(providers["nextome"]["token"]["auth_method"], "json_body");
    for (name, provider) in providers {
        let valid_name = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        assert!(valid_name, "{name}");
        let token_url = str_at(provider, "/token/url");
        let canary_url = str_at(provider, "/canary/url");
        for url in [token_url, canary_url] {
            assert!(
                url.starts_with(&format!("{}/", demo.base)),
                "{name}: {url} not the demo server"
            );
        }
        if name == "okq8-certificate" {
            // Signing is the exporter's job: its own token request must satisfy the demo.
            probe_with_exporter(&demo, &text, name).await;
            continue;
        }
        let outcome = probe(&demo, provider).await;
        if name == "okq8-rotated-secret" {
            assert_eq!(
                outcome.unwrap_err(),
                (401, json!("invalid_client")),
                "{name}"
            );
        } else {
            let (reply, status) = outcome.unwrap_or_else(|e| panic!("{name}: token failed {e:?}"));
            assert_eq!(status, 200, "{name}");
            // Nextome's lifetime exists only inside the JWT.
            assert_eq!(
                reply.get("expires_in").is_none(),
                name == "nextome",
                "{name}: {reply}"
            );
        }
    }
}

/// Every placeholder `config::placeholders` fills is in `demo.toml` and none survives rendering:
/// a renamed one in either place would otherwise leave `{name}` in the configuration.
#[test]
fn every_config_placeholder_is_used_and_filled() {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
    let files = CredentialFiles {
        key_file: "/tmp/demo/okq8.key".into(),
        certificate_file: "/tmp/demo/okq8.crt".into(),
    };
    let text = render(addr, &files);
    for (name, _) in placeholders(addr, &files) {
        let placeholder = format!("{{{name}}}");
        assert!(TEMPLATE.contains(&placeholder), "{placeholder} unused");
        assert!(
            !text.contains(&placeholder),
            "{placeholder} left in:\n{text}"
        );
    }
    assert!(text.contains("http://127.0.0.1:9/eqhub-m2m/eqhub-api/v1/token"));
}
