//! A provider's request latencies in the form `[metrics] histograms` asks for: a classic
//! histogram; a classic one plus a native one (for the protobuf exposition); or only the last
//! duration. The native histogram is held at one fixed schema in a fixed bucket array, so its
//! state is small, allocation-free after creation, and its bucket index math is one `frexp`.

use crate::config::HistogramMode;

use super::Histogram;

/// Native histogram schema 2: each bucket is 2^(1/4) = 1.19 times wider than the one below, so
/// a quantile read from it is within 9.5 % of the true latency (the classic buckets are up to
/// 2.5 times apart). Schema 3 would halve that error and double the state; identity provider
/// latencies vary from cycle to cycle by far more than 10 %, so the finer schema buys nothing an
/// alert or a panel can use.
pub(super) const SCHEMA: i32 = 2;
/// Buckets per power of two at [`SCHEMA`].
const PER_OCTAVE: i32 = 1 << SCHEMA;
/// Observations at or below 2^-10 s (0.98 ms) count in the zero bucket: only a loopback server
/// answers that fast, and the finer buckets below it would cost state for nothing.
pub(super) const ZERO_THRESHOLD: f64 = 1.0 / 1024.0;
/// The first bucket index held, (2^(-40/4), 2^(-39/4)] s: the one just above the zero bucket.
pub(super) const LOWEST_INDEX: i32 = -10 * PER_OCTAVE + 1;
/// The last bucket index held, (2^(31/4), 2^8] s = (215 s, 256 s]. A request lasts at most its
/// timeout (and a request slot waits at most half of it), so only a timeout above about 170 s
/// can observe more; such observations count in this top bucket (the sum stays exact).
pub(super) const HIGHEST_INDEX: i32 = 8 * PER_OCTAVE;
/// 72 buckets of 4 bytes: 288 bytes a histogram, allocated only in `native` mode.
const BUCKETS: usize = (HIGHEST_INDEX - LOWEST_INDEX + 1) as usize;

/// The lower bounds of the buckets of one octave at [`SCHEMA`] as fractions of `frexp` (the
/// mantissa in [0.5, 1)): 2^(i/4) / 2, as client_golang's `nativeHistogramBounds[2]`.
const OCTAVE_BOUNDS: [f64; PER_OCTAVE as usize] = [
    0.5,
    0.594_603_557_501_360_5,
    0.707_106_781_186_547_5,
    0.840_896_415_253_714_4,
];

/// A native histogram's counts at [`SCHEMA`], beside the classic histogram that text scrapers
/// get (its `count` and `sum` are shared). Counts are `u32`: a provider probed every second
/// takes 136 years to overflow one.
#[derive(Debug, Clone)]
pub(super) struct Native {
    pub(super) classic: Histogram,
    pub(super) zero_count: u32,
    counts: [u32; BUCKETS],
}

impl Native {
    fn observe(&mut self, seconds: f64) {
        self.classic.observe(seconds);
        if seconds <= ZERO_THRESHOLD || seconds.is_nan() {
            self.zero_count = self.zero_count.wrapping_add(1);
            return;
        }
        let index = bucket_index(seconds).clamp(LOWEST_INDEX, HIGHEST_INDEX);
        let slot = &mut self.counts[(index - LOWEST_INDEX) as usize];
        *slot = slot.wrapping_add(1);
    }

    /// Every bucket that holds observations, as (index, count), lowest first.
    pub(super) fn buckets(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        (LOWEST_INDEX..)
            .zip(self.counts)
            .filter(|(_, count)| *count > 0)
            .map(|(index, count)| (index, u64::from(count)))
    }
}

/// The index of the native bucket holding `seconds` (> 0, finite) at [`SCHEMA`]: bucket `i`
/// holds (2^((i-1)/4), 2^(i/4)], upper bound included, as client_golang computes it.
pub(super) fn bucket_index(seconds: f64) -> i32 {
    if !seconds.is_normal() {
        // Infinite (never a duration) or subnormal (far below the zero threshold).
        return if seconds > 1.0 { i32::MAX } else { i32::MIN };
    }
    let (fraction, exponent) = frexp(seconds);
    let within = OCTAVE_BOUNDS.partition_point(|bound| *bound < fraction) as i32;
    (exponent - 1) * PER_OCTAVE + within
}

/// `seconds` = fraction × 2^exponent with fraction in [0.5, 1), for a positive normal number.
fn frexp(seconds: f64) -> (f64, i32) {
    const EXPONENT_MASK: u64 = 0x7ff << 52;
    let bits = seconds.to_bits();
    let exponent = ((bits & EXPONENT_MASK) >> 52) as i32 - 1022;
    let fraction = f64::from_bits((bits & !EXPONENT_MASK) | (1022 << 52));
    (fraction, exponent)
}

