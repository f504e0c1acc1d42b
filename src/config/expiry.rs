//! The expiry dates of a client secret and a password (`client_secret_expires`,
//! `password_expires`, issue 13): the dates as RFC 3339 text is read, and the warning for a date
//! already past. Validation (`validate::values`) reads the keys with [`parse_date`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Config, Grant};

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

/// One line per configured expiry date already past at `now`: the exporter starts all the same
/// (it is there to show the breakage), and says so at start and at every reload.
pub fn expired_credential_warnings(config: &Config, now: SystemTime) -> Vec<String> {
    let mut warnings = Vec::new();
    for provider in &config.providers {
        let password = match &provider.token.grant {
            Grant::Password(_) => provider.token.password_expires,
            Grant::ClientCredentials | Grant::JwtBearer(_) => None,
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
