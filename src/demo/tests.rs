//! The demo server's tests: every dialect's happy path and its refusals (one table per endpoint,
//! one loop asserting), the canary APIs, the token store's bounds, and the built-in configuration
//! driven end to end against the server.
#![allow(clippy::unwrap_used)] // the project rules allow unwrap in tests

use base64::engine::general_purpose::STANDARD;
use reqwest::RequestBuilder;
use reqwest::header::HeaderMap as ReqHeaders;

use super::certificate::{CredentialFiles, OKQ8_CERTIFICATE_CLIENT};
use super::config::{TEMPLATE, placeholders, render, toml_string};
use super::dialects::{
    CUBE_CLIENT, EQHUB_CLIENT, EQHUB_TEKNO, EVERACTIVE_CLIENT, EVERACTIVE_PASSWORD,
    EVERACTIVE_PASSWORD_CLIENT, EVERACTIVE_USERNAME, MAX_BODY_BYTES, NEXTOME_CLIENT, OKQ8_CLIENT,
    OKQ8_RESOURCE, OKQ8_ROTATED_AWAY_SECRET, OKQ8_TENANT, ONE_HOUR, decode_basic,
};
use super::*;

/// A running demo server plus a client that never leaves loopback (no proxy, no redirects).
struct Demo {
    server: DemoServer,
    cancel: CancellationToken,
    base: String,
    client: reqwest::Client,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct Reply {
    status: u16,
    headers: ReqHeaders,
    body: Value,
}

/// A token request the endpoint must refuse: what the row shows, the request, and the status and
/// RFC 6749 5.2 `error` expected.
type Refusal<'a> = (&'a str, RequestBuilder, u16, &'a str);

async fn start() -> Demo {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let server = DemoServer::start(cancel.clone(), &tracker).await.unwrap();
    assert!(server.addr().ip().is_loopback());
    let base = format!("http://{}", server.addr());
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Demo {
        server,
        cancel,
        base,
        client,
    }
}

impl Demo {
    async fn send(&self, request: RequestBuilder) -> Reply {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(format!("{}{path}", self.base))
    }

    /// `fields` as a form body, credentials (if any) among them.
    fn form_request(&self, path: &str, fields: &[(&str, &str)]) -> RequestBuilder {
        self.post(path).form(fields)
    }

    /// `client_secret_basic` done right: form-encode id and secret, then base64.
    fn basic_request(
        &self,
        path: &str,
        id: &str,
        secret: &str,
        fields: &[(&str, &str)],
    ) -> RequestBuilder {
        let header = basic_header(&encode(id), &encode(secret));
        self.post(path)
            .header(header::AUTHORIZATION, header)
            .form(fields)
    }

    async fn form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        self.send(self.form_request(path, fields)).await
    }

    async fn form_basic(
        &self,
        path: &str,
        id: &str,
        secret: &str,
        fields: &[(&str, &str)],
    ) -> Reply {
        self.send(self.basic_request(path, id, secret, fields))
            .await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// Sends every row's request in turn; each must be refused as its row says.
    async fn assert_refusals(&self, rows: Vec<Refusal<'_>>) {
        for (case, request, status, error) in rows {
            assert_oauth_error(case, &self.send(request).await, status, error);
        }
    }

    fn okq8_token_path(&self) -> String {
        format!("/{OKQ8_TENANT}/oauth2/v2.0/token")
    }
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn basic_header(id_part: &str, secret_part: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{id_part}:{secret_part}"))
    )
}

/// `case` names the table row, since `track_caller` can only point at the loop.
#[track_caller]
fn assert_oauth_error(case: &str, reply: &Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "{case}: status; body: {}", reply.body);
    assert_eq!(reply.body["error"], error, "{case}: body: {}", reply.body);
    let description = reply.body["error_description"].as_str().unwrap_or_default();
    assert!(
        !description.is_empty(),
        "{case}: error_description missing: {}",
        reply.body
    );
}

#[track_caller]
fn assert_basic_challenge(reply: &Reply) {
    assert!(
        reply.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
}

#[track_caller]
fn access_token(reply: &Reply, field: &str) -> String {
    assert_eq!(reply.status, 200, "body: {}", reply.body);
    assert_eq!(reply.headers["cache-control"], "no-store");
    let token = reply.body[field].as_str().unwrap().to_owned();
    assert!(token.len() >= 40, "token too short to be unpredictable");
    token
}

fn okq8_form<'a>(secret: &'a str, scope: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", OKQ8_CLIENT.client_id),
        ("client_secret", secret),
        ("scope", scope),
    ]
}

