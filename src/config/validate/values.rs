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

/// A duration greater than zero at `key`, `default` when absent or wrong.
pub(super) fn duration_or(
    key: &str,
    text: Option<&str>,
    default: Duration,
    problems: &mut Problems,
) -> Duration {
    match text.and_then(|text| duration(key, text, "", problems)) {
        Some(duration) if duration.is_zero() => {
            problems.add(key, "must be greater than 0");
            default
        }
        Some(duration) => duration,
        None => default,
    }
}

/// A duration where `"0s"` means "off" (`max_backoff`, `probe_min_interval`).
pub(super) fn duration_or_off(
    key: &str,
    text: Option<&str>,
    default: Duration,
    problems: &mut Problems,
) -> Duration {
    text.and_then(|text| duration(key, text, ", or \"0s\" to turn it off", problems))
        .unwrap_or(default)
}

/// `text` as a duration, or a problem whose examples end with `also`.
fn duration(key: &str, text: &str, also: &str, problems: &mut Problems) -> Option<Duration> {
    humantime::parse_duration(text)
        .map_err(|error| {
            problems.add(
                key,
                format!(
                    "invalid duration {text:?} ({error}); expected e.g. \"30s\", \"5m\", \"1h\"{also}"
                ),
            );
        })
        .ok()
}

/// Text that must be given and not be empty; else `missing; ` and `why`.
pub(super) fn required(
    key: &str,
    text: Option<String>,
    why: &str,
    problems: &mut Problems,
) -> Option<String> {
    let text = text.filter(|text| !text.is_empty());
    if text.is_none() {
        problems.add(key, format!("missing; {why}"));
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Both kinds of duration, with the exact lines `--config.check` prints: a key where `"0s"`
    /// turns something off says so, one that must be positive refuses zero.
    #[test]
    fn durations_name_the_key_and_what_is_expected() {
        let mut problems = Problems::default();
        let default = Duration::from_secs(7);
        assert_eq!(duration_or("a", None, default, &mut problems), default);
        assert_eq!(
            duration_or("a", Some("90s"), default, &mut problems),
            Duration::from_secs(90)
        );
        assert_eq!(
            duration_or("a", Some("0s"), default, &mut problems),
            default
        );
        assert_eq!(
            duration_or("b", Some("60"), default, &mut problems),
            default
        );
        assert_eq!(
            duration_or_off("c", Some("0s"), default, &mut problems),
            Duration::ZERO
        );
        assert_eq!(duration_or_off("c", None, default, &mut problems), default);
        assert_eq!(
            duration_or_off("d", Some("soon"), default, &mut problems),
            default
        );
        assert_eq!(
            problems.into_lines(),
            [
                "key `a`: must be greater than 0",
                r#"key `b`: invalid duration "60" (time unit needed, for example 60sec or 60ms); expected e.g. "30s", "5m", "1h""#,
                r#"key `d`: invalid duration "soon" (expected number at 0); expected e.g. "30s", "5m", "1h", or "0s" to turn it off"#,
            ]
        );
    }

    #[test]
    fn required_text_is_given_and_not_empty() {
        let mut problems = Problems::default();
        assert_eq!(
            required("a", Some("x".into()), "why", &mut problems).as_deref(),
            Some("x")
        );
        assert_eq!(
            required("b", Some(String::new()), "why", &mut problems),
            None
        );
        assert_eq!(required("c", None, "because", &mut problems), None);
        assert_eq!(
            problems.into_lines(),
            ["key `b`: missing; why", "key `c`: missing; because"]
        );
    }
}
