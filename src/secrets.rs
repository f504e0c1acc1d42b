//! Secret values (client secrets, passwords, access tokens, private keys, client assertions,
//! DPoP proofs, proxy credentials, secret header values), where they are read from, and the scrubbing of text
//! that may echo them. Every type here redacts itself in `Debug` and `Display`; reading the value
//! is a deliberate `.expose()` call.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::files::{self, CONFIG_READ_TIMEOUT};

const REDACTED: &str = "[redacted]";

/// Largest secret file read: secrets are short, and `client_secret_file = "/dev/zero"` must be
/// an error, not an exhausted memory.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Largest PEM file read (certificate bundles can be large, but not unbounded).
pub const MAX_PEM_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Defines a secret string type, in the manner of oauth2-rs's `new_secret_type!`: `Debug` and
/// `Display` print `[redacted]`, and reading the value is a deliberate `.expose()` call. Every
/// secret type is made here, so none can forget to redact itself.
macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident, $(#[$expose_doc:meta])*) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                $name(value.into())
            }

            $(#[$expose_doc])*
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(REDACTED)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(REDACTED)
            }
        }
    };
}

secret_type!(
    /// A client secret or password. Never printed.
    Secret,
    /// The value itself: only for putting it on the wire.
);

secret_type!(
    /// An access token issued by an identity provider. Never printed.
    AccessToken,
    /// The value itself: only for the `Authorization` header.
);

secret_type!(
    /// A private key's PEM text (`private_key_file`), kept to notice when the file changes.
    /// Never printed.
    PrivateKeyPem,
    /// The PEM text itself: only for parsing the key.
);

secret_type!(
    /// A signed client assertion (`private_key_jwt`, `client_secret_jwt`): a bearer credential
    /// until it expires. Never printed; a trace shows its decoded header and claims instead.
    ClientAssertion,
    /// The value itself: only for the `client_assertion` form field.
);

secret_type!(
    /// A signed DPoP proof (RFC 9449): single use, but a proof of possession of the provider's
    /// DPoP key until the server forgets its `jti`. Never printed; a trace shows its decoded
    /// header and claims instead.
    DpopProof,
    /// The value itself: only for the `DPoP` header.
);

secret_type!(
    /// The user name or password of a `proxy_url`'s `user:password@`. Never printed.
    ProxyCredential,
    /// The value itself: only for the `Proxy-Authorization` header.
);

/// Where a secret comes from. File and environment sources are read again on every use, so a
/// rotated secret takes effect without a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Inline(Secret),
    File(PathBuf),
    Env(String),
}

/// Why a secret could not be read. Never contains the secret.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("environment variable {0} is not valid UTF-8")]
    EnvNotUnicode(String),
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    #[error("cannot read {path}: {reason}")]
    FileUnreadable { path: String, reason: String },
    #[error("file {0} is empty")]
    FileEmpty(String),
    /// A secret header's value holds bytes a header may not (not shown: a secret).
    #[error(
        "the value of secret header {0} is not a valid HTTP header value (control characters or non-ASCII?)"
    )]
    NotAHeaderValue(String),
}

impl SecretSource {
    /// Reads the secret now, waiting at most [`CONFIG_READ_TIMEOUT`] for a file: for loading
    /// the configuration, off the async workers. A trailing line break in a file is not part of
    /// the secret (files written with `echo` end in one).
    pub fn read(&self) -> Result<Secret, SecretError> {
        match self {
            SecretSource::File(path) => from_file(
                path,
                files::read(path, MAX_SECRET_FILE_BYTES, CONFIG_READ_TIMEOUT),
            ),
            SecretSource::Inline(secret) => Ok(secret.clone()),
            SecretSource::Env(name) => from_env(name),
        }
    }

    /// [`SecretSource::read`] during a probe: a file gets at most `deadline` (the provider's
    /// timeout), and the wait never holds an async worker, so a stalled secret mount fails this
    /// provider alone.
    pub async fn read_within(&self, deadline: Duration) -> Result<Secret, SecretError> {
        match self {
            SecretSource::File(path) => from_file(
                path,
                files::read_async(path, MAX_SECRET_FILE_BYTES, deadline).await,
            ),
            SecretSource::Inline(secret) => Ok(secret.clone()),
            SecretSource::Env(name) => from_env(name),
        }
    }
}

