//! What every section's validation shares: the list of problems, and the values many keys take
//! (durations, http(s) URLs, expiry dates, secrets in their three forms). Imports no section.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use url::Url;

use crate::config::expiry::parse_date;
use crate::config::messages::shown_url;
use crate::secrets::{Secret, SecretSource};

/// Collects problems while validation goes on, so that one run reports all of them.
#[derive(Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    pub(super) fn add(&mut self, key: &str, what: impl fmt::Display) {
        self.0.push(format!("key `{key}`: {what}"));
    }

    /// How many so far: a part is whole if the count did not move while it was checked.
    pub(super) fn count(&self) -> usize {
        self.0.len()
    }

    pub(super) fn into_lines(self) -> Vec<String> {
        self.0
    }
}

pub(super) fn duration_or(
    key: &str,
    text: Option<&str>,
    default: Duration,
    problems: &mut Problems,
) -> Duration {
    let Some(text) = text else { return default };
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => {
            problems.add(key, "must be greater than 0");
            default
        }
        Ok(duration) => duration,
        Err(error) => {
            problems.add(
                key,
                format!(
                    "invalid duration {text:?} ({error}); expected e.g. \"30s\", \"5m\", \"1h\""
                ),
            );
            default
        }
    }
}

/// A duration where `"0s"` means "off" (`max_backoff`, `probe_min_interval`).
pub(super) fn duration_or_off(
    key: &str,
    text: Option<&str>,
    default: Duration,
    problems: &mut Problems,
) -> Duration {
    let Some(text) = text else { return default };
    match humantime::parse_duration(text) {
        Ok(duration) => duration,
        Err(error) => {
            problems.add(
                key,
                format!(
                    "invalid duration {text:?} ({error}); expected e.g. \"30s\", \"5m\", \"1h\", or \"0s\" to turn it off"
                ),
            );
            default
        }
    }
}

pub(super) fn http_url(key: &str, text: Option<&str>, problems: &mut Problems) -> Option<Url> {
    let Some(text) = text else {
        problems.add(key, "missing; an http:// or https:// URL is required");
        return None;
    };
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            if !url.username().is_empty() || url.password().is_some() {
                problems.add(
                    key,
                    "credentials in the URL are not allowed; use the client_secret keys",
                );
                return None;
            }
            Some(url)
        }
        Ok(url) => {
            problems.add(
                key,
                format!(
                    "unsupported URL {:?} (scheme {:?}); expected http:// or https:// with a host",
                    shown_url(text),
                    url.scheme()
                ),
            );
            None
        }
        Err(error) => {
            problems.add(
                key,
                format!(
                    "invalid URL {:?} ({error}); expected an http:// or https:// URL",
                    shown_url(text)
                ),
            );
            None
        }
    }
}

/// Exactly one of the inline, file and environment forms of a secret.
pub(super) fn secret_source(
    key: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
    env: Option<String>,
    problems: &mut Problems,
) -> Option<SecretSource> {
    let given = [inline.is_some(), file.is_some(), env.is_some()]
        .iter()
        .filter(|given| **given)
        .count();
    let forms = format!("{key} | {key}_file | {key}_env");
    if given != 1 {
        let what = if given == 0 {
            format!("missing; set exactly one of {forms}")
        } else {
            format!("more than one source given; set exactly one of {forms}")
        };
        problems.add(key, what);
        return None;
    }
    let (source, source_key) = if let Some(value) = inline {
        (SecretSource::Inline(Secret::new(value)), key.to_string())
    } else if let Some(path) = file {
        (SecretSource::File(path), format!("{key}_file"))
    } else if let Some(name) = env {
        (SecretSource::Env(name), format!("{key}_env"))
    } else {
        return None;
    };
    // Resolve once now, so a missing variable or unreadable file stops start-up with its name.
    if let Err(error) = source.read() {
        problems.add(&source_key, error);
        return None;
    }
    Some(source)
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
