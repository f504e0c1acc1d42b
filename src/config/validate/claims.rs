//! `[providers.NAME.token.expect]`: the claims every newly obtained token must carry (issue 13),
//! checked at load so that an empty table or value is refused rather than checking nothing. The
//! probe compares them with each token (`probe::claims`).

use super::values::Problems;
use crate::config::Expect;
use crate::config::raw::RawExpect;

/// The `[token.expect]` table: each listed value is configuration (never a secret), and an
/// empty table or value is refused rather than silently checking nothing.
pub(super) fn expected_claims(
    prefix: &str,
    raw: Option<RawExpect>,
    problems: &mut Problems,
) -> Option<Expect> {
    let raw = raw?;
    let key = |field: &str| format!("{prefix}.expect.{field}");
    if raw.scopes.is_empty()
        && raw.roles.is_empty()
        && raw.audience.is_none()
        && raw.issuer.is_none()
        && !raw.certificate_bound
    {
        problems.add(
            &format!("{prefix}.expect"),
            "empty; set at least one of scopes, roles, audience, issuer, certificate_bound (or remove the table)",
        );
    }
    for (field, values) in [("scopes", &raw.scopes), ("roles", &raw.roles)] {
        for value in values {
            if value.is_empty() || value.contains(char::is_whitespace) {
                problems.add(
                    &key(field),
                    format!("invalid value {value:?}; each is non-empty and contains no spaces"),
                );
            }
        }
    }
    for (field, value) in [("audience", &raw.audience), ("issuer", &raw.issuer)] {
        if value.as_deref().is_some_and(str::is_empty) {
            problems.add(&key(field), "must not be empty; remove it to not check it");
        }
    }
    Some(Expect {
        scopes: raw.scopes,
        roles: raw.roles,
        audience: raw.audience,
        issuer: raw.issuer,
        certificate_bound: raw.certificate_bound,
    })
}

/// `certificate_bound` compares the token's binding with the `[tls]` client certificate
/// presented, so it needs one.
pub(super) fn check_certificate_bound(
    prefix: &str,
    certificate_bound: bool,
    has_client_certificate: bool,
    problems: &mut Problems,
) {
    if certificate_bound && !has_client_certificate {
        problems.add(
            &format!("{prefix}.token.expect.certificate_bound"),
            "needs a client certificate: a token is bound (RFC 8705) to the certificate presented in mutual TLS; set client_cert_file and client_key_file in this provider's [tls] table, or remove certificate_bound",
        );
    }
}
