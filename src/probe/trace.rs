//! The step-by-step account of one probe cycle for `/probe?debug=true`: each request and
//! response with every secret and token redacted, timings, and the decoded JWT header and claims
//! (never the signature or the raw token).

use std::fmt::Write as _;
use std::time::Instant;

use serde_json::Value;

use crate::secrets::{Scrubber, excerpt};

const REDACTED: &str = "[redacted]";

/// JSON members whose values are credentials wherever they appear.
const SENSITIVE_KEYS: [&str; 8] = [
    "access_token",
    "accessToken",
    "refresh_token",
    "refreshToken",
    "id_token",
    "idToken",
    "client_secret",
    "password",
];

/// Longest body excerpt a trace shows.
const BODY_CHARS: usize = 2048;

pub struct Trace {
    started: Instant,
    text: String,
    /// Secrets that hold for the whole cycle (a proxy's credentials), removed from every line,
    /// response headers included.
    always: Scrubber,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            started: Instant::now(),
            text: String::new(),
            always: Scrubber::default(),
        }
    }
}

impl Trace {
    /// The scrubber applied to every line from now on.
    pub fn always_scrub(&mut self) -> &mut Scrubber {
        &mut self.always
    }

    /// Starts a section, e.g. "token request".
    pub fn section(&mut self, title: &str) {
        let _ = writeln!(
            self.text,
            "\n[{:>7.1} ms] == {title}",
            self.started.elapsed().as_secs_f64() * 1000.0
        );
    }

    pub fn line(&mut self, text: impl AsRef<str>) {
        let text = self.always.scrub(text.as_ref());
        for line in text.lines() {
            let _ = writeln!(self.text, "  {line}");
        }
    }

    /// A response or request body: JSON pretty-printed with credentials redacted, anything else
    /// as a scrubbed excerpt.
    pub fn body(&mut self, body: &[u8], extra_sensitive: &[&str], scrubber: &Scrubber) {
        if body.is_empty() {
            self.line("(empty body)");
            return;
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(mut json) => {
                redact_json(&mut json, extra_sensitive);
                let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
                self.line(excerpt_lines(&scrubber.scrub(&pretty)));
            }
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                self.line(excerpt(scrubber, &text, BODY_CHARS));
            }
        }
    }

    /// The decoded header and claims of a JWT access token.
    pub fn jwt(&mut self, token: &str) {
        match (
            crate::probe::jwt::header(token),
            crate::probe::jwt::claims(token),
        ) {
            (Some(header), Some(claims)) => {
                self.line("access token is a JWT (decoded, not verified; signature not shown):");
                self.line(format!(
                    "header: {}",
                    serde_json::to_string(&header).unwrap_or_default()
                ));
                self.line(format!(
                    "claims: {}",
                    serde_json::to_string_pretty(&claims).unwrap_or_default()
                ));
            }
            _ => self.line("access token is opaque (not a JWT)"),
        }
    }

    /// The client assertion a token request carries, decoded: its header (`alg`, `kid`, `x5t`,
    /// `x5t#S256`) and claims (`aud`, `exp`, ...) are what the server checks, so an operator
    /// can compare them with its registration. Never the signature or the encoded assertion.
    pub fn assertion(
        &mut self,
        method: &str,
        header: &serde_json::Map<String, Value>,
        claims: &serde_json::Map<String, Value>,
    ) {
        self.line(format!(
            "client assertion ({method}; decoded, signature not shown):"
        ));
        self.line(format!(
            "header: {}",
            serde_json::to_string(header).unwrap_or_default()
        ));
        self.line(format!(
            "claims: {}",
            serde_json::to_string_pretty(claims).unwrap_or_default()
        ));
    }

    pub fn finish(self) -> String {
        self.text
    }
}

fn excerpt_lines(text: &str) -> String {
    if text.chars().count() <= BODY_CHARS {
        return text.to_string();
    }
    let mut out: String = text.chars().take(BODY_CHARS).collect();
    out.push_str("\n… (truncated)");
    out
}

/// Replaces the values of credential members, at any depth, with `[redacted]`.
pub fn redact_json(value: &mut Value, extra_sensitive: &[&str]) {
    match value {
        Value::Object(map) => {
            for (key, member) in map.iter_mut() {
                if SENSITIVE_KEYS.contains(&key.as_str()) || extra_sensitive.contains(&key.as_str())
                {
                    *member = Value::String(REDACTED.to_string());
                } else {
                    redact_json(member, extra_sensitive);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                redact_json(item, extra_sensitive);
            }
        }
        _ => {}
    }
}

/// A header as shown in a trace: credentials and cookies redacted.
pub fn header_line(name: &str, value: &[u8]) -> String {
    let lower = name.to_ascii_lowercase();
    let shown = match lower.as_str() {
        "authorization" | "proxy-authorization" => {
            let text = String::from_utf8_lossy(value);
            match text.split_once(' ') {
                Some((scheme, _)) => format!("{scheme} {REDACTED}"),
                None => REDACTED.to_string(),
            }
        }
        "cookie" | "set-cookie" => REDACTED.to_string(),
        _ => String::from_utf8_lossy(value).into_owned(),
    };
    format!("{name}: {shown}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_at_any_depth() {
        let mut json = serde_json::json!({
            "access_token": "t1",
            "data": {"token": "t2", "refresh_token": "r", "list": [{"id_token": "i"}]},
            "expires_in": 3600
        });
        redact_json(&mut json, &["token"]);
        assert_eq!(
            json,
            serde_json::json!({
                "access_token": "[redacted]",
                "data": {"token": "[redacted]", "refresh_token": "[redacted]", "list": [{"id_token": "[redacted]"}]},
                "expires_in": 3600
            })
        );
    }

    #[test]
    fn authorization_and_cookies_are_redacted() {
        assert_eq!(
            header_line("Authorization", b"Basic abc"),
            "Authorization: Basic [redacted]"
        );
        assert_eq!(header_line("set-cookie", b"a=b"), "set-cookie: [redacted]");
        assert_eq!(
            header_line("content-type", b"application/json"),
            "content-type: application/json"
        );
    }
}
