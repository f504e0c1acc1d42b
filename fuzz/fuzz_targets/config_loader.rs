//! Fuzz target `config_loader` (issue #4): any text handed to the configuration loader is either
//! a valid configuration or a list of problems, never a panic. Inputs that are not UTF-8 are
//! skipped: TOML is UTF-8 by definition and the loader takes `&str`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use oauth2_exporter::config::{Overrides, load_str};

/// The provider name rule as docs/configuration.md states it, `[A-Za-z0-9_.-]{1,64}`: pinned here
/// rather than re-applying the loader's own `is_valid_provider_name`, which would agree with
/// whatever the loader accepted.
fn documented_provider_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fuzz_target!(|data: &[u8]| {
    let Ok(toml) = std::str::from_utf8(data) else {
        return;
    };
    match load_str(toml, &Overrides::default()) {
        Ok(config) => {
            // Validation is the only gate: what passes it must honour what it promises.
            let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
            assert!(names.is_sorted(), "providers not sorted: {names:?}");
            for provider in &config.providers {
                assert!(
                    documented_provider_name(&provider.name),
                    "{:?}",
                    provider.name
                );
                assert!(!provider.interval.is_zero() && !provider.timeout.is_zero());
                assert!(!provider.token.client_id.is_empty());
                assert!(matches!(provider.token.endpoint.configured().scheme(), "http" | "https"));
            }
        }
        // An error always says what is wrong.
        Err(error) => assert!(!error.problems.is_empty(), "error without problems"),
    }
});
