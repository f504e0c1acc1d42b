//! The demo server's tests, by subject: the dialects' happy paths and refusals (one table per
//! endpoint, one loop asserting) in `dialects`, the canary APIs in `canary`, the certificate
//! credential in `certificate`, the token store and the server's lifecycle in `server`, the
//! built-in configuration driven end to end in `config`. Here: the running demo and the helpers
//! they share.
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

mod canary;
mod certificate;
mod config;
mod dialects;
mod server;

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
            None,
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
