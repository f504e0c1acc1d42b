//! Test configurations built instead of written out: [`Provider`] is one `[providers.NAME]`
//! block (a token endpoint with the client `id`/`secret`, optionally a canary, provider-level
//! settings and any further keys), so a test states only what its subject needs and the many
//! `provider = |name| format!(...)` helpers are one. Nothing here checks the result: the daemon
//! or `--config.check` does, and says what is wrong.
//!
//! ```ignore
//! let toml = [
//!     Provider::new("okq8", &idp.url("/token")).timeout("300ms").canary(&idp.url("/api")),
//!     Provider::new("cube", &idp.url("/cube")).token_key("scopes", r#"["orders"]"#),
//! ]
//! .map(|p| p.toml())
//! .concat();
//! ```
use std::fmt;

/// One `[providers.NAME]` block; see the module documentation.
#[derive(Debug, Clone)]
pub struct Provider {
    name: String,
    /// `key = value` lines of `[providers.NAME]` (values as TOML text).
    settings: Vec<String>,
    /// `key = value` lines of `[providers.NAME.token]`.
    token: Vec<String>,
    /// `key = value` lines of `[providers.NAME.canary]`, when there is a canary.
    canary: Option<Vec<String>>,
    /// `key = value` lines of `[providers.NAME.tls]`.
    tls: Vec<String>,
    /// Further tables or lines, appended as they are.
    extra: Vec<String>,
}

impl Provider {
    /// A provider whose token endpoint is `token_url`, with client id `id` and secret `secret`.
    pub fn new(name: &str, token_url: &str) -> Provider {
        Provider {
            name: name.to_owned(),
            settings: Vec::new(),
            token: vec![
                format!("url = \"{token_url}\""),
                "client_id = \"id\"".to_owned(),
                "client_secret = \"secret\"".to_owned(),
            ],
            canary: None,
            tls: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// A provider that discovers its token endpoint from `issuer` (OpenID Connect discovery),
    /// with client id `id` and secret `secret`.
    pub fn issuer(name: &str, issuer: &str) -> Provider {
        let mut provider = Provider::new(name, "");
        provider.token[0] = format!("issuer = \"{issuer}\"");
        provider
    }

    /// Another client id and secret than `id` and `secret`.
    pub fn client(mut self, id: &str, secret: &str) -> Provider {
        self.token[1] = format!("client_id = \"{id}\"");
        self.token[2] = format!("client_secret = \"{secret}\"");
        self
    }

    /// The client secret read from `path` (`client_secret_file`) instead of written inline.
    pub fn secret_file(mut self, path: &std::path::Path) -> Provider {
        self.token[2] = format!("client_secret_file = '{}'", path.display());
        self
    }

    /// No client secret at all, for an `auth_method` that proves the client otherwise
    /// (`private_key_jwt`, `tls_client_auth`).
    pub fn no_secret(mut self) -> Provider {
        self.token[2].clear();
        self
    }

    /// Client `id` proving itself with `auth_method` (`private_key_jwt`, `tls_client_auth`)
    /// instead of a client secret.
    pub fn keyless(self, id: &str, auth_method: &str) -> Provider {
        self.client(id, "")
            .no_secret()
            .token_key("auth_method", &format!("\"{auth_method}\""))
    }

    /// A file key of `[providers.NAME.token]` (`private_key_file`, `password_file`, ...).
    pub fn token_file(self, key: &str, path: impl AsRef<std::path::Path>) -> Provider {
        self.token_key(key, &format!("'{}'", path.as_ref().display()))
    }

    /// A file key of `[providers.NAME.tls]` (`ca_file`, `client_cert_file`, `client_key_file`).
    pub fn tls_file(mut self, key: &str, path: impl AsRef<std::path::Path>) -> Provider {
        self.tls
            .push(format!("{key} = '{}'", path.as_ref().display()));
        self
    }

    /// The provider's own `timeout`.
    pub fn timeout(self, timeout: &str) -> Provider {
        self.setting("timeout", &format!("\"{timeout}\""))
    }

    /// The provider's own `interval`.
    pub fn interval(self, interval: &str) -> Provider {
        self.setting("interval", &format!("\"{interval}\""))
    }

    /// Any key of `[providers.NAME]`, its value as TOML text (`"1s"` quoted, `true` bare).
    pub fn setting(mut self, key: &str, value: &str) -> Provider {
        self.settings.push(format!("{key} = {value}"));
        self
    }

    /// Any key of `[providers.NAME.token]`, its value as TOML text.
    pub fn token_key(mut self, key: &str, value: &str) -> Provider {
        self.token.push(format!("{key} = {value}"));
        self
    }

    /// A canary calling `url`.
    pub fn canary(mut self, url: &str) -> Provider {
        self.canary = Some(vec![format!("url = \"{url}\"")]);
        self
    }

    /// Any key of `[providers.NAME.canary]` (after [`Provider::canary`]), as TOML text.
    pub fn canary_key(mut self, key: &str, value: &str) -> Provider {
        self.canary
            .as_mut()
            .expect("canary_key after canary(url)")
            .push(format!("{key} = {value}"));
        self
    }

    /// Lines appended after the provider's tables as they are (a `[providers.NAME.tls]` table, a
    /// canary's extra keys written as text).
    pub fn raw(mut self, text: &str) -> Provider {
        self.extra.push(text.to_owned());
        self
    }

    /// The block as TOML text.
    pub fn toml(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        writeln!(f)?;
        if !self.settings.is_empty() {
            writeln!(f, "[providers.{name}]")?;
            for line in &self.settings {
                writeln!(f, "{line}")?;
            }
        }
        writeln!(f, "[providers.{name}.token]")?;
        for line in self.token.iter().filter(|line| !line.is_empty()) {
            writeln!(f, "{line}")?;
        }
        if let Some(canary) = &self.canary {
            writeln!(f, "[providers.{name}.canary]")?;
            for line in canary {
                writeln!(f, "{line}")?;
            }
        }
        if !self.tls.is_empty() {
            writeln!(f, "[providers.{name}.tls]")?;
            for line in &self.tls {
                writeln!(f, "{line}")?;
            }
        }
        for text in &self.extra {
            writeln!(f, "{text}")?;
        }
        Ok(())
    }
}

/// A `[defaults]` table of `key = value` lines (values as TOML text, `"1s"` quoted).
pub fn defaults(settings: &[(&str, &str)]) -> String {
    let mut text = String::from("[defaults]\n");
    for (key, value) in settings {
        text.push_str(&format!("{key} = {value}\n"));
    }
    text
}

/// Many providers as one configuration text.
pub fn providers<'a>(providers: impl IntoIterator<Item = &'a Provider>) -> String {
    providers.into_iter().map(Provider::toml).collect()
}
