//! Discovery: the token endpoint of an `issuer`, from its metadata (OpenID Connect Discovery's
//! `/.well-known/openid-configuration`, else RFC 8414's `/.well-known/oauth-authorization-server`
//! inserted before the issuer's path), checked (the metadata's `issuer` equals the configured one
//! exactly; the configured method and grant are among those listed) and cached per provider
//! between refreshes. Knows nothing about metrics.

use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

use crate::config::{AuthMethod, DiscoveryConfig, GrantKind, TokenConfig};
use crate::probe::trace::Trace;
use crate::probe::transport::{
    BodyError, Client, ProxyRoute, Seen, TransportError, read_body, send,
};
use crate::secrets::Scrubber;
use crate::shorten::{Shown, shorten};

/// Longest server-supplied value (a listed method, an issuer) shown in a failure's detail.
const VALUE_CHARS: usize = 200;

/// What discovery found for an issuer, and when: kept by the provider's prober across cycles
/// (and across a reload that leaves the provider unchanged) until the next refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub token_endpoint: Url,
    /// The metadata document it came from.
    pub source: Url,
    pub fetched_at: Instant,
    /// The leaf certificate the metadata endpoint presented (https only; see
    /// [`Seen::certificate`]), for its chain's expiry.
    pub certificate: Option<u64>,
}

impl Discovered {
    /// Whether the refresh interval has passed since it was fetched.
    pub fn is_due(&self, refresh: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.fetched_at) >= refresh
    }
}

/// Why discovery found no usable token endpoint. Every variant counts as reason `discovery`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery: fetching {url} failed: {error}")]
    Transport { url: String, error: TransportError },
    #[error("discovery: {url} answered HTTP {status}{}", if *status == 404 { " (neither metadata document exists)" } else { "" })]
    Status { url: String, status: u16 },
    #[error("discovery: the metadata at {url} is not usable: {why}")]
    Invalid { url: String, why: String },
    #[error(
        "discovery: the metadata's issuer {found:?} is not the configured issuer {expected:?}; they must be equal, character for character (RFC 8414 section 3.3, mix-up protection)"
    )]
    IssuerMismatch { expected: String, found: String },
    #[error(
        "discovery: the issuer does not support auth_method {method}: its token_endpoint_auth_methods_supported lists {listed}"
    )]
    UnsupportedAuthMethod { method: AuthMethod, listed: String },
    #[error(
        "discovery: the issuer does not support grant_type {grant}: its grant_types_supported lists {listed}"
    )]
    UnsupportedGrant { grant: GrantKind, listed: String },
    /// `dpop = true` with an algorithm the issuer does not take proofs in (issue 25): every
    /// proof would be refused.
    #[error(
        "discovery: the issuer does not take DPoP proofs signed {algorithm} (dpop_signing_algorithm): its dpop_signing_alg_values_supported lists {listed}"
    )]
    UnsupportedDpopAlgorithm {
        algorithm: crate::signing::Algorithm,
        listed: String,
    },
}

impl DiscoveryError {
    /// Through a proxy, a transport failure names the proxy (see [`ProxyRoute::explain`]).
    fn via(self, route: &ProxyRoute) -> DiscoveryError {
        match self {
            DiscoveryError::Transport { url, error } => DiscoveryError::Transport {
                url,
                error: route.explain(error),
            },
            DiscoveryError::Status { url, status } => match route.proxy_refused(Some(status)) {
                Some(error) => DiscoveryError::Transport { url, error },
                None => DiscoveryError::Status { url, status },
            },
            other => other,
        }
    }
}

/// The metadata documents tried, in order: OpenID Connect Discovery 1.0 section 4 appends
/// `/.well-known/openid-configuration` to the issuer; RFC 8414 section 3.1 inserts
/// `/.well-known/oauth-authorization-server` between the host and the issuer's path.
pub fn metadata_urls(issuer: &Url) -> [Url; 2] {
    let path = issuer.path().trim_end_matches('/');
    let mut openid = issuer.clone();
    openid.set_path(&format!("{path}/.well-known/openid-configuration"));
    let mut rfc8414 = issuer.clone();
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    [openid, rfc8414]
}

