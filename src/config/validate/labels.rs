//! `labels` (issue 26): a provider's own labels, from `[defaults]` with the provider's table
//! adding to and overriding them, checked by name and value, and interned so that providers
//! with equal sets share one copy.

use std::collections::{BTreeMap, HashMap};

use super::values::Problems;
use crate::config::{Labels, SeriesLabel};

/// The longest label value, in characters: longer than any team, environment or cost centre
/// name, and short enough that a typo (a pasted file) does not grow every series of a provider.
pub(in crate::config) const MAX_VALUE_CHARS: usize = 256;

/// Labels Prometheus or the shipped alert rules set themselves: `job` and `instance` are the
/// scrape target's (a clash would be renamed `exported_job`), `alertname` and `alertstate` are
/// on every alert, and `severity` is set by every shipped alert rule, so a provider's value
/// would be overwritten on the alerts it is meant to route.
const TAKEN_ELSEWHERE: [&str; 5] = ["job", "instance", "alertname", "alertstate", "severity"];

/// The checked `labels` of `[defaults]` (problems named `defaults.labels.KEY`), before any
/// provider adds to them.
pub(super) fn defaults(
    raw: BTreeMap<String, String>,
    problems: &mut Problems,
) -> BTreeMap<String, String> {
    checked("defaults.labels", raw, problems)
}

/// A provider's set: `defaults` with its own `raw` labels added and overriding (an empty value
/// removes a default's label), interned in `interned`.
pub(super) fn provider(
    prefix: &str,
    defaults: &BTreeMap<String, String>,
    raw: BTreeMap<String, String>,
    interned: &mut Interned,
    problems: &mut Problems,
) -> Labels {
    let own = checked(&format!("{prefix}.labels"), raw, problems);
    let mut merged = defaults.clone();
    merged.extend(own);
    // A label with an empty value is no label to Prometheus: not written at all.
    merged.retain(|_, value| !value.is_empty());
    interned.get(merged)
}

/// The sets made so far, so that providers with equal labels share one allocation.
#[derive(Default)]
pub(super) struct Interned(HashMap<BTreeMap<String, String>, Labels>);

impl Interned {
    fn get(&mut self, set: BTreeMap<String, String>) -> Labels {
        if set.is_empty() {
            return Labels::default();
        }
        self.0
            .entry(set)
            .or_insert_with_key(|set| {
                Labels::new(
                    set.iter()
                        .map(|(name, value)| (name.as_str().into(), value.as_str().into()))
                        .collect(),
                )
            })
            .clone()
    }
}

/// The labels of one table whose name and value pass, each problem named `{table}.KEY`.
fn checked(
    table: &str,
    raw: BTreeMap<String, String>,
    problems: &mut Problems,
) -> BTreeMap<String, String> {
    raw.into_iter()
        .filter(|(name, value)| {
            let before = problems.count();
            let key = format!("{table}.{name}");
            if let Some(problem) = name_problem(name) {
                problems.add(&key, problem);
            }
            let chars = value.chars().count();
            if chars > MAX_VALUE_CHARS {
                problems.add(
                    &key,
                    format!(
                        "value is {chars} characters long; allowed: any text up to {MAX_VALUE_CHARS} characters"
                    ),
                );
            }
            problems.count() == before
        })
        .collect()
}

