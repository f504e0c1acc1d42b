//! The shipped `exporter.toml` loads as it is, and each commented provider section is a valid
//! configuration once uncommented (issue #2: "a commented section in the shipped exporter.toml").

use crate::support;

use std::path::Path;

use support::Binary;

fn check(config: &Path, secrets_dir: &Path) -> (bool, String) {
    let output = Binary::new()
        .args(["--config.check", "--config.file"])
        .arg(config)
        .env("EQHUB_CLIENT_SECRET", "x-eqhub")
        .env("OKQ8_CLIENT_SECRET", "x-okq8")
        .env("OKQ8_APIM_KEY", "x-okq8-apim")
        .env("NEXTOME_CLIENT_SECRET", "x-nextome")
        .env("EVERACTIVE_CLIENT_SECRET", "x-everactive")
        .env("OKTA_CLIENT_SECRET", "x-okta")
        .current_dir(secrets_dir)
        .run();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The provider sections: from a `# --- Name` line up to the next, without the key reference.
fn provider_sections(text: &str) -> Vec<(String, String)> {
    let mut sections = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("# --- ") {
            sections.extend(current.take());
            if title.starts_with("Every key") {
                break;
            }
            current = Some((title.to_string(), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line.strip_prefix("# ").unwrap_or(line));
            body.push('\n');
        }
    }
    sections.extend(current);
    sections
}

#[test]
fn shipped_config_is_valid_as_shipped() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (ok, output) = check(&root.join("exporter.toml"), root);
    assert!(ok, "{output}");
    assert!(
        output.contains("configuration is valid (0 providers)"),
        "{output}"
    );
}

#[test]
fn every_commented_provider_section_is_valid_when_uncommented() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("exporter.toml"))
        .unwrap();
    let head: String = text
        .lines()
        .take_while(|line| !line.starts_with("# --- "))
        .map(|line| format!("{line}\n"))
        .collect();
    let sections = provider_sections(&text);
    let titles: Vec<&str> = sections.iter().map(|(t, _)| t.as_str()).collect();
    for provider in ["EqHub", "OKQ8", "Cube", "Nextome", "Everactive"] {
        assert!(
            titles.iter().any(|t| t.starts_with(provider)),
            "no section for {provider} in {titles:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    for (title, body) in sections {
        // Secret files named in the examples live under /run/secrets; point them at the temp dir.
        let body = body.replace("/run/secrets/", &format!("{}/", dir.path().display()));
        for file in ["cube_client_secret", "everactive_password"] {
            std::fs::write(dir.path().join(file), "x-secret\n").unwrap();
        }
        // The certificate credential's key and certificate (issue 12): a matching pair.
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["okq8.test".to_string()]).unwrap();
        std::fs::write(dir.path().join("okq8.key"), key.serialize_pem()).unwrap();
        std::fs::write(
            dir.path().join("okq8.crt"),
            params.self_signed(&key).unwrap().pem(),
        )
        .unwrap();
        // The Google-style service account's key (issue 25).
        std::fs::write(
            dir.path().join("google-sa.key"),
            rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
                .unwrap()
                .serialize_pem(),
        )
        .unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, format!("{head}{body}")).unwrap();
        let (ok, output) = check(&config, dir.path());
        assert!(
            ok,
            "section {title:?} is invalid when uncommented:\n{output}"
        );
        assert!(
            output.contains("configuration is valid (1 provider)"),
            "section {title:?}: {output}"
        );
    }
}
