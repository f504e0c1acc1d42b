//! Reading (never verifying) the claims of a JWT access token, to learn its expiry when the
//! token response does not say.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The claims object of a compact-serialised JWT, or `None` if the token is not one.
pub fn claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    decode_part(token, 1)
}

/// The JOSE header object of a compact-serialised JWT.
pub fn header(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    decode_part(token, 0)
}

fn decode_part(token: &str, index: usize) -> Option<serde_json::Map<String, serde_json::Value>> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return None; // five parts: an encrypted JWE, whose payload we cannot read
    }
    // Some issuers pad base64url although RFC 7515 says not to.
    let decoded = URL_SAFE_NO_PAD
        .decode(parts[index].trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&decoded).ok()? {
        serde_json::Value::Object(object) => Some(object),
        _ => None,
    }
}

/// A NumericDate claim (`exp`, `iat`) as seconds since the epoch; RFC 7519 allows fractions.
pub fn numeric_date(
    claims: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<f64> {
    claims
        .get(name)?
        .as_f64()
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn reads_exp_and_iat() {
        let claims = claims(&jwt(r#"{"exp":1700003600,"iat":1700000000.5}"#)).unwrap();
        assert_eq!(numeric_date(&claims, "exp"), Some(1_700_003_600.0));
        assert_eq!(numeric_date(&claims, "iat"), Some(1_700_000_000.5));
        assert_eq!(numeric_date(&claims, "nbf"), None);
    }

    #[test]
    fn rejects_what_is_not_a_readable_jwt() {
        assert!(claims("opaque-token").is_none());
        assert!(claims("a.b").is_none());
        assert!(claims("a.%%%.c").is_none());
        assert!(claims(&jwt("[1,2]")).is_none());
        assert!(claims(&jwt("not json")).is_none());
        assert!(claims("a.b.c.d.e").is_none());
        let negative = claims(&jwt(r#"{"exp":-5}"#)).unwrap();
        assert_eq!(numeric_date(&negative, "exp"), None);
    }
}
