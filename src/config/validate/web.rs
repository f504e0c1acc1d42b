//! `[web]`: the address to listen on (also as given by `--web.listen-address`) and how often
//! `/probe` may make a real attempt per provider.

use std::time::Duration;

use super::values::{Problems, duration_or_off};
use crate::config::{DEFAULT_LISTEN_ADDRESS, DEFAULT_PROBE_MIN_INTERVAL};

/// `web.listen_address`, the default when absent.
pub(super) fn listen_address(raw: Option<String>, problems: &mut Problems) -> String {
    let address = raw.unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_string());
    check_listen_address("web.listen_address", &address, problems);
    address
}

/// `web.probe_min_interval`, where `"0s"` turns the limit off.
pub(super) fn probe_min_interval(raw: Option<&str>, problems: &mut Problems) -> Duration {
    duration_or_off(
        "web.probe_min_interval",
        raw,
        DEFAULT_PROBE_MIN_INTERVAL,
        problems,
    )
}

/// `HOST:PORT`, or `:PORT` for every interface as Prometheus exporters write it (the host may
/// be a name such as `localhost`, or an IPv6 address in brackets such as `[::]`).
fn check_listen_address(key: &str, address: &str, problems: &mut Problems) {
    let valid = match address.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok()
                && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')))
        }
        None => false,
    };
    if !valid {
        problems.add(
            key,
            format!("invalid address {address:?}; expected HOST:PORT, e.g. \"0.0.0.0:9875\""),
        );
    }
}

/// The problems of several listen addresses given for `key`.
pub(in crate::config) fn check_listen_addresses(key: &str, addresses: &[String]) -> Vec<String> {
    let mut problems = Problems::default();
    for address in addresses {
        check_listen_address(key, address, &mut problems);
    }
    problems.into_lines()
}
