//! The benchmark's load target on its own (issue 6): a loopback identity provider and API for N
//! providers, for trying the exporter or another client against it by hand. The benchmark
//! (`examples/bench.rs`) starts the same server itself. Prints its ports as one JSON line.
//!
//! ```sh
//! cargo run --release --example load_target -- --providers 1000 --lanes exporter
//! ```

// Only the standalone entry point is used here; the rest serves the benchmark driver.
#[allow(dead_code)]
#[path = "bench/target.rs"]
mod target;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    target::run_standalone(&args)
}