/// A secret from an environment variable (never blocks).
fn from_env(name: &str) -> Result<Secret, SecretError> {
    match std::env::var(name) {
        Ok(value) if value.is_empty() => Err(SecretError::EnvEmpty(name.to_string())),
        Ok(value) => Ok(Secret(value)),
        Err(std::env::VarError::NotPresent) => Err(SecretError::EnvMissing(name.to_string())),
        Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::EnvNotUnicode(name.to_string())),
    }
}

/// A secret from what reading its file gave.
fn from_file(
    path: &std::path::Path,
    read: Result<Vec<u8>, files::ReadError>,
) -> Result<Secret, SecretError> {
    let shown = path.display().to_string();
    // Never the contents in an error: only what kind of failure it was.
    let bytes = read.map_err(|error| SecretError::FileUnreadable {
        path: shown.clone(),
        reason: error.to_string(),
    })?;
    let mut value = String::from_utf8(bytes).map_err(|_| SecretError::FileUnreadable {
        path: shown.clone(),
        reason: "not valid UTF-8".to_string(),
    })?;
    let trimmed = value.trim_end_matches(['\n', '\r']).len();
    value.truncate(trimmed);
    if value.is_empty() {
        return Err(SecretError::FileEmpty(shown));
    }
    Ok(Secret(value))
}

/// Removes known secret values from text that came back from a server (an `error_description`,
/// a body excerpt, a response header) before a person reads it in the log, on the status page,
/// in `check` or in a debug trace: a broken identity provider, API or proxy may echo the request.
///
/// Built for every token request, but used only when a person may read what came back (a
/// failure, a trace): so `add` only keeps the value, and the encodings it travels in are worked
/// out when text is scrubbed, not for every request that succeeds.
///
/// Holds the secrets themselves, so it has no derived `Debug`: its own prints only a count.
#[derive(Default, Clone)]
pub struct Scrubber {
    values: Vec<String>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} values {REDACTED})", self.values.len())
    }
}

impl Scrubber {
    /// Secrets shorter than this are not scrubbed: replacing every "a" would destroy the text
    /// and protect nothing.
    const MIN_LEN: usize = 4;

    /// Adds a value, to be removed together with the encodings it travels in (form, JSON,
    /// Basic header).
    pub fn add(&mut self, value: &str) {
        if value.len() >= Self::MIN_LEN && !self.values.iter().any(|known| known == value) {
            self.values.push(value.to_string());
        }
    }

    /// Adds every value `other` knows (a request's secrets to a whole cycle's).
    pub fn extend(&mut self, other: &Scrubber) {
        for value in &other.values {
            self.add(value);
        }
    }

