//! Each dialect's token endpoint: its happy path and its refusals, one table per endpoint;
//! the body size cap and the Basic decoding.

use super::*;

#[tokio::test]
async fn eqhub_issues_string_lifetime_token_and_validates_post_auth() {
    let demo = start().await;
    let good = [
        ("grant_type", "client_credentials"),
        ("client_id", EQHUB_CLIENT.client_id),
        ("client_secret", EQHUB_CLIENT.secret),
    ];
    let reply = demo.form(EQHUB_TOKEN_PATH, &good).await;
    let token = access_token(&reply, "access_token");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], "3599", "Azure v1 style: a string");
    let expires_on: u64 = reply.body["expires_on"].as_str().unwrap().parse().unwrap();
    assert!(expires_on.abs_diff(unix_now().as_secs() + 3599) <= 5);

    let canary = format!("{EQHUB_TEKNOS_PREFIX}{EQHUB_TEKNO}");
    let reply = demo.get(&canary, Some(&token)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["TEKNo"], EQHUB_TEKNO);
    let reply = demo
        .get(&format!("{EQHUB_TEKNOS_PREFIX}not-a-number"), Some(&token))
        .await;
    assert_eq!(reply.status, 404);

    let set = |name, value| demo.form_request(EQHUB_TOKEN_PATH, &with(&good, name, value));
    let unset = |name| demo.form_request(EQHUB_TOKEN_PATH, &without(&good, name));
    #[rustfmt::skip]
    let refusals: Vec<Refusal> = vec![
        ("wrong secret",  set("client_secret", "eqhub-demo-secreT"), 401, "invalid_client"),
        ("no secret",     unset("client_secret"),                    401, "invalid_client"),
        ("no grant_type", unset("grant_type"),                       400, "invalid_request"),
        ("password",      set("grant_type", "password"),             400, "unsupported_grant_type"),
    ];
    demo.assert_refusals(refusals).await;
    // EqHub's client is registered for client_secret_post only.
    let basic = [("grant_type", "client_credentials")];
    let reply = demo
        .form_basic(
            EQHUB_TOKEN_PATH,
            EQHUB_CLIENT.client_id,
            EQHUB_CLIENT.secret,
            &basic,
        )
        .await;
    assert_oauth_error("Basic", &reply, 401, "invalid_client");
    assert_basic_challenge(&reply);
}

#[tokio::test]
async fn okq8_speaks_azure_v2_and_rejects_rotated_secret() {
    let demo = start().await;
    let path = demo.okq8_token_path();
    let scope = format!("{OKQ8_RESOURCE}/.default");
    let reply = demo
        .form(&path, &okq8_form(OKQ8_CLIENT.secret, &scope))
        .await;
    let token = access_token(&reply, "access_token");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 3599);
    assert_eq!(reply.body["ext_expires_in"], 3599);
    assert_eq!(demo.get(OKQ8_CANARY_PATH, Some(&token)).await.status, 200);

    let reply = demo
        .form(&path, &okq8_form(OKQ8_ROTATED_AWAY_SECRET, &scope))
        .await;
    assert_oauth_error("rotated secret", &reply, 401, "invalid_client");
    assert_eq!(reply.body["error_codes"][0], 7_000_215);
    assert!(
        reply.body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215")
    );
    assert!(!reply.body.to_string().contains(OKQ8_ROTATED_AWAY_SECRET));

    let form = okq8_form(OKQ8_CLIENT.secret, &scope);
    let reply = demo.form(&path, &without(&form, "scope")).await;
    assert_oauth_error("no scope", &reply, 400, "invalid_request");
    assert_eq!(reply.body["error_codes"][0], 900_144);
    let reply = demo.form("/other-tenant/oauth2/v2.0/token", &form).await;
    assert_oauth_error("other tenant", &reply, 400, "invalid_request");
    assert_eq!(reply.body["error_codes"][0], 90002);

    let not_default = format!("{OKQ8_RESOURCE}/read");
    // RFC 6749 3.2: a repeated parameter is an error.
    let mut repeated = form.clone();
    repeated.push(("scope", "api://x/.default"));
    let request = |fields: Vec<(&str, &str)>| demo.form_request(&path, &fields);
    let set = |name, value| request(with(&form, name, value));
    let scope_as = |scope| request(okq8_form(OKQ8_CLIENT.secret, scope));
    let json_body = json!({
        "grant_type": "client_credentials", "client_id": OKQ8_CLIENT.client_id,
        "client_secret": OKQ8_CLIENT.secret, "scope": scope,
    });
    let other_api = "api://apim-someone-else-api/.default";
    #[rustfmt::skip]
    let refusals: Vec<Refusal> = vec![
        ("no /.default", scope_as(&not_default), 400, "invalid_scope"),
        ("another API's scope", scope_as(other_api), 400, "invalid_resource"),
        ("unknown client_id", set("client_id", "unknown-app"), 400, "unauthorized_client"),
        ("code grant", set("grant_type", "authorization_code"), 400, "unsupported_grant_type"),
        // A JSON body is not a form: Azure cannot find grant_type in it.
        ("JSON body", demo.post(&path).json(&json_body), 400, "invalid_request"),
        ("repeated scope", request(repeated), 400, "invalid_request"),
    ];
    demo.assert_refusals(refusals).await;
}

