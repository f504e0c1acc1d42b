//! `/probe?provider=NAME`: one cycle now, run by the provider's own task (so it never overlaps
//! a periodic cycle, and callers that arrive together share one cycle), answered as Prometheus
//! exposition text like blackbox_exporter's `/probe`, optionally preceded by a debug trace.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::server::{HttpResponse, respond};
use super::{METRICS_CONTENT_TYPE, WebState};
use crate::metrics::probe_page;
use crate::scheduler::ProbeRequest;

/// How long `/probe` waits for its cycle: a cycle is itself bounded by the provider's timeout
/// (at most two token and two canary requests); this only guards against a stuck queue.
const PROBE_WAIT: Duration = Duration::from_secs(300);

pub(super) async fn probe(state: &WebState, request: &Request<Incoming>) -> HttpResponse {
    let text = "text/plain; charset=utf-8";
    let mut provider = None;
    let mut debug = false;
    for (key, value) in url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
    {
        match key.as_ref() {
            "provider" => provider = Some(value.into_owned()),
            "debug" => debug = matches!(value.as_ref(), "true" | "1"),
            _ => {}
        }
    }
    let names = || state.directory.names().join("\n");
    let Some(provider) = provider.filter(|p| !p.is_empty()) else {
        return respond(
            StatusCode::BAD_REQUEST,
            text,
            format!(
                "missing ?provider=NAME; configured providers:\n{}\n",
                names()
            ),
        );
    };
    if let (Some(owner), Some(shard)) = (state.directory.owner_elsewhere(&provider), state.shard) {
        return respond(
            StatusCode::NOT_FOUND,
            text,
            format!(
                "provider {provider:?} is probed by shard {owner} of {total}; this is {shard}\n",
                total = shard.total()
            ),
        );
    }
    let Some(requests) = state.directory.get(&provider) else {
        return respond(
            StatusCode::NOT_FOUND,
            text,
            format!(
                "unknown provider {:?}; configured providers:\n{}\n",
                provider.chars().take(64).collect::<String>(),
                names()
            ),
        );
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if requests.try_send(ProbeRequest { debug, reply }).is_err() {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            "too many probes waiting for this provider; try again\n",
        );
    }
    match tokio::time::timeout(PROBE_WAIT, answer).await {
        Ok(Ok(answer)) => {
            let exposition = probe_page::render(&answer.report, answer.held.as_ref());
            let body = match answer.trace {
                Some(trace) => format!(
                    "Probe of provider {provider}{trace}\n\n== resulting metrics\n{exposition}"
                ),
                None => exposition,
            };
            let content_type = if debug { text } else { METRICS_CONTENT_TYPE };
            respond(StatusCode::OK, content_type, body)
        }
        _ => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            text,
            "the probe cycle did not complete (see the exporter's log)\n",
        ),
    }
}