    /// Every value and the encodings the exporter itself sends it in, each once, longest
    /// first (so a value containing another is removed whole): as written; form-urlencoded
    /// (a space as `+`: form bodies); percent-encoded with a space as `%20` (the parts of an
    /// `Authorization: Basic` header, issue 22: a server that decodes the base64 and echoes
    /// `id:secret` shows this form); JSON-escaped (`json_body`). The Basic header's base64 is
    /// added as a value of its own by client authentication, where it is built.
    fn needles(&self) -> Vec<String> {
        let mut needles: Vec<String> = Vec::with_capacity(self.values.len() * 4);
        for value in &self.values {
            let form: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
            let percent = form.replace('+', "%20");
            let json = serde_json::to_string(value).unwrap_or_default();
            let json = json.trim_matches('"').to_string();
            for needle in [value.clone(), form, percent, json] {
                if !needles.contains(&needle) {
                    needles.push(needle);
                }
            }
        }
        needles.sort_by_key(|needle| std::cmp::Reverse(needle.len()));
        needles
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        if self.values.is_empty() {
            return out;
        }
        for needle in self.needles() {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_tokens_redact_themselves() {
        let secret = Secret::new("hunter2-very-secret");
        let token = AccessToken::new("eyJ.token.value");
        assert_eq!(format!("{secret} {secret:?}"), "[redacted] [redacted]");
        assert_eq!(format!("{token} {token:?}"), "[redacted] [redacted]");
        let source = SecretSource::Inline(secret);
        assert!(!format!("{source:?}").contains("hunter2"));
    }

    #[test]
    fn file_secret_is_reread_and_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "first\n").unwrap();
        let source = SecretSource::File(path.clone());
        assert_eq!(source.read().unwrap().expose(), "first");
        std::fs::write(&path, "second\r\n").unwrap();
        assert_eq!(source.read().unwrap().expose(), "second");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(source.read(), Err(SecretError::FileEmpty(_))));
        std::fs::remove_file(&path).unwrap();
        let error = source.read().unwrap_err();
        assert!(error.to_string().starts_with("cannot read "), "{error}");
    }

    #[test]
    fn endless_or_huge_secret_files_are_errors_not_exhausted_memory() {
        // An endless device is refused for what it is (issue 17) before a byte is read.
        let source = SecretSource::File(PathBuf::from("/dev/zero"));
        assert_eq!(
            source.read().unwrap_err().to_string(),
            "cannot read /dev/zero: not a regular file (character device); name a regular file \
             or a symlink to one"
        );
        let dir = tempfile::tempdir().unwrap();
        let huge = dir.path().join("huge");
        std::fs::write(&huge, vec![b'x'; 64 * 1024 + 1]).unwrap();
        let error = SecretSource::File(huge).read().unwrap_err().to_string();
        assert!(error.ends_with(": larger than 65536 bytes"), "{error}");
    }

    /// Issue 17: what a probe's `secret_unavailable` and a load's problem say about a secret
    /// file on a stalled mount (the stall itself is tested in `src/files/tests.rs`).
    #[test]
    fn a_stalled_secret_file_says_it_timed_out() {
        let stalled = from_file(
            std::path::Path::new("/mnt/secrets/okq8"),
            Err(files::ReadError::TimedOut(Duration::from_secs(5))),
        );
        assert_eq!(
            stalled.unwrap_err().to_string(),
            "cannot read /mnt/secrets/okq8: timed out reading (no answer within 5s; a hung mount \
             or a stalled file system?)"
        );
    }

    #[test]
    fn missing_env_secret_names_the_variable() {
        let source = SecretSource::Env("OAUTH2_EXPORTER_TEST_SURELY_UNSET_VAR".into());
        assert_eq!(
            source.read().unwrap_err().to_string(),
            "environment variable OAUTH2_EXPORTER_TEST_SURELY_UNSET_VAR is not set"
        );
    }

    #[test]
    fn scrubber_removes_raw_form_and_json_encodings() {
        let mut scrubber = Scrubber::default();
        scrubber.add("p@ss w/rd\"x");
        scrubber.add("abc"); // too short to scrub meaningfully
        let echoed = "raw=p@ss w/rd\"x form=p%40ss+w%2Frd%22x json=p@ss w/rd\\\"x abc";
        assert_eq!(
            scrubber.scrub(echoed),
            "raw=[redacted] form=[redacted] json=[redacted] abc"
        );
    }

    /// Issue 22: `client_secret_basic` sends a space as `%20` (RFC 6749 2.3.1 with percent
    /// escapes only); a server that decodes the header and echoes `id:secret` showed the secret.
    #[test]
    fn scrubber_removes_the_percent_form_basic_credentials_travel_in() {
        let mut scrubber = Scrubber::default();
        scrubber.add("two words+plus");
        assert_eq!(
            scrubber.scrub("you sent client:two%20words%2Bplus"),
            "you sent client:[redacted]"
        );
    }

    /// A cycle's scrubber learns a request's secrets, and a value that contains another one is
    /// removed whole, not left in pieces around the shorter one.
    #[test]
    fn scrubbers_extend_and_remove_the_longest_value_first() {
        let mut request = Scrubber::default();
        request.add("token-abcdef");
        let mut cycle = Scrubber::default();
        cycle.add("abcdef");
        cycle.extend(&request);
        assert_eq!(cycle.scrub("t=token-abcdef"), "t=[redacted]");
        assert_eq!(cycle.scrub("s=abcdef"), "s=[redacted]");
        assert_eq!(format!("{cycle:?}"), "Scrubber(2 values [redacted])");
    }
}
