//! The step-by-step account of one probe cycle for `/probe?debug=true`: each request and
//! response with every secret and token redacted, timings, and the decoded JWT header and claims
//! (never the signature or the raw token).

use std::fmt::Write as _;
use std::time::Instant;

use serde_json::Value;

use crate::secrets::Scrubber;
use crate::shorten::{Shown, shorten};

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

/// Words that make a URL query parameter's name say its value is a credential (`api_key`,
/// `access_token`, `X-Amz-Signature`, `sig`, `code`, ...): its value is shown `[redacted]`.
const SECRET_QUERY_WORDS: [&str; 18] = [
    "key",
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "pass",
    "signature",
    "sig",
    "code",
    "credential",
    "credentials",
    "assertion",
    "auth",
    "session",
    "sid",
    "jwt",
];

/// Parts that say the same inside a longer word (`accesstoken`, `xapikey`, `clientsecret`).
const SECRET_QUERY_PARTS: [&str; 5] = ["token", "secret", "password", "apikey", "signature"];

pub struct Trace {
    started: Instant,
    text: String,
    /// Every secret of the cycle as it becomes known (a proxy's credentials, the client secret,
    /// password and assertion of a token request, the issued or reused token, secret header
    /// values), removed from every line, response headers included, and once more from the
    /// whole text at the end: a header that echoed the token arrives before the body that
    /// issues it (issue 22).
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
                self.line(shorten(&scrubber.scrub(&pretty), BODY_CHARS, Shown::Lines));
            }
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                self.line(shorten(&scrubber.scrub(&text), BODY_CHARS, Shown::OneLine));
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

    /// An assertion a token request carries (the client's, the jwt-bearer grant's), decoded:
    /// its header (`alg`, `kid`, `x5t`, `x5t#S256`) and claims (`aud`, `exp`, ...) are what
    /// the server checks, so an operator can compare them with its registration. Never the
    /// signature or the encoded assertion.
    pub fn assertion(
        &mut self,
        kind: &str,
        made: &str,
        header: &serde_json::Map<String, Value>,
        claims: &serde_json::Map<String, Value>,
    ) {
        self.line(format!("{kind} ({made}; decoded, signature not shown):"));
        self.line(format!(
            "header: {}",
            serde_json::to_string(header).unwrap_or_default()
        ));
        self.line(format!(
            "claims: {}",
            serde_json::to_string_pretty(claims).unwrap_or_default()
        ));
    }

    /// A DPoP proof (RFC 9449), decoded: its header (`typ`, `alg`, and `jwk`, the public key
    /// only) and claims (`htm`, `htu`, `iat`, `jti`, `nonce`, `ath`) are what the server
    /// checks. Never the signature or the encoded proof.
    pub fn dpop_proof(
        &mut self,
        header: &serde_json::Map<String, Value>,
        claims: &serde_json::Map<String, Value>,
    ) {
        self.line("DPoP proof (decoded, signature not shown):");
        self.line(format!(
            "header: {}",
            serde_json::to_string(header).unwrap_or_default()
        ));
        self.line(format!(
            "claims: {}",
            serde_json::to_string_pretty(claims).unwrap_or_default()
        ));
    }

    /// The trace as people read it, scrubbed once more of every secret the cycle learnt.
    pub fn finish(self) -> String {
        self.always.scrub(&self.text)
    }
}

/// A URL (or any text holding one) as a trace shows it: the values of query parameters whose
/// name says they are credentials replaced by `[redacted]` (issue 22: `?api_key=...` was shown
/// verbatim). Names and every other value stay, so the request can still be recognised.
pub fn redact_query(url: &str) -> String {
    let Some((base, rest)) = url.split_once('?') else {
        return url.to_string();
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (rest, None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret_query_name(name) => format!("{name}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect();
    let mut shown = format!("{base}?{}", pairs.join("&"));
    if let Some(fragment) = fragment {
        shown.push('#');
        shown.push_str(fragment);
    }
    shown
}

/// Whether a query parameter's name (percent-decoded) says its value is a credential: one of
/// its words (split at punctuation and lower-to-upper case changes) is one of
/// [`SECRET_QUERY_WORDS`], or it contains one of [`SECRET_QUERY_PARTS`].
fn secret_query_name(name: &str) -> bool {
    let decoded: String = url::form_urlencoded::parse(format!("{name}=").as_bytes())
        .next()
        .map(|(name, _)| name.into_owned())
        .unwrap_or_default();
    let lower = decoded.to_ascii_lowercase();
    if SECRET_QUERY_PARTS.iter().any(|part| lower.contains(part)) {
        return true;
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in decoded.chars() {
        let boundary = !c.is_ascii_alphanumeric() || (c.is_ascii_uppercase() && previous_lower);
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
        .iter()
        .any(|word| SECRET_QUERY_WORDS.contains(&word.as_str()))
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
        // Headers that carry a URL: a redirect to `?code=...` or back to the form.
        "location" | "content-location" | "link" | "refresh" => {
            redact_query(&String::from_utf8_lossy(value))
        }
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

    /// Issue 22: credentials in a URL's query are not shown; other parameters are.
    #[test]
    fn query_values_whose_names_say_secret_are_redacted() {
        assert_eq!(
            redact_query("https://api.example/v1?api_key=k1&page=2&X-Amz-Signature=s&sig=x#top"),
            "https://api.example/v1?api_key=[redacted]&page=2&X-Amz-Signature=[redacted]&sig=[redacted]#top"
        );
        assert_eq!(
            redact_query("/cb?code=abc&state=xyz&accessToken=t&clientSecret=c&pass%77ord=p"),
            "/cb?code=[redacted]&state=xyz&accessToken=[redacted]&clientSecret=[redacted]&pass%77ord=[redacted]"
        );
        // Words, not letters: `keyboard`, `signal` and `decode_mode` say nothing secret.
        assert_eq!(
            redact_query("/x?keyboard=1&signal=2&decode_mode=3&flag"),
            "/x?keyboard=1&signal=2&decode_mode=3&flag"
        );
        assert_eq!(
            redact_query("https://idp.example/token"),
            "https://idp.example/token"
        );
        assert_eq!(
            header_line("Location", b"https://app.example/cb?client_secret=s3&x=1"),
            "Location: https://app.example/cb?client_secret=[redacted]&x=1"
        );
    }

    /// Issue 22: a secret learnt after a line was written (the token, issued after the header
    /// that echoed it) is still removed from the finished trace.
    #[test]
    fn the_finished_trace_is_scrubbed_of_secrets_learnt_later() {
        let mut trace = Trace::default();
        trace.line("x-seen-token: at-live-token-123");
        trace.always_scrub().add("at-live-token-123");
        trace.line("again at-live-token-123");
        let text = trace.finish();
        assert!(!text.contains("at-live-token-123"), "{text}");
        assert_eq!(text.matches("[redacted]").count(), 2, "{text}");
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
