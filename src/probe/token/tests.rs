//! Unit tests of the token request: parsing a response (expiry, JSON pointers, a JWT's `exp`),
//! the reason each failure maps to, and the basic authorization header.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::config::BasicEncoding;
use crate::config::load_str;
use crate::probe::client_auth::basic_authorization;

fn token_config(extra: &str) -> TokenConfig {
    let toml = format!(
        "[providers.p.token]\nurl = \"http://127.0.0.1:1/token\"\nclient_id = \"id\"\nclient_secret = \"s3cret-value\"\n{extra}"
    );
    let config = load_str(&toml, &Default::default()).unwrap();
    config.providers[0].token.clone()
}

fn interpret_body(
    status: u16,
    body: &str,
    config: &TokenConfig,
) -> Result<IssuedToken, TokenError> {
    let mut scrubber = Scrubber::default();
    scrubber.add("s3cret-value");
    interpret(
        status,
        None,
        body.as_bytes(),
        config,
        &scrubber,
        SystemTime::now(),
    )
}

fn jwt_with(claims: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims))
}

#[test]
fn expires_in_as_number_or_string() {
    let config = token_config("");
    for body in [
        r#"{"access_token":"t","token_type":"Bearer","expires_in":3599}"#,
        r#"{"access_token":"t","token_type":"bearer","expires_in":"3599"}"#,
    ] {
        let token = interpret_body(200, body, &config).unwrap();
        assert_eq!(token.lifetime, Some(Duration::from_secs(3599)), "{body}");
        assert!(token.expires_at.is_some());
    }
    let fractional = interpret_body(200, r#"{"access_token":"t","expires_in":1.5}"#, &config);
    assert_eq!(
        fractional.unwrap().lifetime,
        Some(Duration::from_millis(1500))
    );
}

#[test]
fn response_fields_as_json_pointers() {
    let config = token_config(
        "[providers.p.token.response]\naccess_token = \"/data/token\"\nexpires_in = \"/data/ttl\"",
    );
    let token = interpret_body(200, r#"{"data":{"token":"abc","ttl":60}}"#, &config).unwrap();
    assert_eq!(token.access_token.expose(), "abc");
    assert_eq!(token.lifetime, Some(Duration::from_secs(60)));
}

#[test]
fn lifetime_falls_back_to_jwt_exp_then_unknown() {
    let config = token_config("[providers.p.token.response]\naccess_token = \"accessToken\"");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let with_iat = jwt_with(&format!(r#"{{"iat":{now},"exp":{}}}"#, now + 3600));
    let body = format!(r#"{{"accessToken":"{with_iat}"}}"#);
    let token = interpret_body(200, &body, &config).unwrap();
    assert_eq!(token.lifetime, Some(Duration::from_secs(3600)));
    assert_eq!(
        token.expires_at,
        Some(UNIX_EPOCH + Duration::from_secs(now + 3600))
    );

    let opaque = interpret_body(200, r#"{"accessToken":"opaque"}"#, &config).unwrap();
    assert_eq!((opaque.lifetime, opaque.expires_at), (None, None));

    let malformed = jwt_with("not json");
    let body = format!(r#"{{"accessToken":"{malformed}"}}"#);
    let token = interpret_body(200, &body, &config).unwrap();
    assert_eq!((token.lifetime, token.expires_at), (None, None));
}

#[test]
fn failures_map_to_their_reasons() {
    let config = token_config("");
    let cases = [
        (
            401,
            r#"{"error":"invalid_client","error_description":"bad secret s3cret-value"}"#,
            "invalid_client",
        ),
        (400, r#"{"error":"invalid_grant"}"#, "invalid_grant"),
        (400, r#"{"error":"invalid_scope"}"#, "invalid_scope"),
        (400, r#"{"error":"invalid_request"}"#, "invalid_request"),
        (
            400,
            r#"{"error":"unauthorized_client"}"#,
            "unauthorized_client",
        ),
        (
            400,
            r#"{"error":"unsupported_grant_type"}"#,
            "unsupported_grant_type",
        ),
        (400, r#"{"error":"interaction_required"}"#, "oauth_error"),
        (200, r#"{"error":"invalid_client"}"#, "invalid_client"),
        (429, r#"{"error":"invalid_client"}"#, "rate_limited"),
        (403, "<html>forbidden</html>", "http_4xx"),
        (401, "", "http_4xx"),
        (502, "<html>bad gateway</html>", "http_5xx"),
        (302, "", "invalid_response"),
        (200, "<html>ok</html>", "invalid_response"),
        (200, r#"{"access_token":"t""#, "invalid_response"),
        (200, r#"[{"access_token":"t"}]"#, "invalid_response"),
        (200, r#"{"access_token":""}"#, "invalid_response"),
        (200, r#"{"access_token":42}"#, "invalid_response"),
        (200, r#"{"token":"t"}"#, "invalid_response"),
        (
            200,
            r#"{"access_token":"t","token_type":"mac"}"#,
            "invalid_response",
        ),
        (
            200,
            r#"{"access_token":"t","expires_in":-1}"#,
            "invalid_response",
        ),
        (
            200,
            r#"{"access_token":"t","expires_in":"soon"}"#,
            "invalid_response",
        ),
        (
            200,
            r#"{"access_token":"t","expires_in":1e300}"#,
            "invalid_response",
        ),
    ];
    for (status, body, reason) in cases {
        let error = interpret_body(status, body, &config).unwrap_err();
        assert_eq!(error.reason(), reason, "{status} {body}: {error}");
        assert!(!error.to_string().contains("s3cret-value"), "{error}");
    }
}

#[test]
fn zero_lifetime_is_accepted_as_already_expiring() {
    let config = token_config("");
    let token = interpret_body(200, r#"{"access_token":"t","expires_in":0}"#, &config).unwrap();
    assert_eq!(token.lifetime, Some(Duration::ZERO));
}

#[test]
fn basic_header_form_encodes_before_base64() {
    let decoded = |encoding, id, secret| {
        let header = basic_authorization(encoding, id, secret);
        assert!(header.is_sensitive());
        let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap()
    };
    // Issue 11: percent escapes only, a space as %20 (Authlib reads `+` as a plus).
    assert_eq!(
        decoded(BasicEncoding::Form, "id:1", "p@ss word+"),
        "id%3A1:p%40ss%20word%2B"
    );
    assert_eq!(
        decoded(BasicEncoding::Raw, "id", "p@ss word+:%"),
        "id:p@ss word+:%"
    );
}

/// Issue 25: with `dpop = true` a token must come as `token_type` DPoP; a Bearer one (any case)
/// or none is not bound to the key, reason `dpop`; the server's refusal of a proof (or its
/// nonce demand, after the one retry) is `dpop` too, with its words in the detail.
#[test]
fn dpop_token_types_and_errors_map_to_dpop() {
    let config = token_config("dpop = true");
    let ok = interpret_body(
        200,
        r#"{"access_token":"t","token_type":"dpop","expires_in":60}"#,
        &config,
    );
    assert_eq!(ok.unwrap().lifetime, Some(Duration::from_secs(60)));
    let cases = [
        (
            200,
            r#"{"access_token":"t","token_type":"BEARER"}"#,
            "dpop",
            "token_type \"BEARER\"",
        ),
        (200, r#"{"access_token":"t"}"#, "dpop", "no token_type"),
        (
            200,
            r#"{"access_token":"t","token_type":"N_A"}"#,
            "invalid_response",
            "not DPoP",
        ),
        (
            400,
            r#"{"error":"invalid_dpop_proof","error_description":"DPoP proof JWT Replay detected"}"#,
            "dpop",
            "invalid_dpop_proof: DPoP proof JWT Replay detected",
        ),
        (
            400,
            r#"{"error":"use_dpop_nonce","error_description":"nonce is required in the DPoP proof"}"#,
            "dpop",
            "use_dpop_nonce",
        ),
    ];
    for (status, body, reason, detail) in cases {
        let error = interpret_body(status, body, &config).unwrap_err();
        assert_eq!(error.reason(), reason, "{status} {body}: {error}");
        assert!(error.to_string().contains(detail), "{error}");
    }
    // Without DPoP a DPoP token type is not Bearer: not a usable answer, as before.
    let plain = token_config("");
    let error = interpret_body(200, r#"{"access_token":"t","token_type":"DPoP"}"#, &plain);
    assert_eq!(error.unwrap_err().reason(), "invalid_response");
}
