//! Unit tests of key material (issue 12): every PEM form parses, signatures verify with the
//! public key, an algorithm that does not fit is refused by name, encrypted keys are refused,
//! a certificate is matched to its key and its thumbprints are the SHA-1 / SHA-256 of its DER.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair,
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, UnparsedPublicKey,
};
use base64::engine::general_purpose::STANDARD;

use super::*;

/// PEM text of `der` under `label`, lines of 64 characters.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let base64 = STANDARD.encode(der);
    let lines: Vec<&str> = base64
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The PKCS#1 `RSAPrivateKey` inside an RSA PKCS#8 `PrivateKeyInfo`: its last element, an
/// OCTET STRING (what `openssl rsa -traditional` writes).
fn pkcs1_of(pkcs8: &[u8]) -> Vec<u8> {
    // SEQUENCE { INTEGER 0, AlgorithmIdentifier { rsaEncryption, NULL }, OCTET STRING {...} }
    let (_, body) = der_element(pkcs8);
    let (rest, _version) = der_element(body);
    let (rest, _algorithm) = der_element(rest);
    assert_eq!(rest[0], 0x04, "OCTET STRING");
    der_element(rest).1.to_vec()
}

/// (what follows, contents) of the DER element at the start of `input`.
fn der_element(input: &[u8]) -> (&[u8], &[u8]) {
    let first = input[1] as usize;
    let (length, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        let length = input[2..2 + count]
            .iter()
            .fold(0usize, |acc, byte| (acc << 8) | *byte as usize);
        (length, 2 + count)
    };
    let end = header + length;
    (&input[end..], &input[header..end])
}

pub(crate) fn rsa_pkcs8() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    key.serialized_der().to_vec()
}

pub(crate) fn ec_pkcs8() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    key.serialized_der().to_vec()
}

fn key(label: &str, der: &[u8]) -> SigningKey {
    SigningKey::from_pem(&PrivateKeyPem::new(pem(label, der))).unwrap()
}

/// A self-signed certificate for the PKCS#8 key `der`.
pub(crate) fn certificate_for(pkcs8: &[u8]) -> (String, Vec<u8>) {
    let pem_text = pem("PRIVATE KEY", pkcs8);
    let key = rcgen::KeyPair::from_pem(&pem_text).unwrap();
    let params = rcgen::CertificateParams::new(vec!["exporter.test".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), cert.der().to_vec())
}

#[test]
fn every_pem_form_parses_to_its_kind_and_default_algorithm() {
    let rsa = rsa_pkcs8();
    let ec = ec_pkcs8();
    let sec1 = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &ec)
        .unwrap()
        .private_key()
        .as_der()
        .unwrap();
    for (label, der, algorithm) in [
        ("PRIVATE KEY", rsa.clone(), Algorithm::Rs256),
        ("RSA PRIVATE KEY", pkcs1_of(&rsa), Algorithm::Rs256),
        ("PRIVATE KEY", ec.clone(), Algorithm::Es256),
        ("EC PRIVATE KEY", sec1.as_ref().to_vec(), Algorithm::Es256),
    ] {
        let parsed = key(label, &der);
        assert_eq!(parsed.default_algorithm(), algorithm, "{label}");
        assert_eq!(parsed.algorithm(None), Ok(algorithm), "{label}");
    }
}

#[test]
fn signatures_verify_with_the_public_key() {
    let message = b"header.claims";
    let rsa = key("PRIVATE KEY", &rsa_pkcs8());
    let public = rsa.public_key().to_vec();
    for (algorithm, verify) in [
        (Algorithm::Rs256, &RSA_PKCS1_2048_8192_SHA256),
        (Algorithm::Ps256, &RSA_PSS_2048_8192_SHA256),
    ] {
        let signature = rsa.sign(algorithm, message).unwrap();
        UnparsedPublicKey::new(verify, &public)
            .verify(message, &signature)
            .unwrap_or_else(|_| panic!("{algorithm} verifies"));
        assert!(
            UnparsedPublicKey::new(verify, &public)
                .verify(b"other", &signature)
                .is_err()
        );
    }
    let ec = key("PRIVATE KEY", &ec_pkcs8());
    let signature = ec.sign(Algorithm::Es256, message).unwrap();
    // JWS ES256 is the fixed 64-byte r || s form, not ASN.1.
    assert_eq!(signature.len(), 64);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, ec.public_key())
        .verify(message, &signature)
        .expect("ES256 verifies");
}

