//! DPoP (RFC 9449, issue 25): `dpop`, `dpop_signing_algorithm` and `dpop_key_file` of a
//! `[token]` table over `dpop` and `dpop_signing_algorithm` of `[defaults]`. A key file is read
//! and checked against the algorithm once here, so bad material stops start-up (and
//! `--config.check`) with its key named; the probe re-reads it every cycle.

use std::path::PathBuf;

use super::client_auth::read_key;
use super::values::Problems;
use crate::config::DpopConfig;
use crate::config::raw::{RawDefaults, RawToken};
use crate::signing::Algorithm;

/// The algorithms a proof may be signed with, as messages list them.
const ALLOWED: &str = "ES256 (EC P-256, the default), RS256, PS256 (RSA)";

/// What `[defaults]` says of DPoP, for every provider that does not say otherwise.
#[derive(Default)]
pub(super) struct DpopDefaults {
    enabled: bool,
    algorithm: Option<Algorithm>,
}

/// `[defaults]`' `dpop` and `dpop_signing_algorithm`.
pub(super) fn defaults(raw: &RawDefaults, problems: &mut Problems) -> DpopDefaults {
    DpopDefaults {
        enabled: raw.dpop.unwrap_or(false),
        algorithm: raw
            .dpop_signing_algorithm
            .as_deref()
            .and_then(|text| algorithm("defaults.dpop_signing_algorithm", text, problems)),
    }
}

/// A `[token]` table's DPoP keys, taken out before the rest of the table is validated.
pub(super) struct RawDpop {
    dpop: Option<bool>,
    algorithm: Option<String>,
    key_file: Option<PathBuf>,
}

pub(super) fn take(raw: &mut RawToken) -> RawDpop {
    RawDpop {
        dpop: raw.dpop.take(),
        algorithm: raw.dpop_signing_algorithm.take(),
        key_file: raw.dpop_key_file.take(),
    }
}

/// The DPoP settings of the `[token]` table at `prefix`; `None` when DPoP is off (or a key has
/// a problem, which is added to `problems`).
pub(super) fn dpop(
    prefix: &str,
    raw: RawDpop,
    defaults: &DpopDefaults,
    problems: &mut Problems,
) -> Option<Box<DpopConfig>> {
    let key = |field: &str| format!("{prefix}.{field}");
    let configured = raw
        .algorithm
        .as_deref()
        .and_then(|text| algorithm(&key("dpop_signing_algorithm"), text, problems));
    if !raw.dpop.unwrap_or(defaults.enabled) {
        // A key or algorithm written for a provider that sends no proofs is a misunderstanding
        // to point out (`[defaults]`' algorithm is only a default, and may go unused).
        for (field, given) in [
            ("dpop_signing_algorithm", raw.algorithm.is_some()),
            ("dpop_key_file", raw.key_file.is_some()),
        ] {
            if given {
                problems.add(
                    &key(field),
                    "only meaningful with dpop = true (here or in [defaults]); set it or remove this key",
                );
            }
        }
        return None;
    }
    let algorithm = configured.or(defaults.algorithm);
    let Some(path) = raw.key_file else {
        return Some(Box::new(DpopConfig {
            algorithm,
            key_file: None,
        }));
    };
    let signing_key = read_key(&key("dpop_key_file"), &path, problems)?;
    match signing_key.algorithm(algorithm) {
        // Kept as written: without an algorithm, a rotated key of the other kind signs with
        // its own.
        Ok(_) => Some(Box::new(DpopConfig {
            algorithm,
            key_file: Some(path),
        })),
        Err(error) => {
            problems.add(
                &key("dpop_signing_algorithm"),
                format!("{error} (the key in {})", path.display()),
            );
            None
        }
    }
}

/// A `dpop_signing_algorithm` value: an asymmetric one (a proof shows possession of a private
/// key; a shared secret proves nothing a server could check).
fn algorithm(key: &str, text: &str, problems: &mut Problems) -> Option<Algorithm> {
    match Algorithm::parse(text) {
        Some(algorithm) if Algorithm::ASYMMETRIC.contains(&algorithm) => Some(algorithm),
        Some(algorithm) => {
            problems.add(
                key,
                format!(
                    "{algorithm} cannot sign a DPoP proof (RFC 9449 requires an asymmetric algorithm); allowed: {ALLOWED}"
                ),
            );
            None
        }
        None => {
            problems.add(key, format!("unknown value {text:?}; allowed: {ALLOWED}"));
            None
        }
    }
}