/// One latency series of a provider.
#[derive(Debug, Clone)]
pub(super) enum Latency {
    Classic(Histogram),
    /// Boxed: `classic` and `none` records do not pay for the native buckets.
    Native(Box<Native>),
    /// The last duration, `None` until a request was made.
    Last(Option<f64>),
}

impl Default for Latency {
    fn default() -> Self {
        Latency::Classic(Histogram::default())
    }
}

impl Latency {
    pub(super) fn new(mode: HistogramMode) -> Latency {
        match mode {
            HistogramMode::Classic => Latency::Classic(Histogram::default()),
            HistogramMode::Native => Latency::Native(Box::new(Native {
                classic: Histogram::default(),
                zero_count: 0,
                counts: [0; BUCKETS],
            })),
            HistogramMode::None => Latency::Last(None),
        }
    }

    pub(super) fn mode(&self) -> HistogramMode {
        match self {
            Latency::Classic(_) => HistogramMode::Classic,
            Latency::Native(_) => HistogramMode::Native,
            Latency::Last(_) => HistogramMode::None,
        }
    }

    pub(super) fn observe(&mut self, seconds: f64) {
        match self {
            Latency::Classic(histogram) => histogram.observe(seconds),
            Latency::Native(native) => native.observe(seconds),
            Latency::Last(last) => *last = Some(seconds),
        }
    }

    /// The classic histogram (text scrapes), in `classic` and `native` modes.
    pub(super) fn classic(&self) -> Option<&Histogram> {
        match self {
            Latency::Classic(histogram) => Some(histogram),
            Latency::Native(native) => Some(&native.classic),
            Latency::Last(_) => None,
        }
    }

    /// The native histogram (protobuf scrapes), in `native` mode.
    pub(super) fn native(&self) -> Option<&Native> {
        match self {
            Latency::Native(native) => Some(native),
            _ => None,
        }
    }

    /// The last duration, in `none` mode.
    pub(super) fn last(&self) -> Option<f64> {
        match self {
            Latency::Last(last) => *last,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The upper bound of bucket `index`, 2^(index/4), computed the slow way.
    fn upper_bound(index: i32) -> f64 {
        2f64.powf(f64::from(index) / f64::from(PER_OCTAVE))
    }

    #[test]
    fn bucket_index_matches_the_bucket_bounds() {
        // Exact powers of two sit at the top of their bucket (upper bounds are inclusive).
        assert_eq!(bucket_index(1.0), 0);
        assert_eq!(bucket_index(0.5), -4);
        assert_eq!(bucket_index(2.0), 4);
        assert_eq!(bucket_index(1.0 / 1024.0), -40);
        for seconds in [
            0.001, 0.0042, 0.013, 0.05, 0.099, 0.1, 0.3, 0.708, 0.75, 1.0001, 1.19, 1.2, 3.0, 9.99,
            10.0, 30.0, 200.0,
        ] {
            let index = bucket_index(seconds);
            assert!(
                upper_bound(index - 1) < seconds && seconds <= upper_bound(index) * (1.0 + 1e-12),
                "{seconds} s in bucket {index}: ({}, {}]",
                upper_bound(index - 1),
                upper_bound(index)
            );
        }
    }

    #[test]
    fn native_counts_land_in_their_buckets_and_the_zero_bucket() {
        let mut latency = Latency::new(HistogramMode::Native);
        for seconds in [0.0001, 0.3, 0.31, 0.32, 1.0, 1000.0] {
            latency.observe(seconds);
        }
        let native = latency
            .native()
            .expect("native mode holds a native histogram");
        assert_eq!(native.zero_count, 1);
        let buckets: Vec<(i32, u64)> = native.buckets().collect();
        // 0.3, 0.31 and 0.32 share (2^(-7/4), 2^(-6/4)] = (0.297, 0.354]; 1000 s is clamped.
        assert_eq!(buckets, [(-6, 3), (0, 1), (HIGHEST_INDEX, 1)]);
        let classic = latency
            .classic()
            .expect("native mode keeps the classic buckets");
        assert_eq!(classic.count, 6);
        assert!((classic.sum - 1001.9301).abs() < 1e-9);
        assert_eq!(latency.last(), None);
    }

    #[test]
    fn none_mode_keeps_only_the_last_duration() {
        let mut latency = Latency::new(HistogramMode::None);
        assert_eq!(latency.last(), None);
        latency.observe(0.25);
        latency.observe(0.125);
        assert_eq!(latency.last(), Some(0.125));
        assert!(latency.classic().is_none() && latency.native().is_none());
    }

    /// The per-provider cost of each mode: the record holds the enum inline, the native buckets
    /// behind a pointer.
    #[test]
    fn latency_state_stays_small() {
        assert!(std::mem::size_of::<Latency>() <= 128);
        // The classic histogram, the zero bucket, the buckets, and padding to 8 bytes.
        assert!(std::mem::size_of::<Native>() <= 112 + 4 * (BUCKETS + 2));
    }
}