fn cube_form<'a>() -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", CUBE_CLIENT.client_id),
        ("client_secret", CUBE_CLIENT.secret),
        ("scope", "profile"),
        ("resource", "connectapi"),
        ("acr_values", "tenant:cube-demo"),
    ]
}

fn without<'a>(form: &[(&'a str, &'a str)], name: &str) -> Vec<(&'a str, &'a str)> {
    form.iter().copied().filter(|(n, _)| *n != name).collect()
}

fn with<'a>(form: &[(&'a str, &'a str)], name: &'a str, value: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut form = without(form, name);
    form.push((name, value));
    form
}

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
async fn canary_accepts_only_live_tokens_issued_for_its_api() {
    let demo = start().await;
    let scope = format!("{OKQ8_RESOURCE}/.default");
    let reply = demo
        .form(
            &demo.okq8_token_path(),
            &okq8_form(OKQ8_CLIENT.secret, &scope),
        )
        .await;
    let okq8 = access_token(&reply, "access_token");
    assert_eq!(demo.get(OKQ8_CANARY_PATH, Some(&okq8)).await.status, 200);

    let reply = demo.get(OKQ8_CANARY_PATH, None).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.headers["www-authenticate"], "Bearer realm=\"demo\"");
    let unknown = demo.server.state.random_string();
    let reply = demo.get(OKQ8_CANARY_PATH, Some(&unknown)).await;
    assert_eq!(reply.status, 401);
    assert!(
        reply.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    // A valid token for another API opens nothing here.
    assert_eq!(demo.get(CUBE_CANARY_PATH, Some(&okq8)).await.status, 401);
    // Expired: issued with no lifetime left.
    let expired = demo.server.state.issue_opaque(Api::Okq8, Duration::ZERO);
    assert_eq!(demo.get(OKQ8_CANARY_PATH, Some(&expired)).await.status, 401);
    // Canary paths are GET only; token paths POST only; others 404.
    let post = demo.post(OKQ8_CANARY_PATH).bearer_auth(&okq8);
    let reply = demo.send(post).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "GET");
    let reply = demo.get(CUBE_TOKEN_PATH, None).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "POST");
    assert_eq!(demo.get("/nope", Some(&okq8)).await.status, 404);
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

#[test]
fn tokens_are_unique_and_the_store_is_bounded() {
    let state = State::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)), credential());
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let token = state.random_string();
        assert_eq!(token.len(), 43, "256 bits in unpadded base64url");
        assert!(seen.insert(token), "duplicate token");
    }
    // Another server (other keys) does not produce the same sequence.
    let other = State::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)), credential());
    assert!(!seen.contains(&other.random_string()));

    let expired: Vec<String> = (0..10)
        .map(|_| state.issue_opaque(Api::Cube, Duration::ZERO))
        .collect();
    {
        let tokens = state.tokens.lock().unwrap();
        assert!(expired.iter().all(|token| tokens.contains_key(token)));
    }
    for _ in 0..PRUNE_EVERY {
        state.issue_opaque(Api::Cube, ONE_HOUR);
    }
    {
        let tokens = state.tokens.lock().unwrap();
        assert!(
            expired.iter().all(|token| !tokens.contains_key(token)),
            "expired tokens are swept within PRUNE_EVERY inserts"
        );
    }
    let first_live = state.issue_opaque(Api::Cube, Duration::from_secs(60));
    for _ in 0..MAX_TOKENS {
        state.issue_opaque(Api::Cube, ONE_HOUR);
    }
    let tokens = state.tokens.lock().unwrap();
    assert!(tokens.len() <= MAX_TOKENS, "bounded: {}", tokens.len());
    assert!(tokens.len() > MAX_TOKENS - MAX_TOKENS / 8 - 2);
    assert!(
        !tokens.contains_key(&first_live),
        "then the one closest to expiry"
    );
}