#[tokio::test]
async fn cube_requires_its_extra_params_and_issues_24h_tokens() {
    let demo = start().await;
    let good = cube_form();
    let reply = demo.form(CUBE_TOKEN_PATH, &good).await;
    let token = access_token(&reply, "access_token");
    assert_eq!(reply.body["expires_in"], 86_400);
    assert_eq!(reply.body["scope"], "profile");
    assert_eq!(demo.get(CUBE_CANARY_PATH, Some(&token)).await.status, 200);

    let set = |name, value| demo.form_request(CUBE_TOKEN_PATH, &with(&good, name, value));
    let unset = |name| demo.form_request(CUBE_TOKEN_PATH, &without(&good, name));
    #[rustfmt::skip]
    let refusals: Vec<Refusal> = vec![
        ("wrong secret",   set("client_secret", "nope"),             401, "invalid_client"),
        ("extra scope",    set("scope", "profile openid"),           400, "invalid_scope"),
        ("no scope",       unset("scope"),                           400, "invalid_request"),
        ("no resource",    unset("resource"),                        400, "invalid_request"),
        ("other resource", set("resource", "otherapi"),              400, "invalid_target"),
        ("no acr_values",  unset("acr_values"),                      400, "invalid_request"),
        ("other tenant",   set("acr_values", "tenant:someone-else"), 400, "invalid_request"),
        // An empty value counts as omitted (RFC 6749 3.1).
        ("empty resource", set("resource", ""),                      400, "invalid_request"),
    ];
    demo.assert_refusals(refusals).await;
}

#[tokio::test]
async fn nextome_takes_json_and_returns_a_jwt_with_exp_only() {
    let demo = start().await;
    let body = json!({
        "clientId": NEXTOME_CLIENT.client_id,
        "clientSecret": NEXTOME_CLIENT.secret,
    });
    let reply = demo.send(demo.post(NEXTOME_TOKEN_PATH).json(&body)).await;
    let token = access_token(&reply, "accessToken");
    assert_eq!(
        reply.body.as_object().unwrap().len(),
        1,
        "only accessToken: {}",
        reply.body
    );
    assert!(reply.body.get("expires_in").is_none());

    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3);
    assert_eq!(segments[2], "", "unsigned: empty signature segment");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[0]).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "none", "typ": "JWT"}));
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[1]).unwrap()).unwrap();
    let now = unix_now().as_secs();
    let exp = claims["exp"].as_u64().unwrap();
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat.abs_diff(now) <= 5);
    assert_eq!(exp - iat, 3600);
    assert_eq!(claims["sub"], NEXTOME_CLIENT.client_id);
    assert_eq!(claims["iss"], format!("{}{NEXTOME_TOKEN_PATH}", demo.base));
    assert_eq!(
        demo.get(NEXTOME_CANARY_PATH, Some(&token)).await.status,
        200
    );

    let json = |body: Value| demo.post(NEXTOME_TOKEN_PATH).json(&body);
    let id = NEXTOME_CLIENT.client_id;
    let as_form = [
        ("clientId", NEXTOME_CLIENT.client_id),
        ("clientSecret", NEXTOME_CLIENT.secret),
    ];
    #[rustfmt::skip]
    let refusals: Vec<Refusal> = vec![
        ("wrong secret", json(json!({"clientId": id, "clientSecret": "x"})), 401, "invalid_client"),
        ("no clientSecret", json(json!({"clientId": id})), 400, "invalid_request"),
        ("not a string", json(json!({"clientId": id, "clientSecret": 42})), 400, "invalid_request"),
        ("a form", demo.form_request(NEXTOME_TOKEN_PATH, &as_form), 400, "invalid_request"),
    ];
    demo.assert_refusals(refusals).await;
}

