//! The keys that warn before a credential breaks (issue 13): the expiry dates of a client
//! secret and a password (`client_secret_expires`, `password_expires`), the claims a token
//! must carry (`[providers.NAME.token.expect]`), and the warning for a date already past.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::validate::Problems;
use super::{Config, Expect, Grant};

/// An RFC 3339 date (`2027-05-01`, taken as the start of that day in UTC: the earliest moment
/// the provider may mean) or date-time (`2027-05-01T12:00:00Z`, `2027-05-01T14:00:00+02:00`).
pub(super) fn parse_date(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if text.len() == 10 {
        return humantime::parse_rfc3339(&format!("{text}T00:00:00Z")).ok();
    }
    // humantime reads `Z` (or no zone) only: a numeric offset is applied here.
    let (local, offset) = if let Some(local) = text.strip_suffix(['Z', 'z']) {
        (local, 0i64)
    } else {
        let split = text.len().checked_sub(6)?;
        let (local, zone) = (text.get(..split)?, text.get(split..)?);
        let sign = match zone.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (hours, minutes) = zone.get(1..)?.split_once(':')?;
        let (hours, minutes) = (hours.parse::<i64>().ok()?, minutes.parse::<i64>().ok()?);
        if !(0..24).contains(&hours) || !(0..60).contains(&minutes) {
            return None;
        }
        (local, sign * (hours * 3600 + minutes * 60))
    };
    // A date-time needs its time: `T` (or a space, as RFC 3339 allows) and `HH:MM:SS`.
    if local.len() < 19 {
        return None;
    }
    let utc_as_local = humantime::parse_rfc3339_weak(local).ok()?;
    let magnitude = Duration::from_secs(offset.unsigned_abs());
    // Local time minus its offset is UTC.
    if offset >= 0 {
        utc_as_local.checked_sub(magnitude)
    } else {
        utc_as_local.checked_add(magnitude)
    }
    .filter(|at| *at >= UNIX_EPOCH)
}

/// `client_secret_expires` / `password_expires`: a date, or a problem naming the key.
pub(super) fn expiry_date(
    key: &str,
    text: Option<&str>,
    problems: &mut Problems,
) -> Option<SystemTime> {
    let text = text?;
    let parsed = parse_date(text);
    if parsed.is_none() {
        problems.add(
            key,
            format!(
                "invalid date {text:?}; expected an RFC 3339 date or date-time, e.g. \"2027-05-01\" or \"2027-05-01T12:00:00Z\""
            ),
        );
    }
    parsed
}

/// The `[token.expect]` table: each listed value is configuration (never a secret), and an
/// empty table or value is refused rather than silently checking nothing.
pub(super) fn expect(
    prefix: &str,
    raw: Option<super::raw::RawExpect>,
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

/// One line per configured expiry date already past at `now`: the exporter starts all the same
/// (it is there to show the breakage), and says so at start and at every reload.
pub fn expired_credential_warnings(config: &Config, now: SystemTime) -> Vec<String> {
    let mut warnings = Vec::new();
    for provider in &config.providers {
        let password = match &provider.token.grant {
            Grant::Password { .. } => provider.token.password_expires,
            Grant::ClientCredentials => None,
        };
        for (key, date) in [
            (
                "client_secret_expires",
                provider.token.client_secret_expires,
            ),
            ("password_expires", password),
        ] {
            if let Some(date) = date.filter(|date| *date <= now) {
                warnings.push(format!(
                    "key `providers.{}.token.{key}`: {} is in the past; the credential has expired (renew it, then update the date)",
                    provider.name,
                    humantime::format_rfc3339_seconds(date)
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn dates_and_date_times_with_any_offset() {
        assert_eq!(parse_date("2027-05-01"), Some(at("2027-05-01T00:00:00Z")));
        assert_eq!(
            parse_date("2027-05-01T12:30:00Z"),
            Some(at("2027-05-01T12:30:00Z"))
        );
        assert_eq!(
            parse_date("2027-05-01 12:30:00z"),
            Some(at("2027-05-01T12:30:00Z"))
        );
        assert_eq!(
            parse_date("2027-05-01T14:30:00+02:00"),
            Some(at("2027-05-01T12:30:00Z"))
        );
        assert_eq!(
            parse_date("2027-05-01T10:00:00-02:30"),
            Some(at("2027-05-01T12:30:00Z"))
        );
        assert_eq!(
            parse_date("2027-05-01T12:30:00.5Z"),
            Some(at("2027-05-01T12:30:00.5Z"))
        );
        for bad in [
            "",
            "2027-5-1",
            "2027-13-01",
            "01.05.2027",
            "2027-05-01T12:30",
            "2027-05-01T12:30:00+25:00",
            "2027-05-01T12:30:00+0200",
            "tomorrow",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }
}