/// Fetches and checks the issuer's metadata within `timeout`. With a trace, records each
/// request and what was taken from the answer.
pub async fn discover(
    client: &Client,
    route: &ProxyRoute,
    discovery: &DiscoveryConfig,
    token: &TokenConfig,
    timeout: Duration,
    mut trace: Option<&mut Trace>,
) -> Result<Discovered, DiscoveryError> {
    let started = Instant::now();
    let [openid, rfc8414] = metadata_urls(&discovery.issuer_url);
    let mut result = Err(DiscoveryError::Status {
        url: openid.to_string(),
        status: 404,
    });
    for url in [openid, rfc8414] {
        let left = timeout.saturating_sub(started.elapsed());
        let fetched =
            match tokio::time::timeout(left, fetch(client, &url, trace.as_deref_mut())).await {
                Ok(fetched) => fetched,
                Err(_elapsed) => Err(DiscoveryError::Transport {
                    url: url.to_string(),
                    error: TransportError::Timeout,
                }),
            };
        result = fetched.and_then(|(metadata, certificate)| {
            check(&metadata, &url, discovery, token, client).map(|found| Discovered {
                certificate,
                ..found
            })
        });
        // Only a missing OpenID document sends us on to the RFC 8414 one.
        if !matches!(result, Err(DiscoveryError::Status { status: 404, .. })) {
            break;
        }
    }
    let result = result.map_err(|error| error.via(route));
    if let Some(trace) = trace {
        trace.line(format!("took {} ms", started.elapsed().as_millis()));
        match &result {
            Ok(found) => trace.line(format!(
                "result: token endpoint {} (from {})",
                found.token_endpoint, found.source
            )),
            Err(error) => trace.line(format!("result: failed, reason discovery: {error}")),
        }
    }
    result
}

/// One metadata request: the document as JSON and the leaf certificate presented, or why there
/// is none.
async fn fetch(
    client: &Client,
    url: &Url,
    mut trace: Option<&mut Trace>,
) -> Result<(Value, Option<u64>), DiscoveryError> {
    let transport = |error: TransportError| DiscoveryError::Transport {
        url: url.to_string(),
        error,
    };
    if let Some(trace) = trace.as_deref_mut() {
        trace.line(format!(
            "-> GET {}",
            crate::probe::trace::redact_query(url.as_str())
        ));
        trace.line("Accept: application/json");
    }
    // No reqwest timeout: `discover` bounds each fetch, body included, with its one timer.
    let request = client
        .http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json");
    let mut seen = Seen::default();
    let response = send(request, &mut seen, trace).await.map_err(transport)?;
    let status = response.status().as_u16();
    let body = match read_body(response).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Err(DiscoveryError::Invalid {
                url: url.to_string(),
                why: BodyError::TooLarge.to_string(),
            });
        }
        Err(BodyError::Transport(error)) => return Err(transport(error)),
    };
    if status != 200 {
        return Err(DiscoveryError::Status {
            url: url.to_string(),
            status,
        });
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(json) if json.is_object() => Ok((json, seen.certificate)),
        _ => Err(DiscoveryError::Invalid {
            url: url.to_string(),
            why: "the body is not a JSON object".into(),
        }),
    }
}

