//! `[metrics]`: how the exporter's own series are exposed.

use super::values::Problems;
use crate::config::{HistogramMode, MetricsConfig};

pub(super) fn metrics(histograms: Option<&str>, problems: &mut Problems) -> MetricsConfig {
    let histograms = match histograms {
        None => HistogramMode::default(),
        Some(text) => match HistogramMode::ALL.into_iter().find(|m| m.as_str() == text) {
            Some(mode) => mode,
            None => {
                problems.add(
                    "metrics.histograms",
                    format!("unknown value {text:?}; allowed: classic, native, none"),
                );
                HistogramMode::default()
            }
        },
    };
    MetricsConfig { histograms }
}
