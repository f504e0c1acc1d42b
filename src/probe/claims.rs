//! `[token.expect]`: does a newly obtained token carry the claims it should (issue 13)? Read
//! from the JWT's payload (decoded, never verified, as for its expiry). A mismatch is described
//! by the claim and the expected value, both configuration: never by the token or its claims'
//! other values (a certificate thumbprint, a hash of a public certificate, is no secret).
//! `certificate_bound` (issue 25) compares `cnf.x5t#S256` with the client certificate
//! presented.

use serde_json::Value;

use crate::config::Expect;
use crate::probe::jwt;

/// `Ok` when the token carries every expected claim value, else what is missing. `presented`:
/// the `x5t#S256` thumbprint of the client certificate presented for it, if any.
pub fn check(expect: &Expect, token: &str, presented: Option<&str>) -> Result<(), String> {
    let Some(claims) = jwt::claims(token) else {
        return Err(
            "the token is not a JWT (opaque), so token.expect cannot be checked; remove [token.expect] for opaque tokens"
                .into(),
        );
    };
    let mut missing = Vec::new();
    // RFC 9068: `scope`, space-separated; Entra ID: `scp`, space-separated; some servers send
    // either as a JSON array.
    let scopes: Vec<&str> = ["scope", "scp"]
        .iter()
        .filter_map(|name| claims.get(*name))
        .flat_map(words)
        .collect();
    for scope in &expect.scopes {
        if !scopes.contains(&scope.as_str()) {
            missing.push(format!("scope {scope:?} missing from `scope`/`scp`"));
        }
    }
    let roles: Vec<&str> = claims.get("roles").map(words).unwrap_or_default();
    for role in &expect.roles {
        if !roles.contains(&role.as_str()) {
            missing.push(format!("role {role:?} missing from `roles`"));
        }
    }
    if let Some(audience) = &expect.audience {
        let audiences: Vec<&str> = claims.get("aud").map(words_exact).unwrap_or_default();
        if !audiences.contains(&audience.as_str()) {
            missing.push(format!("audience {audience:?} missing from `aud`"));
        }
    }
    if let Some(issuer) = &expect.issuer
        && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
    {
        missing.push(format!("`iss` is not {issuer:?}"));
    }
    if expect.certificate_bound {
        // RFC 8705 section 3.1: `cnf` holds the base64url SHA-256 of the certificate's DER.
        let bound = claims
            .get("cnf")
            .and_then(|cnf| cnf.get("x5t#S256"))
            .and_then(Value::as_str);
        match (bound, presented) {
            (None, _) => missing.push(
                "`cnf.x5t#S256` missing: the token is not bound to the client certificate (certificate_bound)"
                    .to_string(),
            ),
            (Some(bound), Some(presented)) if bound == presented => {}
            (Some(bound), Some(presented)) => missing.push(format!(
                "`cnf.x5t#S256` names another certificate ({bound}) than the client certificate presented ({presented}) (certificate_bound)"
            )),
            (Some(bound), None) => missing.push(format!(
                "`cnf.x5t#S256` names a certificate ({bound}) but no client certificate was presented (certificate_bound)"
            )),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("token claims: {}", missing.join("; ")))
    }
}

