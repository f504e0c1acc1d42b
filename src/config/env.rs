//! The environment layer of the configuration: `OAUTH2_EXPORTER_SECTION__KEY=value`. Values are
//! kept as the strings they are: parsing them as TOML would turn a client id `0123` into the
//! number 123. The few non-string keys accept their value written as text (see [`lenient`]).

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

/// The prefix of every environment variable the configuration reads.
pub const ENV_PREFIX: &str = "OAUTH2_EXPORTER_";

/// Every `OAUTH2_EXPORTER_*` variable whose name contains `__` (every key lives in a section, so
/// unrelated variables sharing the prefix, such as `OAUTH2_EXPORTER_REQUIRE_PEERS`, are not
/// mistaken for keys). Key names are lower-cased.
pub struct EnvStrings;

impl Provider for EnvStrings {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut root = Dict::new();
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
                continue;
            };
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if !rest.contains("__") {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            insert(&mut root, &path, value);
        }
        Ok(Profile::Default.collect(root))
    }
}

fn insert(dict: &mut Dict, path: &[String], value: &str) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        dict.insert(first.clone(), Value::from(value.to_string()));
        return;
    }
    let entry = dict
        .entry(first.clone())
        .or_insert_with(|| Value::from(Dict::new()));
    if entry.as_dict().is_none() {
        *entry = Value::from(Dict::new());
    }
    if let Value::Dict(_, inner) = entry {
        insert(inner, rest, value);
    }
}

/// Deserializers for keys that are not strings but may arrive as text from the environment.
pub mod lenient {
    use serde::de::{self, Deserializer, SeqAccess, Visitor};
    use std::fmt;

    /// `true` / `false`, as a boolean or as text.
    pub fn bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
        struct BoolVisitor;
        impl Visitor<'_> for BoolVisitor {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<bool, E> {
                Ok(value)
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<bool, E> {
                match value.trim() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(E::invalid_value(de::Unexpected::Str(value), &self)),
                }
            }
        }
        deserializer.deserialize_any(BoolVisitor)
    }

    /// [`bool`] for a key whose absence means something (inherit `[defaults]`): `None` when
    /// not written (with `#[serde(default)]`).
    pub fn optional_bool<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<bool>, D::Error> {
        bool(deserializer).map(Some)
    }

    /// A list, or text holding one: `a b`, `a,b` or `["a", "b"]`.
    pub fn strings<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
        struct StringsVisitor;
        impl<'de> Visitor<'de> for StringsVisitor {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(items)
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Vec<String>, E> {
                let inner = value.trim().trim_start_matches('[').trim_end_matches(']');
                Ok(inner
                    .split([',', ' '])
                    .map(|item| item.trim().trim_matches('"').to_string())
                    .filter(|item| !item.is_empty())
                    .collect())
            }
        }
        deserializer.deserialize_any(StringsVisitor)
    }

    /// A list of HTTP status codes, or text holding one: `200,204` or `[200, 204]`.
    pub fn statuses<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u16>>, D::Error> {
        struct StatusesVisitor;
        impl<'de> Visitor<'de> for StatusesVisitor {
            type Value = Option<Vec<u16>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of HTTP status codes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<u16>()? {
                    items.push(item);
                }
                Ok(Some(items))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                let inner = value.trim().trim_start_matches('[').trim_end_matches(']');
                inner
                    .split([',', ' '])
                    .filter(|item| !item.trim().is_empty())
                    .map(|item| {
                        item.trim()
                            .parse::<u16>()
                            .map_err(|_| E::invalid_value(de::Unexpected::Str(value), &self))
                    })
                    .collect::<Result<Vec<u16>, E>>()
                    .map(Some)
            }
        }
        deserializer.deserialize_any(StatusesVisitor)
    }
}
