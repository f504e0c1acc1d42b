//! The exporter's own HTTP endpoints: `/metrics` (gzip when asked), `/-/healthy`, `/-/ready`,
//! `POST /-/reload`, and a small index page at `/`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, HeaderValue, VARY};
use hyper::{Request, StatusCode};

use crate::http_server::{HttpResponse, respond};
use crate::metrics::Metrics;

/// The Prometheus text exposition format, version 0.0.4.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A reload asked for over HTTP, with where to send its outcome (a message for the caller).
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<String, String>>;

pub struct WebState {
    pub metrics: Arc<Metrics>,
    /// `(name, interval)` of every running provider, for the index page.
    pub providers: Mutex<Vec<(String, Duration)>>,
    /// Set once probing has started.
    pub ready: AtomicBool,
    /// Where `POST /-/reload` sends its request; `None` when reloading is not possible.
    pub reload: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
}

impl WebState {
    pub fn set_providers(&self, providers: Vec<(String, Duration)>) {
        *self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = providers;
    }
}

pub async fn handle(state: Arc<WebState>, request: Request<Incoming>) -> HttpResponse {
    let path = request.uri().path();
    let allowed = match path {
        "/" | "/metrics" | "/-/healthy" | "/-/ready" => "GET, HEAD",
        "/-/reload" => "POST",
        _ => {
            return respond(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "404 page not found\n",
            );
        }
    };
    if !allowed.split(", ").any(|m| m == request.method().as_str()) {
        let mut response = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "405 method not allowed\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        return response;
    }
    match path {
        "/-/reload" => reload(&state).await,
        "/metrics" => metrics(&state, &request),
        "/-/healthy" => respond(StatusCode::OK, "text/plain; charset=utf-8", "Healthy.\n"),
        "/-/ready" if state.ready.load(Ordering::Acquire) => {
            respond(StatusCode::OK, "text/plain; charset=utf-8", "Ready.\n")
        }
        "/-/ready" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "Not ready: probing has not started.\n",
        ),
        _ => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            index_page(&state),
        ),
    }
}

/// The answer to a request without valid basic-auth credentials.
pub fn unauthorized() -> HttpResponse {
    let mut response = respond(
        StatusCode::UNAUTHORIZED,
        "text/plain; charset=utf-8",
        "401 Unauthorized\n",
    );
    response.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"oauth2-exporter\""),
    );
    response
}

async fn reload(state: &WebState) -> HttpResponse {
    let text = "text/plain; charset=utf-8";
    let Some(requests) = &state.reload else {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            "Reloading is not available.\n",
        );
    };
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if requests.send(reply).await.is_err() {
        return respond(StatusCode::SERVICE_UNAVAILABLE, text, "Shutting down.\n");
    }
    match outcome.await {
        Ok(Ok(message)) => respond(StatusCode::OK, text, format!("{message}\n")),
        Ok(Err(message)) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            text,
            format!("{message}\n"),
        ),
        Err(_) => respond(StatusCode::SERVICE_UNAVAILABLE, text, "Shutting down.\n"),
    }
}

fn metrics(state: &WebState, request: &Request<Incoming>) -> HttpResponse {
    if accepts_gzip(request) {
        match state.metrics.render_gzip() {
            Ok(body) => {
                let mut response = respond(StatusCode::OK, METRICS_CONTENT_TYPE, body);
                let headers = response.headers_mut();
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
                return response;
            }
            Err(error) => tracing::warn!(%error, "gzip failed; answering uncompressed"),
        }
    }
    let mut response = respond(StatusCode::OK, METRICS_CONTENT_TYPE, state.metrics.render());
    response
        .headers_mut()
        .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

/// Whether `Accept-Encoding` lists gzip with a non-zero quality.
fn accepts_gzip(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let zero_quality = parts.any(|param| {
                param
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero_quality
        })
}

fn index_page(state: &WebState) -> String {
    let providers = state
        .providers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut rows = String::new();
    for (name, interval) in &providers {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>\n",
            escape_html(name),
            escape_html(&humantime::format_duration(*interval).to_string())
        ));
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>oauth2-exporter</title></head>
<body>
<h1>oauth2-exporter</h1>
<p>Version {version} ({revision}). Proves OAuth2 client credentials work by probing each provider's token endpoint and canary API.</p>
<ul>
<li><a href="/metrics">Metrics</a></li>
<li><a href="/-/healthy">Health</a></li>
<li><a href="/-/ready">Readiness</a></li>
</ul>
<h2>Providers ({count})</h2>
<table>
<tr><th>Provider</th><th>Interval</th></tr>
{rows}</table>
</body>
</html>
"#,
        version = env!("CARGO_PKG_VERSION"),
        revision = escape_html(crate::REVISION),
        count = providers.len(),
    )
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_html;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<script>alert("x&y")</script>'"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;"
        );
    }
}
