//! Records what `--version` and `oauth2_exporter_build_info` say about the build: the git
//! revision, the build date and the rustc version. Nothing here uses the network.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    // Built outside a git checkout (e.g. from a crates.io package): say so plainly.
    let revision = first_line("git", &["rev-parse", "--short=12", "HEAD"]);
    println!("cargo:rustc-env=OAUTH2_EXPORTER_REVISION={revision}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");

    // SOURCE_DATE_EPOCH (reproducible-builds.org) makes the date, and so the binary, repeatable.
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs())
                .unwrap_or(0)
        });
    println!(
        "cargo:rustc-env=OAUTH2_EXPORTER_BUILD_DATE={}",
        build_date(seconds)
    );

    // Cargo tells build scripts which compiler builds the crate.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc_version = first_line(&rustc, &["--version"]);
    println!("cargo:rustc-env=OAUTH2_EXPORTER_RUSTC_VERSION={rustc_version}");
}

/// What `program args` prints, trimmed; "unknown" when it cannot run, fails or prints nothing.
fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// `YYYYMMDD-HH:MM:SS` in UTC, the form Prometheus' exporters print as their build date.
fn build_date(seconds: u64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    // RFC 3339 `YYYY-MM-DDTHH:MM:SSZ`, rearranged.
    let rfc3339 = humantime::format_rfc3339_seconds(time).to_string();
    let (date, clock) = rfc3339.split_once('T').unwrap_or((&rfc3339, "00:00:00Z"));
    format!("{}-{}", date.replace('-', ""), clock.trim_end_matches('Z'))
}
