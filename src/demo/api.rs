//! The canary APIs: GET endpoints that answer only for a live token issued for their own provider,
//! and 401 with an RFC 6750 challenge otherwise.

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use super::{Api, State, json_response, method_not_allowed};
use crate::web::server::HttpResponse;

/// A GET that answers `body()` for a live token issued for `api`, 401 otherwise (RFC 6750 3).
pub(super) fn canary(
    state: &State,
    request: &Request<Incoming>,
    api: Api,
    body: impl FnOnce() -> Value,
) -> HttpResponse {
    if request.method() != Method::GET {
        return method_not_allowed("GET");
    }
    if let Some(response) = reject_bearer(state, request.headers(), api) {
        return response;
    }
    json_response(StatusCode::OK, &body())
}

/// EqHub's legacy product lookup: numeric TEK numbers only, like the former EqHub.
pub(super) fn canary_teknos(state: &State, request: &Request<Incoming>, id: &str) -> HttpResponse {
    if request.method() != Method::GET {
        return method_not_allowed("GET");
    }
    if let Some(response) = reject_bearer(state, request.headers(), Api::EqHub) {
        return response;
    }
    if id.is_empty() || id.len() > 16 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"message": "No product found with the given TEK number"}),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({
            "TEKNo": id,
            "ProductName": "Demo ball valve DN50 PN40",
            "Manufacturer": "Demo Valves AS",
            "ProductClass": "Valve",
        }),
    )
}

/// `None` when the request carries a live bearer token for `api`, else the 401 to send.
fn reject_bearer(state: &State, headers: &HeaderMap, api: Api) -> Option<HttpResponse> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let challenge = match token {
        Some(token) if state.accepts(token, api) => return None,
        Some(_) => {
            "Bearer realm=\"demo\", error=\"invalid_token\", \
             error_description=\"the access token is unknown or expired\""
        }
        None => "Bearer realm=\"demo\"",
    };
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"statusCode": 401, "message": "Unauthorized. Access token is missing or invalid."}),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    Some(response)
}
