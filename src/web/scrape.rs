//! Serving `/metrics` under load: the text is rendered on the blocking pool (never on the async
//! workers that run the probes), one render at a time, and scrapes that queued while a render
//! ran share it. A scrape never gets text rendered before it arrived, so once no scrape is
//! waiting the render can serve no one and is dropped. Scrapers that accept gzip (Prometheus
//! does) get a render streamed straight into the encoder: at 10 000 providers the plain text is
//! 30 MiB, the compressed page 2 MiB.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;

use crate::metrics::{self, Format, Metrics};

/// One render, in the forms asked for so far (at least one of them).
struct Rendered {
    /// When the render finished: it serves every scrape that arrived before then.
    done: Instant,
    /// Text, or protobuf for Prometheus with native histograms.
    format: Format,
    plain: Option<Bytes>,
    gzip: Option<Bytes>,
}

impl Rendered {
    /// A new render in the form asked for: compressed if `gzip` (falling back to plain text
    /// if compression fails).
    async fn new(metrics: &Arc<Metrics>, format: Format, gzip: bool) -> Rendered {
        let metrics = Arc::clone(metrics);
        let rendered = tokio::task::spawn_blocking(move || {
            if gzip {
                match metrics.render_gzip_as(format) {
                    Ok(compressed) => return (None, Some(compressed)),
                    Err(error) => tracing::warn!(%error, "gzip failed; answering uncompressed"),
                }
            }
            (Some(metrics.render_as(format)), None)
        })
        .await;
        let (plain, gzip) = rendered.unwrap_or_else(|error| {
            tracing::error!(%error, "rendering metrics failed");
            (Some(Vec::new()), None)
        });
        Rendered {
            done: Instant::now(),
            format,
            plain: plain.map(Bytes::from),
            gzip: gzip.map(Bytes::from),
        }
    }

    /// Derives the form this scrape wants from the one held, if it is missing.
    async fn convert(&mut self, want_gzip: bool) {
        match (&self.plain, &self.gzip, want_gzip) {
            (Some(plain), None, true) => {
                let plain = plain.clone();
                match tokio::task::spawn_blocking(move || metrics::gzip(&plain)).await {
                    Ok(Ok(compressed)) => self.gzip = Some(Bytes::from(compressed)),
                    Ok(Err(error)) => tracing::warn!(%error, "gzip failed; answering uncompressed"),
                    Err(error) => tracing::warn!(%error, "gzip failed; answering uncompressed"),
                }
            }
            (None, Some(compressed), false) => {
                let compressed = compressed.clone();
                match tokio::task::spawn_blocking(move || metrics::gunzip(&compressed)).await {
                    Ok(Ok(plain)) => self.plain = Some(Bytes::from(plain)),
                    // Cannot happen to our own output; answer with nothing rather than
                    // with a body the client did not accept.
                    Ok(Err(error)) => tracing::error!(%error, "decompressing metrics failed"),
                    Err(error) => tracing::error!(%error, "decompressing metrics failed"),
                }
            }
            _ => {}
        }
    }

    /// The body for a scrape, and whether it is gzip-compressed.
    fn answer(&self, want_gzip: bool) -> (Bytes, bool) {
        match (&self.plain, &self.gzip) {
            (_, Some(compressed)) if want_gzip => (compressed.clone(), true),
            (Some(plain), _) => (plain.clone(), false),
            _ => (Bytes::new(), false),
        }
    }
}

#[derive(Default)]
pub struct ScrapeCache {
    last: tokio::sync::Mutex<Option<Rendered>>,
    /// Scrapes between arrival and answer.
    waiting: AtomicUsize,
}

impl ScrapeCache {
    /// The exposition in `format`, gzip-compressed when asked and possible; the flag says
    /// whether it is.
    pub async fn body(
        &self,
        metrics: &Arc<Metrics>,
        format: Format,
        want_gzip: bool,
    ) -> (Bytes, bool) {
        let _waiting = Waiting::new(self);
        self.shared_body(metrics, format, want_gzip).await
    }

    async fn shared_body(
        &self,
        metrics: &Arc<Metrics>,
        format: Format,
        want_gzip: bool,
    ) -> (Bytes, bool) {
        let arrived = Instant::now();
        let mut last = self.last.lock().await;
        let mut rendered = match last.take() {
            // Scrapers that queued together share a render if they asked for the same format
            // (a pair of Prometheus servers does; a person's curl beside them does not).
            Some(rendered) if rendered.done >= arrived && rendered.format == format => rendered,
            _ => Rendered::new(metrics, format, want_gzip).await,
        };
        rendered.convert(want_gzip).await;
        last.insert(rendered).answer(want_gzip)
    }
}

/// Counts a scrape as waiting until it is answered or abandoned (the client hung up); the last
/// one to leave drops the render.
struct Waiting<'a>(&'a ScrapeCache);

impl<'a> Waiting<'a> {
    fn new(cache: &'a ScrapeCache) -> Self {
        cache.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(cache)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::SeqCst) == 1
            && let Ok(mut last) = self.0.last.try_lock()
        {
            // The last one out: a later scrape needs a newer render anyway.
            *last = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::provider_lines as text_of;

    /// A render made for a gzip scrape also serves a plain one that queued behind it, and the
    /// other way round: both see the same page.
    #[tokio::test]
    async fn one_render_serves_both_forms() {
        let metrics = Arc::new(Metrics::new());
        metrics.add_provider("tenant");
        for first_gzip in [true, false] {
            let mut rendered = Rendered::new(&metrics, Format::Text, first_gzip).await;
            let first = rendered.answer(first_gzip);
            assert_eq!(first.1, first_gzip);
            metrics.remove_provider("tenant"); // later renders would differ
            rendered.convert(!first_gzip).await;
            let second = rendered.answer(!first_gzip);
            assert_eq!(second.1, !first_gzip);
            let (plain, compressed) = if first_gzip {
                (second.0, first.0)
            } else {
                (first.0, second.0)
            };
            let unpacked = Bytes::from(metrics::gunzip(&compressed).unwrap());
            assert_eq!(text_of(&unpacked), text_of(&plain));
            assert!(
                text_of(&plain)
                    .iter()
                    .any(|line| line.contains("provider=\"tenant\"")),
                "{plain:?}"
            );
            metrics.add_provider("tenant");
        }
    }
}