#[test]
fn toml_strings_round_trip() {
    assert_eq!(toml_string("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(toml_string("tab\there"), r#""tab\u0009here""#);
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing"))
}

/// Runs one provider's token flow and canary the way its configuration says; `Err` carries
/// the token endpoint's status and `error`.
async fn probe(demo: &Demo, provider: &Value) -> Result<(Value, u16), (u16, Value)> {
    let token = &provider["token"];
    let url = str_at(token, "/url");
    let auth = token
        .get("auth_method")
        .and_then(Value::as_str)
        .unwrap_or("client_secret_post");
    let client_id = str_at(token, "/client_id");
    let secret = str_at(token, "/client_secret");
    let params = token
        .get("params")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let request = if auth == "json_body" {
        let mut body = params;
        body.insert(
            str_at(token, "/json_fields/client_id").into(),
            json!(client_id),
        );
        body.insert(
            str_at(token, "/json_fields/client_secret").into(),
            json!(secret),
        );
        demo.client.post(url).json(&body)
    } else {
        let mut form: Vec<(String, String)> =
            vec![("grant_type".into(), str_at(token, "/grant_type").into())];
        if let Some(scopes) = token.get("scopes").and_then(Value::as_array) {
            let scopes: Vec<&str> = scopes.iter().filter_map(Value::as_str).collect();
            form.push(("scope".into(), scopes.join(" ")));
        }
        for (name, value) in &params {
            form.push((name.clone(), value.as_str().unwrap().into()));
        }
        if let Some(username) = token.get("username").and_then(Value::as_str) {
            form.push(("username".into(), username.into()));
            form.push(("password".into(), str_at(token, "/password").into()));
        }
        let mut request = demo.client.post(url);
        match auth {
            "client_secret_post" => {
                form.push(("client_id".into(), client_id.into()));
                form.push(("client_secret".into(), secret.into()));
            }
            "client_secret_basic" => {
                request = request.header(
                    header::AUTHORIZATION,
                    basic_header(&encode(client_id), &encode(secret)),
                );
            }
            other => panic!("unknown auth_method {other}"),
        }
        request.form(&form)
    };
    let reply = demo.send(request).await;
    if reply.status != 200 {
        return Err((reply.status, reply.body["error"].clone()));
    }
    let field = token
        .pointer("/response/access_token")
        .and_then(Value::as_str)
        .unwrap_or("access_token");
    let access_token = str_at(&reply.body, &format!("/{field}"));
    let canary = &provider["canary"];
    let method = canary
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("GET");
    let mut request = demo
        .client
        .request(method.parse().unwrap(), str_at(canary, "/url"))
        .bearer_auth(access_token);
    for (name, value) in canary
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        request = request.header(name.as_str(), value.as_str().unwrap());
    }
    let status = demo.send(request).await.status;
    let expected = match canary.get("expected_status").and_then(Value::as_array) {
        Some(codes) => codes
            .iter()
            .any(|code| code.as_u64() == Some(u64::from(status))),
        None => (200..300).contains(&status),
    };
    assert!(expected, "canary status {status} not expected: {canary}");
    Ok((reply.body, status))
}

/// A demo certificate credential in the system's temporary directory (removed when dropped).
fn credential() -> CertificateCredential {
    CertificateCredential::create(&std::env::temp_dir()).unwrap()
}

/// Runs `name`'s token request with the exporter's own code, then its canary.
async fn probe_with_exporter(demo: &Demo, text: &str, name: &str) {
    let config = crate::config::load_str(text, &Default::default()).unwrap();
    let provider = config.providers.iter().find(|p| p.name == name).unwrap();
    let mut auth = crate::probe::client_auth::ClientAuth::default();
    // The exporter's own outgoing client, never proxied: the demo is on loopback.
    let client = crate::probe::transport::build_client(
        &provider.tls,
        &crate::config::ProxySetting::Disabled,
        &crate::probe::transport::Slots::new(8),
    )
    .unwrap();
    for _ in 0..2 {
        let outcome = crate::probe::token::request_token(
            &client,
            &provider.token,
            &mut auth,
            provider.token.endpoint.configured(),
            Duration::from_secs(10),
            None,
        )
        .await;
        let token = outcome
            .result
            .unwrap_or_else(|e| panic!("{name}: the demo refused the exporter's request: {e}"));
        let canary = provider.canary.as_ref().unwrap();
        let status = demo
            .send(
                demo.client
                    .get(canary.url.clone())
                    .bearer_auth(token.access_token.expose()),
            )
            .await
            .status;
        assert_eq!(status, 200, "{name}: canary");
    }
}

/// A client assertion signed with `key` (RS256).
fn signed(key: &crate::signing::SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key
        .sign(crate::signing::Algorithm::Rs256, input.as_bytes())
        .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

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

#[tokio::test]
async fn server_stops_when_cancelled() {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let server = DemoServer::start(cancel.clone(), &tracker).await.unwrap();
    let addr = server.addr();
    tokio::net::TcpStream::connect(addr).await.unwrap();
    cancel.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(format!("{server:?}").contains(&addr.to_string()));
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
