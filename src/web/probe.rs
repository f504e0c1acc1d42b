//! `/probe?provider=NAME`: one cycle now, run by the provider's own task (so it never overlaps
//! a periodic cycle, and callers that arrive together share one cycle), answered as Prometheus
//! exposition text like blackbox_exporter's `/probe`, optionally preceded by a debug trace.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Request, StatusCode};

use super::server::{HttpResponse, respond};
use super::{METRICS_CONTENT_TYPE, WebState};
use crate::humanize;
use crate::metrics::probe_page;
use crate::scheduler::{ProbeRequest, Repeated, RepeatedBecause};

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
    let names = || state.recorders.directory().names().join("\n");
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
    if let (Some(owner), Some(shard)) = (
        state.recorders.directory().owner_elsewhere(&provider),
        state.shard,
    ) {
        return respond(
            StatusCode::NOT_FOUND,
            text,
            format!(
                "provider {provider:?} is probed by shard {owner} of {total}; this is {shard}\n",
                total = shard.total()
            ),
        );
    }
    let Some(requests) = state.recorders.directory().get(&provider) else {
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
            let exposition = probe_page::render(
                &answer.report,
                answer.held.as_ref(),
                answer.repeated.map(|repeated| repeated.age),
                requests.labels(),
            );
            let mut response = if debug {
                let note = answer
                    .repeated
                    .map(|repeated| format!("\n{}\n", describe(&repeated)))
                    .unwrap_or_default();
                let trace = answer.trace.unwrap_or_else(|| {
                    "\n(no trace: no attempt was made; the metrics below are of the last refusal)"
                        .to_string()
                });
                respond(
                    StatusCode::OK,
                    text,
                    format!(
                        "Probe of provider {provider}\n{note}{trace}\n\n== resulting metrics\n{exposition}"
                    ),
                )
            } else {
                respond(StatusCode::OK, METRICS_CONTENT_TYPE, exposition)
            };
            // When a fresh attempt is allowed (issue 23), as RFC 9110's Retry-After: seconds.
            if let Some(repeated) = answer.repeated {
                let seconds = repeated.fresh_in.as_secs_f64().ceil() as u64;
                if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                    response.headers_mut().insert(RETRY_AFTER, value);
                }
            }
            response
        }
        _ => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            text,
            "the probe cycle did not complete (see the exporter's log)\n",
        ),
    }
}

/// Why no attempt was made for this request, as the debug page says it.
fn describe(repeated: &Repeated) -> String {
    let age = humanize::human(repeated.age);
    let fresh_in = humanize::human(repeated.fresh_in);
    match repeated.why {
        RepeatedBecause::MinInterval(limit) => format!(
            "repeated: the result of the last on-demand probe, {age} old; a fresh attempt is allowed in {fresh_in} ([web] probe_min_interval = {})",
            humantime::format_duration(limit)
        ),
        RepeatedBecause::BackingOff { steps, reason } => format!(
            "not probed: backing off after {steps} refusal{} ({reason}) and the credentials have not changed since; this is the last refusal, {age} old; the next attempt is due in {fresh_in}, or as soon as the credentials change",
            if steps == 1 { "" } else { "s" }
        ),
    }
}
