//! What both exposition formats are written from, with no format in it: a snapshot of the
//! provider records (taken under a short lock), the registry's own families, the family
//! [`Kind`]s, the [`Families`] trait the text and protobuf writers implement so that the one
//! catalogue ([`write_providers`](super::catalogue::write_providers)) drives both, and the
//! [`Sink`] both hand their output to.

use std::sync::{Arc, PoisonError};

use crate::closed_set::closed_set;
use crate::config::{Labels, SeriesLabel};

use super::latency::Latency;
use super::{Metrics, ProviderSeries};

/// Every provider's record at one moment, by name.
pub(super) type Snapshot = [(Arc<str>, Arc<ProviderSeries>)];

impl Metrics {
    /// Every provider's record as it is now. The lock is held only to take a pointer to each
    /// record (copied on write: a cycle that ends during the render writes a copy, the
    /// snapshot keeps what it took).
    pub(super) fn snapshot(&self) -> Vec<(Arc<str>, Arc<ProviderSeries>)> {
        self.providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, record)| (Arc::clone(name), record.snapshot()))
            .collect()
    }

    /// The registry's families (process metrics, build info, reload and shard state), with
    /// the scrape-time gauges brought up to date.
    pub(super) fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.update_scrape_time_gauges();
        let _outcome = self
            .reload_outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.registry.gather()
    }
}

/// Where a writer hands what it finished: the first error is kept and the rest dropped, so a
/// render runs to its end without checking after each series, and [`Sink::finish`] reports it.
pub(super) struct Sink<'w> {
    out: &'w mut dyn std::io::Write,
    failed: Option<std::io::Error>,
}

impl<'w> Sink<'w> {
    pub(super) fn new(out: &'w mut dyn std::io::Write) -> Self {
        Sink { out, failed: None }
    }

    /// Writes `pieces` in order, unless an earlier write failed.
    pub(super) fn write(&mut self, pieces: &[&[u8]]) {
        for piece in pieces {
            if self.failed.is_some() {
                return;
            }
            if let Err(error) = self.out.write_all(piece) {
                self.failed = Some(error);
            }
        }
    }

    /// The first error, if a write failed.
    pub(super) fn finish(self) -> std::io::Result<()> {
        match self.failed {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

closed_set! {
    /// The type of a metric family, as the text format's `# TYPE` line writes it.
    Kind {
        Counter => "counter",
        Gauge => "gauge",
        Histogram => "histogram",
    }
}

/// Where the provider families are written: the text format (`text::Out`) or the protobuf one
/// (`protobuf::Delimited`). `catalogue::write_providers` is the one list of families, names and HELP
/// texts, so both formats carry the same series.
pub(super) trait Families {
    /// Starts a family.
    fn family(&mut self, name: &str, kind: Kind, help: &str);
    /// One series of the current (counter or gauge) family: its `labels`, sorted by name, with
    /// the provider's `own` labels written among them ([`merged`]).
    fn sample(&mut self, name: &str, labels: &[(SeriesLabel, &str)], own: &Labels, value: f64);
    /// One provider's series of the current histogram family.
    fn histogram(&mut self, name: &str, provider: &str, own: &Labels, latency: &Latency);
    /// Called after each provider's series of a family.
    fn series_done(&mut self);
}

/// A series' labels and its provider's own, in name order, as client libraries write them: both
/// lists are sorted, and they never share a name (validation refuses a provider label that is a
/// [`SeriesLabel`]). Walks the two lists in place: no allocation per series.
pub(super) fn merged<'a>(
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    own: &'a Labels,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    let mut labels = labels.into_iter().peekable();
    let mut own = own.iter().peekable();
    std::iter::from_fn(move || match (labels.peek(), own.peek()) {
        (Some(label), Some(mine)) if mine.0 < label.0 => own.next(),
        (Some(_), _) => labels.next(),
        (None, _) => own.next(),
    })
}

/// The names of `labels` as text, for [`merged`].
pub(super) fn named<'a>(
    labels: &'a [(SeriesLabel, &'a str)],
) -> impl Iterator<Item = (&'a str, &'a str)> {
    labels.iter().map(|(name, value)| (name.as_str(), *value))
}