/// The checks of a metadata document, and the token endpoint it names.
fn check(
    metadata: &Value,
    url: &Url,
    discovery: &DiscoveryConfig,
    token: &TokenConfig,
    client: &Client,
) -> Result<Discovered, DiscoveryError> {
    let invalid = |why: String| DiscoveryError::Invalid {
        url: url.to_string(),
        why,
    };
    // Server text shown to people: printable, bounded, without the proxy's credentials (the
    // only secret a discovery request carries).
    let mut scrubber = Scrubber::default();
    client.add_secrets(&mut scrubber);
    let shown = |text: &str| shorten(&scrubber.scrub(text), VALUE_CHARS, Shown::Ascii);
    let issuer = metadata
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no `issuer` string".into()))?;
    if issuer != discovery.issuer {
        return Err(DiscoveryError::IssuerMismatch {
            expected: discovery.issuer.clone(),
            found: shown(issuer),
        });
    }
    let endpoint = metadata
        .get("token_endpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no `token_endpoint` string".into()))?;
    let token_endpoint = match Url::parse(endpoint) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
            parsed
        }
        _ => {
            return Err(invalid(format!(
                "token_endpoint {:?} is not an http:// or https:// URL",
                shown(endpoint)
            )));
        }
    };
    let listed = |member: &str| -> Option<Vec<String>> {
        let values = metadata.get(member)?.as_array()?;
        Some(
            values
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        )
    };
    let list_text = |values: &[String]| shown(&format!("[{}]", values.join(", ")));
    // By the name a server lists it by (`client_assertion` as `private_key_jwt`); `json_body`,
    // a dialect with none, is not checked.
    let method = token.auth_method;
    if let Some(name) = method.registered_name()
        && let Some(methods) = listed("token_endpoint_auth_methods_supported")
        && !methods.iter().any(|m| m == name)
    {
        return Err(DiscoveryError::UnsupportedAuthMethod {
            method,
            listed: list_text(&methods),
        });
    }
    let grant = token.grant.kind();
    if let Some(grants) = listed("grant_types_supported")
        && !grants.iter().any(|g| g == grant.wire())
    {
        return Err(DiscoveryError::UnsupportedGrant {
            grant,
            listed: list_text(&grants),
        });
    }
    // RFC 9449 section 5.1. Without `dpop_signing_algorithm` a key file's own algorithm is
    // known only once it is read: checked only when it is known now.
    let dpop_algorithm = token.dpop.as_ref().and_then(|dpop| {
        dpop.algorithm.or(dpop
            .key_file
            .is_none()
            .then_some(crate::signing::Algorithm::Es256))
    });
    if let Some(algorithm) = dpop_algorithm
        && let Some(algorithms) = listed("dpop_signing_alg_values_supported")
        && !algorithms.iter().any(|a| a == algorithm.as_str())
    {
        return Err(DiscoveryError::UnsupportedDpopAlgorithm {
            algorithm,
            listed: list_text(&algorithms),
        });
    }
    Ok(Discovered {
        token_endpoint,
        source: url.clone(),
        fetched_at: Instant::now(),
        certificate: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls_append_openid_and_insert_rfc8414_before_the_path() {
        let urls =
            |issuer: &str| metadata_urls(&Url::parse(issuer).unwrap()).map(|url| url.to_string());
        assert_eq!(
            urls("https://login.example.com/tenant/v2.0"),
            [
                "https://login.example.com/tenant/v2.0/.well-known/openid-configuration",
                "https://login.example.com/.well-known/oauth-authorization-server/tenant/v2.0",
            ]
        );
        // A trailing slash is not doubled; a bare host has no path to insert.
        assert_eq!(
            urls("https://idp.example:8443/"),
            [
                "https://idp.example:8443/.well-known/openid-configuration",
                "https://idp.example:8443/.well-known/oauth-authorization-server",
            ]
        );
    }

    #[test]
    fn refresh_is_due_after_the_interval() {
        let fetched_at = Instant::now();
        let found = Discovered {
            token_endpoint: Url::parse("https://idp.example/token").unwrap(),
            source: Url::parse("https://idp.example/.well-known/openid-configuration").unwrap(),
            fetched_at,
            certificate: None,
        };
        let hour = Duration::from_secs(3600);
        assert!(!found.is_due(hour, fetched_at + Duration::from_secs(3599)));
        assert!(found.is_due(hour, fetched_at + hour));
    }
}