#[tokio::test]
async fn everactive_client_credentials_needs_encoded_basic_auth() {
    let demo = start().await;
    let grant = [("grant_type", "client_credentials")];
    let (id, secret) = (EVERACTIVE_CLIENT.client_id, EVERACTIVE_CLIENT.secret);
    let reply = demo
        .form_basic(EVERACTIVE_TOKEN_PATH, id, secret, &grant)
        .await;
    let token = access_token(&reply, "access_token");
    assert_eq!(reply.body["expires_in"], 3600);
    assert_eq!(
        demo.get(EVERACTIVE_SENSORS_PATH, Some(&token)).await.status,
        200
    );

    // The secret sent raw, without the RFC 6749 2.3.1 form-encoding: '+' decodes to a space
    // and the bare '%' is a broken escape, so the server must refuse it.
    let raw = demo
        .form_request(EVERACTIVE_TOKEN_PATH, &grant)
        .header(header::AUTHORIZATION, basic_header(id, secret));
    let reply = demo.send(raw).await;
    assert_oauth_error("secret not form-encoded", &reply, 401, "invalid_client");
    assert_basic_challenge(&reply);

    let basic = |secret: &str, fields: &[(&str, &str)]| {
        demo.basic_request(EVERACTIVE_TOKEN_PATH, id, secret, fields)
    };
    let form = |fields: &[(&str, &str)]| demo.form_request(EVERACTIVE_TOKEN_PATH, fields);
    let in_body = [
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
    ];
    let both = [
        ("grant_type", "client_credentials"),
        ("client_secret", secret),
    ];
    let device = [("grant_type", "urn:ietf:params:oauth:grant-type:device_code")];
    let password = [
        ("grant_type", "password"),
        ("username", EVERACTIVE_USERNAME),
        ("password", EVERACTIVE_PASSWORD),
    ];
    #[rustfmt::skip]
    let refusals: Vec<Refusal> = vec![
        ("wrong secret", basic("everactive demo secret", &grant), 401, "invalid_client"),
        // Registered for Basic only: the same credentials in the body are refused.
        ("credentials in the body", form(&in_body), 401, "invalid_client"),
        // Both methods at once is invalid_request (RFC 6749 2.3).
        ("Basic and a body secret", basic(secret, &both), 400, "invalid_request"),
        ("no credentials", form(&grant), 401, "invalid_client"),
        ("device_code grant", basic(secret, &device), 400, "unsupported_grant_type"),
        // This client may not use the password grant.
        ("password grant", basic(secret, &password), 400, "unauthorized_client"),
    ];
    demo.assert_refusals(refusals).await;
}

#[tokio::test]
async fn everactive_password_grant_checks_the_user() {
    let demo = start().await;
    let good = [
        ("grant_type", "password"),
        ("client_id", EVERACTIVE_PASSWORD_CLIENT.client_id),
        ("client_secret", EVERACTIVE_PASSWORD_CLIENT.secret),
        ("username", EVERACTIVE_USERNAME),
        ("password", EVERACTIVE_PASSWORD),
    ];
    let reply = demo.form(EVERACTIVE_TOKEN_PATH, &good).await;
    let token = access_token(&reply, "access_token");
    assert_eq!(reply.body["expires_in"], 3600);
    assert_eq!(
        demo.get(EVERACTIVE_GATEWAYS_PATH, Some(&token))
            .await
            .status,
        200
    );

    let set = |name, value| demo.form_request(EVERACTIVE_TOKEN_PATH, &with(&good, name, value));
    let unset = |name| demo.form_request(EVERACTIVE_TOKEN_PATH, &without(&good, name));
    #[rustfmt::skip]
    let refusals: Vec<Refusal> = vec![
        ("wrong password", set("password", "guess"), 400, "invalid_grant"),
        ("no username", unset("username"), 400, "invalid_request"),
        ("no password", unset("password"), 400, "invalid_request"),
        ("wrong client secret", set("client_secret", "nope"), 401, "invalid_client"),
        ("client_credentials", set("grant_type", "client_credentials"), 400, "unauthorized_client"),
    ];
    demo.assert_refusals(refusals).await;
}

#[tokio::test]
async fn oversized_token_request_is_refused() {
    let demo = start().await;
    let big = "x".repeat(MAX_BODY_BYTES + 1);
    let reply = demo
        .form(CUBE_TOKEN_PATH, &[("grant_type", big.as_str())])
        .await;
    assert_oauth_error("oversized", &reply, 413, "invalid_request");
}

#[test]
fn basic_decoding_form_decodes_id_and_secret() {
    // Encoded per RFC 6749 2.3.1: ':' in the id is %3A, so the first raw ':' separates.
    let id = "client:id with space";
    let secret = "s3cr+t/%:é";
    let header = basic_header(&encode(id), &encode(secret));
    let rows = [
        (
            "form-encoded id and secret",
            header.clone(),
            Some((id, secret)),
        ),
        (
            // The scheme is case-insensitive (RFC 7235).
            "lower-case scheme",
            header.replacen("Basic", "basic", 1),
            Some((id, secret)),
        ),
        (
            // '+' means space; "%2B" means '+'.
            "'+' and %2B",
            basic_header("a+b", "c%2Bd"),
            Some(("a b", "c+d")),
        ),
        ("broken escape", basic_header("id", "50%"), None),
        ("non-hex escape", basic_header("id", "%zz"), None),
        ("not UTF-8", basic_header("id", "%FF"), None),
        ("not base64", "Basic !!!not-base64".to_owned(), None),
        (
            "no colon",
            format!("Basic {}", STANDARD.encode("no-colon")),
            None,
        ),
        (
            "another scheme",
            format!("Bearer {}", STANDARD.encode("a:b")),
            None,
        ),
    ];
    for (case, header, expected) in rows {
        let expected = expected.map(|(id, secret)| (id.to_owned(), secret.to_owned()));
        assert_eq!(decode_basic(&header), expected, "{case}");
    }
}
