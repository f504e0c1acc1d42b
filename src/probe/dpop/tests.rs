//! Unit tests of DPoP proofs (issue 25): what a proof says and that its signature verifies with
//! the public key its header carries, nonces remembered per server and bounded, and the key
//! file followed on disk.

use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair,
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, UnparsedPublicKey,
};
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;

use super::*;

fn config(algorithm: Option<Algorithm>, key_file: Option<std::path::PathBuf>) -> DpopConfig {
    DpopConfig {
        algorithm,
        key_file,
    }
}

async fn loaded(algorithm: Algorithm) -> Dpop {
    let mut dpop = Dpop::default();
    let changed = dpop
        .load(&config(Some(algorithm), None), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(changed, "the first load makes the key");
    dpop
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Checks the proof's signature with the `jwk` of its own header, as a server does.
fn verify(proof: &str) {
    let parts: Vec<&str> = proof.split('.').collect();
    assert_eq!(parts.len(), 3, "{proof}");
    let header = decode(parts[0]);
    let jwk = &header["jwk"];
    let input = format!("{}.{}", parts[0], parts[1]);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let b64 = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    match header["alg"].as_str().unwrap() {
        "ES256" => {
            let mut point = vec![4u8];
            point.extend(b64("x"));
            point.extend(b64("y"));
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(input.as_bytes(), &signature)
                .expect("ES256 proof verifies with its jwk");
        }
        alg => {
            let padding = if alg == "RS256" {
                &RSA_PKCS1_2048_8192_SHA256
            } else {
                &RSA_PSS_2048_8192_SHA256
            };
            PublicKeyComponents {
                n: b64("n"),
                e: b64("e"),
            }
            .verify(padding, input.as_bytes(), &signature)
            .expect("RSA proof verifies with its jwk");
        }
    }
}

#[tokio::test]
async fn a_proof_says_what_rfc_9449_asks_and_verifies_with_its_jwk() {
    for algorithm in [Algorithm::Es256, Algorithm::Rs256, Algorithm::Ps256] {
        let dpop = loaded(algorithm).await;
        let url = Url::parse("https://api.example:8443/v1/items?page=2&api_key=k#top").unwrap();
        let token = AccessToken::new("at-1234567890");
        let proof = dpop.proof(&Method::GET, &url, Some(&token)).unwrap();
        assert!(proof.value.is_sensitive());
        verify(proof.proof.expose());
        let parts: Vec<&str> = proof.proof.expose().split('.').collect();
        let header = decode(parts[0]);
        let claims = decode(parts[1]);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], algorithm.as_str());
        assert!(header["jwk"].get("d").is_none(), "no private member");
        assert_eq!(
            thumbprint(header["jwk"].as_object().unwrap()),
            dpop.thumbprint().unwrap()
        );
        assert_eq!(claims["htm"], "GET");
        // RFC 9449 section 4.2: without query and fragment.
        assert_eq!(claims["htu"], "https://api.example:8443/v1/items");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(claims["iat"].as_u64().unwrap().abs_diff(now) <= 5);
        // base64url SHA-256 of the token, worked out independently.
        let ath = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, b"at-1234567890"));
        assert_eq!(claims["ath"], ath);
        assert!(claims.get("nonce").is_none());
        // What the trace shows is what was signed.
        assert_eq!(Value::Object(proof.header.clone()), header);
        assert_eq!(Value::Object(proof.claims.clone()), claims);
        // A token request's proof has no `ath`; every proof has its own `jti`.
        let other = dpop.proof(&Method::POST, &url, None).unwrap();
        assert!(other.claims.get("ath").is_none());
        assert_eq!(other.claims["htm"], "POST");
        assert_ne!(other.claims["jti"], claims["jti"]);
    }
}

