//! Serving `/metrics` under load: the text is rendered on the blocking pool (never on the async
//! workers that run the probes), one render at a time, and scrapes that queued while a render
//! ran share it. A scrape never gets text rendered before it arrived, so once no scrape is
//! waiting the render can serve no one and is dropped (at 10 000 providers it is 30 MiB).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;

use crate::metrics::Metrics;

struct Rendered {
    /// When the render finished: it serves every scrape that arrived before then.
    done: Instant,
    plain: Bytes,
    /// Compressed on first demand.
    gzip: Option<Bytes>,
}

#[derive(Default)]
pub struct ScrapeCache {
    last: tokio::sync::Mutex<Option<Rendered>>,
    /// Scrapes between arrival and answer.
    waiting: AtomicUsize,
}

impl ScrapeCache {
    /// The exposition text, gzip-compressed when asked and possible; the flag says whether it is.
    pub async fn body(&self, metrics: &Arc<Metrics>, want_gzip: bool) -> (Bytes, bool) {
        let _waiting = Waiting::new(self);
        self.shared_body(metrics, want_gzip).await
    }

    async fn shared_body(&self, metrics: &Arc<Metrics>, want_gzip: bool) -> (Bytes, bool) {
        let arrived = Instant::now();
        let mut last = self.last.lock().await;
        let rendered = match last.take() {
            Some(rendered) if rendered.done >= arrived => rendered,
            _ => {
                let metrics = Arc::clone(metrics);
                let plain = match tokio::task::spawn_blocking(move || metrics.render()).await {
                    Ok(plain) => plain,
                    Err(error) => {
                        tracing::error!(%error, "rendering metrics failed");
                        Vec::new()
                    }
                };
                Rendered {
                    done: Instant::now(),
                    plain: Bytes::from(plain),
                    gzip: None,
                }
            }
        };
        let rendered = last.insert(rendered);
        if !want_gzip {
            return (rendered.plain.clone(), false);
        }
        if rendered.gzip.is_none() {
            let plain = rendered.plain.clone();
            match tokio::task::spawn_blocking(move || crate::metrics::gzip(&plain)).await {
                Ok(Ok(compressed)) => rendered.gzip = Some(Bytes::from(compressed)),
                Ok(Err(error)) => tracing::warn!(%error, "gzip failed; answering uncompressed"),
                Err(error) => tracing::warn!(%error, "gzip failed; answering uncompressed"),
            }
        }
        match &rendered.gzip {
            Some(compressed) => (compressed.clone(), true),
            None => (rendered.plain.clone(), false),
        }
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
