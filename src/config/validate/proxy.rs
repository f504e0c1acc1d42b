//! `proxy_url`, from `[defaults]` or a provider: `"none"` or a proxy URL whose
//! `user:password@` is kept apart, as a secret.

use url::Url;

use super::values::Problems;
use crate::config::messages::shown_url;
use crate::config::{ProxySetting, ProxyUrl};
use crate::secrets::ProxyCredential;

/// `proxy_url`: `"none"`, or an `http://` / `https://` URL of a proxy with an optional
/// `user:password@` (kept apart from the URL, as a secret). Messages never show the credentials.
pub(super) fn proxy_setting(
    key: &str,
    text: &str,
    problems: &mut Problems,
) -> Option<ProxySetting> {
    if text == "none" {
        return Some(ProxySetting::Disabled);
    }
    let allowed = "expected \"none\" or a proxy URL such as \"http://proxy.example:3128\" (http:// or https://, optional user:password@, no path)";
    let mut url = match Url::parse(text) {
        Ok(url) => url,
        Err(error) => {
            problems.add(
                key,
                format!("invalid URL {:?} ({error}); {allowed}", shown_url(text)),
            );
            return None;
        }
    };
    let shown = shown_url(text);
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        problems.add(
            key,
            format!(
                "unsupported proxy {shown:?} (scheme {:?}); {allowed}",
                url.scheme()
            ),
        );
        return None;
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        problems.add(
            key,
            format!("proxy {shown:?} has a path, query or fragment; {allowed}"),
        );
        return None;
    }
    let decode = |part: &str| {
        percent_decode(part).ok_or_else(|| {
            format!("the user:password@ part of proxy {shown:?} is not valid percent-encoded UTF-8")
        })
    };
    let credentials = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        match (
            decode(url.username()),
            decode(url.password().unwrap_or_default()),
        ) {
            (Ok(user), Ok(password)) => {
                Some((ProxyCredential::new(user), ProxyCredential::new(password)))
            }
            (Err(why), _) | (_, Err(why)) => {
                problems.add(key, why);
                return None;
            }
        }
    };
    // Infallible for an http(s) URL with a host; checked anyway rather than unwrapped.
    if url.set_username("").is_err() || url.set_password(None).is_err() {
        problems.add(
            key,
            format!("cannot separate the credentials of proxy {shown:?}"),
        );
        return None;
    }
    Some(ProxySetting::Url(Box::new(ProxyUrl { url, credentials })))
}

/// Percent-decoding of a URL's user or password part (`None`: not UTF-8 or a broken escape).
pub(crate) fn percent_decode(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