/// A claim as a list: a space-separated string, or an array of strings.
fn words(value: &Value) -> Vec<&str> {
    match value {
        Value::String(text) => text.split_whitespace().collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// `aud`: one string (compared whole: an audience may hold spaces) or an array of strings.
fn words_exact(value: &Value) -> Vec<&str> {
    match value {
        Value::String(text) => vec![text.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn jwt(payload: serde_json::Value) -> String {
        format!(
            "{}.{}.signature-not-checked",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"at+jwt"}"#),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    }

    fn expect(scopes: &[&str], roles: &[&str], audience: Option<&str>) -> Expect {
        Expect {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            audience: audience.map(str::to_string),
            issuer: None,
            certificate_bound: false,
        }
    }

    /// One row per shape the issue names: what `check` says of a token with these claims.
    #[test]
    fn claims_in_every_shape() {
        let entra = serde_json::json!({
            "aud": "api://orders",
            "iss": "https://sts.windows.net/t/",
            "scp": "api.read api.write",
            "roles": ["Orders.Read", "Orders.Write"],
        });
        let rfc9068 = serde_json::json!({
            "aud": ["api://orders", "api://other"],
            "scope": "api.read",
        });
        let cases: Vec<(&str, Expect, serde_json::Value, Result<(), String>)> = vec![
            (
                "Entra scp string and roles array",
                expect(&["api.read"], &["Orders.Read"], Some("api://orders")),
                entra.clone(),
                Ok(()),
            ),
            (
                "RFC 9068 scope string, aud array",
                expect(&["api.read"], &[], Some("api://orders")),
                rfc9068.clone(),
                Ok(()),
            ),
            (
                "scp as an array",
                expect(&["a.b"], &[], None),
                serde_json::json!({"scp": ["a.b", "c"]}),
                Ok(()),
            ),
            (
                "missing scope",
                expect(&["api.delete"], &[], None),
                entra.clone(),
                Err(r#"token claims: scope "api.delete" missing from `scope`/`scp`"#.into()),
            ),
            (
                "missing role",
                expect(&[], &["Orders.Admin"], None),
                entra.clone(),
                Err(r#"token claims: role "Orders.Admin" missing from `roles`"#.into()),
            ),
            (
                "wrong audience",
                expect(&[], &[], Some("api://billing")),
                rfc9068.clone(),
                Err(r#"token claims: audience "api://billing" missing from `aud`"#.into()),
            ),
            (
                "several at once",
                expect(&["x"], &["Y"], None),
                serde_json::json!({}),
                Err(r#"token claims: scope "x" missing from `scope`/`scp`; role "Y" missing from `roles`"#.into()),
            ),
        ];
        for (name, expect, claims, want) in cases {
            assert_eq!(check(&expect, &jwt(claims), None), want, "{name}");
        }
        let issuer = Expect {
            issuer: Some("https://idp.example/".into()),
            ..Expect::default()
        };
        assert_eq!(
            check(&issuer, &jwt(entra), None),
            Err(r#"token claims: `iss` is not "https://idp.example/""#.into())
        );
    }

    /// `certificate_bound` (RFC 8705 section 3.1): each way a token's binding can disagree with
    /// the client certificate presented is named, and a bound token passes.
    #[test]
    fn certificate_bound_compares_cnf_with_the_presented_certificate() {
        let bound = Expect {
            certificate_bound: true,
            ..Expect::default()
        };
        let token = |cnf: serde_json::Value| jwt(serde_json::json!({"cnf": cnf}));
        let presented = "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg";
        assert_eq!(
            check(
                &bound,
                &token(serde_json::json!({"x5t#S256": presented})),
                Some(presented)
            ),
            Ok(())
        );
        assert_eq!(
            check(&bound, &jwt(serde_json::json!({"sub": "c"})), Some(presented)),
            Err("token claims: `cnf.x5t#S256` missing: the token is not bound to the client certificate (certificate_bound)".into())
        );
        assert_eq!(
            check(&bound, &token(serde_json::json!({"jkt": "dpop-key"})), Some(presented)),
            Err("token claims: `cnf.x5t#S256` missing: the token is not bound to the client certificate (certificate_bound)".into()),
            "bound to a DPoP key, not to the certificate"
        );
        assert_eq!(
            check(
                &bound,
                &token(serde_json::json!({"x5t#S256": "other-cert"})),
                Some(presented)
            ),
            Err(format!(
                "token claims: `cnf.x5t#S256` names another certificate (other-cert) than the client certificate presented ({presented}) (certificate_bound)"
            ))
        );
        assert_eq!(
            check(
                &bound,
                &token(serde_json::json!({"x5t#S256": presented})),
                None
            ),
            Err(format!(
                "token claims: `cnf.x5t#S256` names a certificate ({presented}) but no client certificate was presented (certificate_bound)"
            ))
        );
        // Without certificate_bound the binding is not looked at.
        assert_eq!(
            check(
                &Expect {
                    scopes: vec![],
                    ..Expect::default()
                },
                &jwt(serde_json::json!({})),
                None
            ),
            Ok(())
        );
    }

    #[test]
    fn an_opaque_token_with_expect_fails_without_showing_the_token() {
        let error = check(&expect(&["a"], &[], None), "opaque-Zm9vYmFy-token", None).unwrap_err();
        assert!(error.contains("not a JWT"), "{error}");
        assert!(!error.contains("Zm9vYmFy"), "{error}");
    }
}