/// Whether `name` is a Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*` (for `labels` and
/// `check --label`).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why `name` cannot be a provider's label, if it cannot.
pub(in crate::config) fn name_problem(name: &str) -> Option<String> {
    if !is_valid_label_name(name) {
        return Some(format!(
            "invalid label name {name:?}; allowed: a Prometheus label name, a letter or _ then letters, digits or _ ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if name.starts_with("__") {
        return Some(format!(
            "label name {name:?} starts with __, which Prometheus reserves for its own use; allowed: any other label name"
        ));
    }
    if SeriesLabel::ALL.iter().any(|label| label.as_str() == name) {
        return Some(format!(
            "label name {name:?} is one the exporter's own series use; allowed: any label name but {}",
            reserved().join(", ")
        ));
    }
    if TAKEN_ELSEWHERE.contains(&name) {
        return Some(format!(
            "label name {name:?} is set by Prometheus or the shipped alert rules; allowed: any label name but {}",
            reserved().join(", ")
        ));
    }
    None
}

/// Every name a provider's label may not take (besides those starting with `__`).
fn reserved() -> Vec<&'static str> {
    SeriesLabel::ALL
        .iter()
        .map(|label| label.as_str())
        .chain(TAKEN_ELSEWHERE)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::super::{Overrides, load_str};

    const PROVIDER: &str = r#"
        [providers.p.token]
        url = "https://idp.example/token"
        client_id = "id"
        client_secret = "s"
    "#;

    fn labels_of(toml: &str) -> Vec<(String, Vec<(String, String)>)> {
        let config = load_str(toml, &Overrides::default()).expect("valid");
        config
            .providers
            .iter()
            .map(|p| {
                let pairs = p
                    .labels
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                (p.name.clone(), pairs)
            })
            .collect()
    }

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_string(), value.to_string())
    }

    /// `[defaults]` gives every provider its labels; a provider's table adds to them and
    /// overrides the defaults' values, an empty value removes one; equal sets are one copy.
    #[test]
    fn a_provider_adds_to_and_overrides_the_defaults_labels() {
        let toml = format!(
            r#"
            [defaults]
            labels = {{ team = "payments", env = "prod" }}
            {PROVIDER}
            [providers.q]
            labels = {{ env = "staging", tier = "gold" }}
            [providers.q.token]
            url = "https://idp.example/token"
            client_id = "id"
            client_secret = "s"
            [providers.r]
            labels = {{ env = "" }}
            [providers.r.token]
            url = "https://idp.example/token"
            client_id = "id"
            client_secret = "s"
            [providers.s.token]
            url = "https://idp.example/token"
            client_id = "id"
            client_secret = "s"
            "#
        );
        assert_eq!(
            labels_of(&toml),
            vec![
                (
                    "p".to_string(),
                    vec![pair("env", "prod"), pair("team", "payments")]
                ),
                (
                    "q".to_string(),
                    vec![
                        pair("env", "staging"),
                        pair("team", "payments"),
                        pair("tier", "gold")
                    ]
                ),
                ("r".to_string(), vec![pair("team", "payments")]),
                (
                    "s".to_string(),
                    vec![pair("env", "prod"), pair("team", "payments")]
                ),
            ]
        );
        let config = load_str(&toml, &Overrides::default()).expect("valid");
        let [p, q, _, s] = &config.providers[..] else {
            panic!("four providers")
        };
        assert!(p.labels.shares_with(&s.labels), "equal sets are one copy");
        assert!(!p.labels.shares_with(&q.labels));
    }

    /// Every refused name and value, each named by its key with what is wrong and what is
    /// allowed; the defaults' problems under `defaults.labels`.
    #[test]
    fn every_refused_label_is_named_by_its_key() {
        let long = "x".repeat(super::MAX_VALUE_CHARS + 1);
        let fits = "é".repeat(super::MAX_VALUE_CHARS);
        let toml = format!(
            r#"
            [defaults]
            labels = {{ job = "x", "__meta" = "x" }}
            [providers.p]
            labels = {{ provider = "x", reason = "x", le = "x", grant_type = "x", "9lives" = "x", "team-name" = "x", severity = "x", long = "{long}", fits = "{fits}", quoted = "a \"b\" \\ c\nd" }}
            [providers.p.token]
            url = "https://idp.example/token"
            client_id = "id"
            client_secret = "s"
            "#
        );
        let problems = load_str(&toml, &Overrides::default()).unwrap_err().problems;
        let reserved = "provider, reason, phase, code, credential, grant_type, le, job, instance, alertname, alertstate, severity";
        let ours = |key: &str, name: &str| {
            format!(
                "key `{key}`: label name \"{name}\" is one the exporter's own series use; allowed: any label name but {reserved}"
            )
        };
        let invalid = |key: &str, name: &str| {
            format!(
                "key `{key}`: invalid label name \"{name}\"; allowed: a Prometheus label name, a letter or _ then letters, digits or _ ([a-zA-Z_][a-zA-Z0-9_]*)"
            )
        };
        assert_eq!(
            problems,
            vec![
                "key `defaults.labels.__meta`: label name \"__meta\" starts with __, which Prometheus reserves for its own use; allowed: any other label name".to_string(),
                format!("key `defaults.labels.job`: label name \"job\" is set by Prometheus or the shipped alert rules; allowed: any label name but {reserved}"),
                invalid("providers.p.labels.9lives", "9lives"),
                ours("providers.p.labels.grant_type", "grant_type"),
                ours("providers.p.labels.le", "le"),
                "key `providers.p.labels.long`: value is 257 characters long; allowed: any text up to 256 characters".to_string(),
                ours("providers.p.labels.provider", "provider"),
                ours("providers.p.labels.reason", "reason"),
                format!("key `providers.p.labels.severity`: label name \"severity\" is set by Prometheus or the shipped alert rules; allowed: any label name but {reserved}"),
                invalid("providers.p.labels.team-name", "team-name"),
            ]
        );
    }
}
