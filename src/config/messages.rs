//! Parser and loader errors as messages: one line each, naming the source and key, and never
//! repeating a secret (a quoted source line may be `client_secret = "..."`).

use super::env::ENV_PREFIX;

/// Where a value came from: its file, or the environment variable that set `key`.
pub(super) fn source_name(metadata: &figment::Metadata, key: &str) -> String {
    match &metadata.source {
        Some(figment::Source::File(path)) => path.display().to_string(),
        _ if metadata.name.contains("environment") => format!(
            "environment variable {ENV_PREFIX}{}",
            key.replace('.', "__").to_uppercase()
        ),
        _ => metadata.name.to_string(),
    }
}

/// One figment error as a line naming its source and key.
pub(crate) fn describe_error(error: &figment::Error) -> String {
    use figment::error::Kind;
    let mut key = error.path.join(".");
    let what = match &error.kind {
        Kind::UnknownField(field, expected) => {
            key = join_key(&key, field);
            format!("unknown key; allowed here: {}", expected.join(", "))
        }
        Kind::MissingField(field) => {
            key = join_key(&key, field);
            "missing".to_string()
        }
        // The value of a secret key is never repeated back, even when it is of the wrong type.
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) if is_secret_key(&key) => {
            format!("expected {expected}, found something else (not shown: a secret)")
        }
        // Under `providers.*` a value of the wrong type may well be a secret put one level off
        // (`token = "..."` where a table belongs, or OAUTH2_EXPORTER_PROVIDERS__P__TOKEN=...):
        // name the type found, never the value.
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected)
            if is_provider_key(&key) =>
        {
            // serde names the Rust type (`struct RawToken`); the user wrote TOML.
            let expected = match expected.strip_prefix("struct ") {
                Some(_) => "a table",
                None => expected.as_str(),
            };
            format!("expected {expected}, found {}", type_of(actual))
        }
        Kind::InvalidType(actual, expected) => format!("expected {expected}, found {actual}"),
        Kind::InvalidValue(actual, expected) => format!("expected {expected}, found {actual}"),
        Kind::InvalidLength(length, expected) => {
            format!("expected {expected}, found a length of {length}")
        }
        other => condense(&other.to_string()),
    };
    let source = error
        .metadata
        .as_ref()
        .map(|metadata| source_name(metadata, &key))
        .unwrap_or_else(|| "configuration".to_string());
    if key.is_empty() {
        format!("{source}: {what}")
    } else {
        format!("{source}: key `{key}`: {what}")
    }
}

/// A parser message on one line, without the quoted source excerpt: the offending line may be
/// `client_secret = "..."`, and a configuration error must never show a secret.
pub(super) fn condense(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .filter(|line| !line.starts_with('|'))
        .filter(|line| {
            // Excerpt lines look like `12 | client_secret = "..."`.
            !line
                .split_once(" |")
                .is_some_and(|(number, _)| number.trim().chars().all(|c| c.is_ascii_digit()))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A URL as it may appear in a message: any `user:password@` part replaced.
pub(super) fn shown_url(text: &str) -> String {
    let (scheme, rest) = match text.find("://") {
        Some(at) => (&text[..at + 3], &text[at + 3..]),
        None => ("", text),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}[redacted]@{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

/// Whether `key` is a provider's (or the `providers` table itself).
fn is_provider_key(key: &str) -> bool {
    key == "providers" || key.starts_with("providers.")
}

/// What kind of value was found, without the value.
fn type_of(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "an empty value",
        Actual::Seq => "an array",
        Actual::Map => "a table",
        Actual::NewtypeStruct
        | Actual::Enum
        | Actual::UnitVariant
        | Actual::NewtypeVariant
        | Actual::TupleVariant
        | Actual::StructVariant
        | Actual::Other(_) => "a value of another type",
    }
}

pub(super) fn is_secret_key(key: &str) -> bool {
    key.ends_with("client_secret")
        || key.ends_with("password")
        || key.starts_with("basic_auth_users")
        // A header value written inline where a `{ env = .. }` / `{ file = .. }` belongs is the
        // secret itself; a proxy URL may hold `user:password@`.
        || key.contains(".secret_headers")
        || key.ends_with("proxy_url")
}

/// Figment's error path sometimes already ends with the offending field, sometimes not.
pub(super) fn join_key(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else if path == field || path.ends_with(&format!(".{field}")) {
        path.to_string()
    } else {
        format!("{path}.{field}")
    }
}