#[tokio::test]
async fn nonces_are_kept_per_server_and_bounded() {
    let mut dpop = loaded(Algorithm::Es256).await;
    let token_url = Url::parse("https://idp.example/oauth2/token").unwrap();
    let same_server = Url::parse("https://idp.example/other?x=1").unwrap();
    let api = Url::parse("https://api.example/v1").unwrap();
    let with = |nonce: &str| {
        let mut headers = HeaderMap::new();
        headers.insert("dpop-nonce", HeaderValue::from_str(nonce).unwrap());
        headers
    };
    assert!(dpop.saw_nonce(&token_url, &with("n-idp-1")));
    let nonce_of = |dpop: &Dpop, url: &Url| {
        dpop.proof(&Method::POST, url, None)
            .unwrap()
            .claims
            .get("nonce")
            .cloned()
    };
    assert_eq!(nonce_of(&dpop, &same_server), Some("n-idp-1".into()));
    assert_eq!(
        nonce_of(&dpop, &api),
        None,
        "another server's nonce is not sent"
    );
    // A newer nonce replaces the server's last one; a response without one changes nothing.
    assert!(dpop.saw_nonce(&token_url, &with("n-idp-2")));
    assert!(!dpop.saw_nonce(&token_url, &HeaderMap::new()));
    assert_eq!(nonce_of(&dpop, &token_url), Some("n-idp-2".into()));
    // Not a nonce (RFC 9449 section 8: no quote, backslash or space): ignored.
    for bad in ["a\"b", "a\\b", "a b", &"x".repeat(MAX_NONCE_CHARS + 1)] {
        assert!(!dpop.saw_nonce(&token_url, &with(bad)), "{bad}");
    }
    assert_eq!(nonce_of(&dpop, &token_url), Some("n-idp-2".into()));
    // At most MAX_ORIGINS servers: the oldest is forgotten.
    for port in 1..=MAX_ORIGINS {
        let url = Url::parse(&format!("https://api.example:{port}/")).unwrap();
        assert!(dpop.saw_nonce(&url, &with(&format!("n{port}"))));
    }
    assert_eq!(dpop.nonces.len(), MAX_ORIGINS);
    assert_eq!(nonce_of(&dpop, &token_url), None);
}

fn pkcs8_pem(der: &[u8]) -> String {
    let base64 = STANDARD.encode(der);
    let lines: Vec<String> = base64
        .as_bytes()
        .chunks(64)
        .map(|chunk| String::from_utf8(chunk.to_vec()).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

fn ec_pem() -> String {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    pkcs8_pem(document.as_ref())
}

/// `dpop_key_file` is read every cycle and parsed again when it changes: a rotated key says it
/// changed (the held token is bound to the old one), an unchanged one does not; a file gone is
/// unreadable (`secret_unavailable`), a bad key or one that does not fit the algorithm is
/// unusable (`dpop`), and then no key is held.
#[tokio::test]
async fn the_key_file_is_followed_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dpop.key");
    std::fs::write(&path, ec_pem()).unwrap();
    let deadline = Duration::from_secs(5);
    let settings = config(None, Some(path.clone()));
    let mut dpop = Dpop::default();
    assert_eq!(dpop.load(&settings, deadline).await, Ok(true));
    let first = dpop.thumbprint().unwrap().to_string();
    assert_eq!(dpop.load(&settings, deadline).await, Ok(false));
    std::fs::write(&path, ec_pem()).unwrap();
    assert_eq!(dpop.load(&settings, deadline).await, Ok(true));
    assert_ne!(dpop.thumbprint().unwrap(), first);

    let rs256 = config(Some(Algorithm::Rs256), Some(path.clone()));
    let error = dpop.load(&rs256, deadline).await.unwrap_err();
    assert!(
        matches!(&error, DpopError::Unusable(text) if text.contains("RS256 does not fit an EC P-256 key")),
        "{error}"
    );
    assert!(
        dpop.thumbprint().is_none(),
        "no key is held after a failure"
    );
    assert!(
        dpop.proof(
            &Method::GET,
            &Url::parse("https://a.example/").unwrap(),
            None
        )
        .is_err()
    );

    std::fs::write(&path, "not a key").unwrap();
    let error = dpop.load(&settings, deadline).await.unwrap_err();
    assert!(matches!(error, DpopError::Unusable(_)), "{error}");
    std::fs::remove_file(&path).unwrap();
    let error = dpop.load(&settings, deadline).await.unwrap_err();
    assert!(
        matches!(&error, DpopError::Unreadable(text) if text.starts_with("cannot read ")),
        "{error}"
    );
    assert!(!format!("{dpop:?}").contains("PRIVATE"));
}
