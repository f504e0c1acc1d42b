//! Unit tests of the metrics: recording, the reason counters' indexing, histograms, and the
//! streamed text and gzip renders.

use super::text::{LATENCY_BUCKET_LABELS, Out, number};
use super::*;

/// Each reason is counted at `reason as usize` and exposed by its position in `ALL`: one
/// failure of a reason must come out under that reason's label and no other. (Issue 24: the
/// test that stood here compared `reason as usize` with the index in `ALL`, which the macro
/// makes equal by construction. The label sets themselves are pinned over the wire in
/// tests/it/scrape_contract.rs.)
#[test]
fn a_failure_is_exposed_under_its_own_reason() {
    fn exposed<const N: usize>(index: usize, labels: &[&'static str]) -> Vec<&'static str> {
        let mut failures = Failures::<N>::default();
        failures.count(index);
        failures
            .counts()
            .iter()
            .zip(labels)
            .filter(|(count, _)| **count == 1)
            .map(|(_, label)| *label)
            .collect()
    }
    let token = TokenReason::ALL.map(TokenReason::as_str);
    for reason in TokenReason::ALL {
        assert_eq!(
            exposed::<{ TokenReason::ALL.len() }>(reason as usize, &token),
            [reason.as_str()]
        );
    }
    let canary = CanaryReason::ALL.map(CanaryReason::as_str);
    for reason in CanaryReason::ALL {
        assert_eq!(
            exposed::<{ CanaryReason::ALL.len() }>(reason as usize, &canary),
            [reason.as_str()]
        );
    }
}

#[test]
fn histogram_buckets_are_cumulative() {
    let mut histogram = Histogram::default();
    for seconds in [0.001, 0.02, 0.02, 3.0, 100.0] {
        histogram.observe(seconds);
    }
    assert_eq!(histogram.cumulative, [1, 1, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4]);
    assert_eq!(histogram.count, 5);
    assert!((histogram.sum - 103.041).abs() < 1e-9);
}

#[test]
fn numbers_are_written_as_the_text_format_expects() {
    let mut sink = Vec::new();
    let mut out = Out::new(&mut sink);
    for value in [
        1.0,
        0.25,
        1_795_399_676.637_442_8,
        f64::INFINITY,
        f64::NAN,
        0.0,
        -0.0,
        -3.0,
        1_795_399_676.0,
        9_007_199_254_740_993.0,
        18_446_744_073_709_551_615.0,
    ] {
        number(&mut out, value);
        out.push(' ');
    }
    out.finish().unwrap();
    assert_eq!(
        String::from_utf8(sink).unwrap(),
        "1 0.25 1795399676.6374428 +Inf NaN 0 -0 -3 1795399676 9007199254740992 18446744073709552000 "
    );
}

#[test]
fn bucket_labels_are_the_bounds_as_numbers_are_written() {
    for (bound, label) in LATENCY_BUCKETS.iter().zip(LATENCY_BUCKET_LABELS) {
        let mut sink = Vec::new();
        let mut out = Out::new(&mut sink);
        number(&mut out, *bound);
        out.finish().unwrap();
        assert_eq!(String::from_utf8(sink).unwrap(), label);
    }
}

/// The provider lines of a page (process metrics change between two renders).
pub(crate) fn provider_lines(text: &[u8]) -> Vec<String> {
    String::from_utf8(text.to_vec())
        .unwrap()
        .lines()
        .filter(|line| line.contains("oauth2_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_gzip_render_streams_the_same_page_in_many_chunks() {
    let metrics = Metrics::new();
    for index in 0..400 {
        metrics.add_provider(format!("tenant{index}"));
    }
    let plain = metrics.render();
    assert!(plain.len() > 10 * Out::CHUNK, "{} bytes", plain.len());
    let compressed = metrics.render_gzip().unwrap();
    assert!(compressed.len() * 8 < plain.len(), "{}", compressed.len());
    let unpacked = gunzip(&compressed).unwrap();
    assert_eq!(provider_lines(&unpacked), provider_lines(&plain));
    assert!(provider_lines(&plain).len() > 400 * 30);
}

/// A sink that takes `room` bytes, then fails every write.
struct Full {
    room: usize,
    writes_after_failure: usize,
}

impl std::io::Write for Full {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            self.writes_after_failure += 1;
            return Err(std::io::Error::other("full"));
        }
        let taken = data.len().min(self.room);
        self.room -= taken;
        Ok(taken)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_sink_ends_the_render_with_its_error() {
    let metrics = Metrics::new();
    for index in 0..400 {
        metrics.add_provider(format!("tenant{index}"));
    }
    // Room for the registry's families and part of the providers' in each format.
    for (format, room) in [(Format::Text, 3 * Out::CHUNK), (Format::Protobuf, 3 * 1024)] {
        let mut sink = Full {
            room,
            writes_after_failure: 0,
        };
        let result = match format {
            Format::Text => metrics.render_to(&mut sink),
            Format::Protobuf => metrics.render_protobuf_to(&mut sink),
        };
        assert_eq!(result.unwrap_err().to_string(), "full", "{format:?}");
        assert_eq!(
            sink.writes_after_failure, 1,
            "{format:?}: kept writing after an error"
        );
    }
}

#[test]
fn removed_providers_record_nothing_and_vanish() {
    let metrics = Metrics::new();
    metrics.add_provider("kept");
    metrics.add_provider("gone");
    metrics.record_panic("gone");
    metrics.remove_provider("gone");
    metrics.record_panic("gone");
    let text = String::from_utf8(metrics.render()).unwrap();
    assert!(text.contains("oauth2_token_requests_total{provider=\"kept\"} 0\n"));
    assert!(!text.contains("provider=\"gone\""), "{text}");
}

/// Counts the allocations made on the calling thread (each test runs on its own), so a test
/// can measure what one piece of code allocates while other tests run. The unit tests' global
/// allocator: the process's (`memory::Allocator`), plus one thread-local add per allocation.
mod counting {
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::Cell;

    use crate::memory::Allocator;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    pub(super) struct Counting;

    fn count() {
        // `try_with`: never a panic inside the allocator, even as the thread ends.
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }

    // The only way to count allocations is to be the allocator; this forwards every call to
    // the process's allocator unchanged.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: forwarded as given; `GlobalAlloc`'s contract is the caller's.
            unsafe { Allocator.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from `Allocator` through `alloc` or `realloc` above.
            unsafe { Allocator.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            // SAFETY: as for `dealloc`.
            unsafe { Allocator.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// The allocations `work` made on this thread.
    pub(super) fn allocations(work: impl FnOnce()) -> u64 {
        let before = ALLOCATIONS.with(Cell::get);
        work();
        ALLOCATIONS.with(Cell::get) - before
    }
}

/// Issue 26: a provider's own labels cost no allocation per series or per scrape: rendering
/// 2 000 providers with labels (with a value that needs escaping) allocates exactly what
/// rendering them without does, in both formats, and a second scrape what the first did.
/// How far the process metrics' reads of /proc may move a render's allocation count.
const PROCESS_METRICS_SLACK: u64 = 64;

#[test]
fn labels_allocate_nothing_per_series_or_per_scrape() {
    let own = super::protobuf::tests::own_labels(
        r#"{ team = "payments", env = "prod", note = "say \"hi\"\n" }"#,
    );
    let fleet = |labelled: bool| {
        let metrics = Metrics::new();
        for index in 0..2000 {
            let name = format!("tenant{index}");
            metrics.add_provider(name.as_str());
            if labelled {
                metrics.set_labels(name.as_str(), &own);
            }
            metrics.record(
                name.as_str(),
                &super::protobuf::tests::report(&[0.2], &[0.1]),
                None,
            );
        }
        metrics
    };
    let (plain, labelled) = (fleet(false), fleet(true));
    for format in [Format::Text, Format::Protobuf] {
        let render = |metrics: &Metrics| {
            counting::allocations(|| {
                let mut sink = std::io::sink();
                let _ = match format {
                    Format::Text => metrics.render_to(&mut sink),
                    Format::Protobuf => metrics.render_protobuf_to(&mut sink),
                };
            })
        };
        // The first render of each warms what is allocated once (the process metrics' reads).
        let _ = (render(&plain), render(&labelled));
        let without = render(&plain);
        let with = render(&labelled);
        // The registry's process metrics read /proc (open descriptors among them), whose
        // allocations vary with the tests running beside this one: a small slack, far below
        // the 2 000 allocations a label value copied per provider, let alone per series,
        // would add (it once failed at equality under `cargo test`'s parallel runs).
        assert!(
            with.abs_diff(without) <= PROCESS_METRICS_SLACK,
            "{format:?}: {with} allocations with labels, {without} without"
        );
        let again = render(&labelled);
        assert!(
            again.abs_diff(with) <= PROCESS_METRICS_SLACK,
            "{format:?}: a second scrape made {again} allocations, the first {with}"
        );
        // Not one per series (2 000 providers have over 50 000): a few hundred for the page in
        // text; in protobuf also one per classic histogram (its bucket scratch, 4 000 here).
        assert!(with < 10_000, "{format:?}: {with} allocations");
    }
}

/// A gauge kept in 8 bytes is absent until set, and zero (a token issued with `expires_in: 0`)
/// is a value, not absence.
#[test]
fn a_reading_tells_absence_from_zero() {
    assert_eq!(Reading::default().get(), None);
    assert_eq!(Reading::from(None).get(), None);
    assert_eq!(Reading::of(0.0).get(), Some(0.0));
    assert_eq!(Reading::from(Some(-1.5)).get(), Some(-1.5));
    assert_eq!(std::mem::size_of::<Reading>(), 8);
}
