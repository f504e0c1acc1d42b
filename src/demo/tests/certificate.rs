//! The okq8 certificate credential: checked as Entra ID checks it, refused in its words,
//! valid for about a year.

use super::*;

/// The certificate credential is checked as Entra ID checks it, and refused in its words.
#[tokio::test]
async fn okq8_certificate_credential_is_checked_like_entra_id() {
    let demo = start().await;
    let path = demo.okq8_token_path();
    let token_url = format!("{}{path}", demo.base);
    let files = &demo.server.state.certificate.files;
    let pem = std::fs::read_to_string(&files.key_file).unwrap();
    let key =
        crate::signing::SigningKey::from_pem(&crate::secrets::PrivateKeyPem::new(pem)).unwrap();
    let certificate =
        crate::signing::Certificate::from_pem(&std::fs::read(&files.certificate_file).unwrap())
            .unwrap();
    let other_key = {
        let generated = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        crate::signing::SigningKey::from_pem(&crate::secrets::PrivateKeyPem::new(
            generated.serialize_pem(),
        ))
        .unwrap()
    };
    let now = unix_now().as_secs();
    let header = json!({"alg": "RS256", "typ": "JWT", "x5t": certificate.x5t});
    let claims = |jti: &str| {
        json!({"iss": OKQ8_CERTIFICATE_CLIENT, "sub": OKQ8_CERTIFICATE_CLIENT, "aud": token_url,
               "jti": jti, "iat": now, "nbf": now, "exp": now + 300})
    };
    let scope = format!("{OKQ8_RESOURCE}/.default");
    let form = |assertion: &str| {
        vec![
            ("grant_type".to_string(), "client_credentials".to_string()),
            ("client_id".to_string(), OKQ8_CERTIFICATE_CLIENT.to_string()),
            (
                "client_assertion_type".to_string(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ),
            ("client_assertion".to_string(), assertion.to_string()),
            ("scope".to_string(), scope.clone()),
        ]
    };
    let send = |fields: Vec<(String, String)>| {
        let request = demo
            .client
            .post(format!("{}{path}", demo.base))
            .form(&fields);
        demo.send(request)
    };

    let good = signed(&key, &header, &claims("jti-1"));
    let reply = send(form(&good)).await;
    let token = access_token(&reply, "access_token");
    assert_eq!(demo.get(OKQ8_CANARY_PATH, Some(&token)).await.status, 200);
    // x5t#S256 alone identifies the certificate too.
    let s256 = json!({"alg": "RS256", "typ": "JWT", "x5t#S256": certificate.x5t_s256});
    let reply = send(form(&signed(&key, &s256, &claims("jti-2")))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let mut expired = claims("jti-3");
    expired["exp"] = json!(now - 3600);
    let mut audience = claims("jti-4");
    audience["aud"] = json!("https://login.microsoftonline.com/other/oauth2/v2.0/token");
    let mut issuer = claims("jti-5");
    issuer["iss"] = json!("someone-else");
    let unknown = json!({"alg": "RS256", "typ": "JWT", "x5t": "AAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    // (case, form, status, error, AADSTS code)
    type Row<'a> = (&'a str, Vec<(String, String)>, u16, &'a str, u32);
    let rows: Vec<Row> = vec![
        ("replayed jti", form(&good), 401, "invalid_client", 700_027),
        (
            "unregistered thumbprint",
            form(&signed(&key, &unknown, &claims("jti-6"))),
            401,
            "invalid_client",
            700_027,
        ),
        (
            "signed by another key",
            form(&signed(&other_key, &header, &claims("jti-7"))),
            401,
            "invalid_client",
            700_027,
        ),
        (
            "wrong audience",
            form(&signed(&key, &header, &audience)),
            401,
            "invalid_client",
            700_027,
        ),
        (
            "expired",
            form(&signed(&key, &header, &expired)),
            401,
            "invalid_client",
            700_024,
        ),
        (
            "iss is not the client",
            form(&signed(&key, &header, &issuer)),
            401,
            "invalid_client",
            700_021,
        ),
        (
            "wrong assertion type",
            form(&signed(&key, &header, &claims("jti-8")))
                .into_iter()
                .map(|(k, v)| {
                    if k == "client_assertion_type" {
                        (k, "urn:other".to_string())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            400,
            "invalid_request",
            50_027,
        ),
    ];
    for (case, fields, status, error, code) in rows {
        let reply = send(fields).await;
        assert_oauth_error(case, &reply, status, error);
        assert_eq!(reply.body["error_codes"][0], code, "{case}: {}", reply.body);
        let description = reply.body["error_description"].as_str().unwrap();
        assert!(
            description.starts_with(&format!("AADSTS{code}")),
            "{case}: {description}"
        );
        assert!(
            reply.body["correlation_id"].is_string(),
            "{case}: Entra's form"
        );
    }
}

/// The demo's certificate credential expires a year from today, as certificates uploaded to
/// Entra ID typically do, so the status page's "Expires" column shows a date people recognise.
#[test]
fn the_demo_certificate_expires_in_about_a_year() {
    let credential = credential();
    let pem = std::fs::read(&credential.files.certificate_file).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let certificate = pem.parse_x509().unwrap();
    let not_after = certificate.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = (not_after - now) / 86_400;
    assert!((360..=366).contains(&days), "expires in {days} days");
}