#[test]
fn an_algorithm_that_does_not_fit_the_key_is_refused_by_name() {
    let rsa = key("PRIVATE KEY", &rsa_pkcs8());
    let ec = key("PRIVATE KEY", &ec_pkcs8());
    assert_eq!(
        rsa.algorithm(Some(Algorithm::Es256))
            .unwrap_err()
            .to_string(),
        "ES256 does not fit an RSA key; allowed with it: RS256, PS256"
    );
    assert_eq!(
        ec.algorithm(Some(Algorithm::Rs256))
            .unwrap_err()
            .to_string(),
        "RS256 does not fit an EC P-256 key; allowed with it: ES256"
    );
    assert_eq!(rsa.algorithm(Some(Algorithm::Ps256)), Ok(Algorithm::Ps256));
    assert!(ec.sign(Algorithm::Rs256, b"x").is_err());
}

#[test]
fn encrypted_missing_and_unsupported_keys_are_refused_for_what_they_are() {
    let parse = |text: &str| SigningKey::from_pem(&PrivateKeyPem::new(text)).unwrap_err();
    let encrypted = pem("ENCRYPTED PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
    assert_eq!(parse(&encrypted), KeyError::Encrypted);
    let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    assert_eq!(parse(legacy), KeyError::Encrypted);
    assert_eq!(parse("not a key"), KeyError::NoKey);
    let (certificate, _) = certificate_for(&ec_pkcs8());
    assert_eq!(
        parse(&certificate),
        KeyError::NoKey,
        "a certificate is no key"
    );
    let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    assert_eq!(parse(&ed25519.serialize_pem()), KeyError::Unsupported);
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    assert_eq!(parse(&p384.serialize_pem()), KeyError::Unsupported);
    // No message repeats key material.
    for error in [KeyError::Encrypted, KeyError::NoKey, KeyError::Unsupported] {
        assert!(!error.to_string().contains("AAAA"));
    }
}

#[test]
fn a_certificate_matches_only_its_own_key_and_carries_its_thumbprints() {
    let pkcs8 = rsa_pkcs8();
    let (cert_pem, cert_der) = certificate_for(&pkcs8);
    let certificate = Certificate::from_pem(cert_pem.as_bytes()).unwrap();
    certificate
        .check_key(&key("PRIVATE KEY", &pkcs8))
        .expect("its own key");
    assert_eq!(
        certificate.check_key(&key("PRIVATE KEY", &rsa_pkcs8())),
        Err(KeyError::CertificateMismatch)
    );
    assert_eq!(
        certificate.check_key(&key("PRIVATE KEY", &ec_pkcs8())),
        Err(KeyError::CertificateMismatch)
    );
    let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der);
    let sha256 = digest::digest(&digest::SHA256, &cert_der);
    assert_eq!(certificate.x5t, URL_SAFE_NO_PAD.encode(sha1));
    assert_eq!(certificate.x5t_s256, URL_SAFE_NO_PAD.encode(sha256));
    assert_eq!(certificate.x5t.len(), 27, "20 bytes, base64url, no padding");
    assert_eq!(
        certificate.x5t_s256.len(),
        43,
        "32 bytes, base64url, no padding"
    );
    // An EC key and its certificate match too.
    let ec = ec_pkcs8();
    let (ec_cert, _) = certificate_for(&ec);
    Certificate::from_pem(ec_cert.as_bytes())
        .unwrap()
        .check_key(&key("PRIVATE KEY", &ec))
        .expect("EC key and its certificate");
    assert_eq!(
        Certificate::from_pem(b"nothing"),
        Err(KeyError::NoCertificate)
    );
}

#[test]
fn hs256_is_hmac_sha256_of_the_secret() {
    // RFC 4231 test case 2.
    let mac = hs256(&Secret::new("Jefe"), b"what do ya want for nothing?");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn every_jti_is_fresh() {
    let ids: std::collections::HashSet<String> = (0..1000).map(|_| random_id().unwrap()).collect();
    assert_eq!(ids.len(), 1000);
}
