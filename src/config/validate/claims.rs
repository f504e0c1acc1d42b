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
    {
        problems.add(
            &format!("{prefix}.expect"),
            "empty; set at least one of scopes, roles, audience, issuer (or remove the table)",
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
    })
}
