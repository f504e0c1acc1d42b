//! DPoP key material (RFC 9449, issue 25): a fresh key pair for a provider that has no
//! `dpop_key_file`, the public half as the JWK a proof's header carries, and its RFC 7638
//! thumbprint (what a DPoP-bound token's `cnf.jkt` names). Only public values leave here.

use aws_lc_rs::digest;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::{Algorithm, KeyError, SigningKey};

impl SigningKey {
    /// A new key for `algorithm`: EC P-256 for ES256, RSA 2048 for RS256 and PS256 (the size
    /// every server accepts; a proof is checked once, so a larger key buys nothing). RSA takes a
    /// noticeable moment: callers generate off the async workers.
    pub fn generate(algorithm: Algorithm) -> Result<SigningKey, KeyError> {
        match algorithm {
            Algorithm::Es256 => EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .map(SigningKey::Ec)
                .map_err(|_| KeyError::SigningFailed),
            Algorithm::Rs256 | Algorithm::Ps256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .map(SigningKey::Rsa)
                .map_err(|_| KeyError::SigningFailed),
            Algorithm::Hs256 => Err(KeyError::Unsupported),
        }
    }

    /// The public half as a JWK (RFC 7517): `kty`, and `crv`, `x`, `y` (EC) or `n`, `e` (RSA),
    /// nothing else (RFC 9449 section 4.2: the `jwk` header must not hold a private key).
    pub fn public_jwk(&self) -> Map<String, Value> {
        let b64 = |bytes: &[u8]| Value::from(URL_SAFE_NO_PAD.encode(bytes));
        let mut jwk = Map::new();
        match self {
            SigningKey::Ec(key) => {
                // The uncompressed point: 0x04, then X and Y of 32 bytes each.
                let coordinates = key.public_key().as_ref().get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), "P-256".into());
                jwk.insert("x".into(), b64(x));
                jwk.insert("y".into(), b64(y));
            }
            SigningKey::Rsa(key) => {
                let public = key.public_key();
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert(
                    "n".into(),
                    b64(public.modulus().big_endian_without_leading_zero()),
                );
                jwk.insert(
                    "e".into(),
                    b64(public.exponent().big_endian_without_leading_zero()),
                );
            }
        }
        jwk
    }
}

/// The RFC 7638 thumbprint of a public JWK made by [`SigningKey::public_jwk`]: base64url of
/// the SHA-256 of its required members, sorted, without white space.
pub fn thumbprint(jwk: &Map<String, Value>) -> String {
    let required: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => &["crv", "kty", "x", "y"],
        _ => &["e", "kty", "n"],
    };
    // serde_json's Map keeps keys sorted (no `preserve_order` feature), and `to_string` writes
    // no white space: the canonical form RFC 7638 section 3 asks for.
    let members: Map<String, Value> = required
        .iter()
        .filter_map(|name| {
            jwk.get(*name)
                .map(|value| (name.to_string(), value.clone()))
        })
        .collect();
    let canonical = Value::Object(members).to_string();
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 section 3.1's worked example: the thumbprint of its RSA key.
    #[test]
    fn thumbprint_of_the_rfc_7638_example() {
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let serde_json::Value::Object(jwk) = jwk else {
            unreachable!()
        };
        assert_eq!(
            thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    /// A generated key signs for its algorithm, and its JWK carries the public half only.
    #[test]
    fn generated_keys_publish_only_public_members() {
        for (algorithm, members) in [
            (Algorithm::Es256, vec!["crv", "kty", "x", "y"]),
            (Algorithm::Ps256, vec!["e", "kty", "n"]),
        ] {
            let key = SigningKey::generate(algorithm).unwrap();
            assert_eq!(key.algorithm(Some(algorithm)), Ok(algorithm));
            let jwk = key.public_jwk();
            let names: Vec<&str> = jwk.keys().map(String::as_str).collect();
            assert_eq!(names, members, "{algorithm}");
            assert!(!jwk.contains_key("d"));
            assert_eq!(thumbprint(&jwk).len(), 43);
        }
        let ec = SigningKey::generate(Algorithm::Es256).unwrap().public_jwk();
        for coordinate in ["x", "y"] {
            let decoded = URL_SAFE_NO_PAD
                .decode(ec[coordinate].as_str().unwrap())
                .unwrap();
            assert_eq!(decoded.len(), 32, "{coordinate}");
        }
        assert_eq!(
            SigningKey::generate(Algorithm::Hs256).unwrap_err(),
            KeyError::Unsupported
        );
    }
}
