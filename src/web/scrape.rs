//! Serving `/metrics` under load: the text is rendered on the blocking pool (never on the async
//! workers that run the probes), streamed straight into the gzip encoder, one render at a time,
//! and scrapes that queued while a render ran share it. A scrape never gets text rendered before
//! it arrived, so once no scrape is waiting the render can serve no one and is dropped.
//! Scrapers that accept gzip (Prometheus does) get the compressed page; a plain-text scrape gets
//! it decompressed as it is sent, in 64 KiB chunks: at 10 000 providers the plain text is 30 MiB,
//! the compressed page 2 MiB, and the text is never held whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::server::{Body, Chunk};
use crate::metrics::{self, Format, Metrics};

/// Chunks a plain-text answer may run ahead of the client.
const CHUNKS_AHEAD: usize = 4;

/// A client that takes no chunk for this long is given up on, so a stalled reader does not keep
/// a blocking thread.
const CHUNK_WAIT: Duration = Duration::from_secs(30);

/// One gzip render (or, if compression failed, uncompressed) in one format.
struct Rendered {
    /// When the render finished: it serves every scrape that arrived before then.
    done: Instant,
    /// Text, or protobuf for Prometheus with native histograms.
    format: Format,
    body: Bytes,
    gzipped: bool,
}

impl Rendered {
    /// A new compressed render (uncompressed if compression fails).
    async fn new(metrics: &Arc<Metrics>, format: Format) -> Rendered {
        let metrics = Arc::clone(metrics);
        let rendered = tokio::task::spawn_blocking(move || {
            let rendered = match metrics.render_gzip_as(format) {
                Ok(compressed) => (compressed, true),
                Err(error) => {
                    tracing::warn!(%error, "gzip failed; answering uncompressed");
                    (metrics.render_as(format), false)
                }
            };
            // What the render and the cycles since the last scrape freed is handed back while
            // nothing waits on it: otherwise the freed blocks between live ones keep their pages
            // (0.5 MiB at 10 000 providers, BENCHMARKS.md round eight). Once a scrape, never per
            // cycle: the walk holds the allocator's lock while it runs.
            crate::memory::release_freed_memory();
            rendered
        })
        .await;
        let (body, gzipped) = rendered.unwrap_or_else(|error| {
            tracing::error!(%error, "rendering metrics failed");
            (Vec::new(), false)
        });
        Rendered {
            done: Instant::now(),
            format,
            body: Bytes::from(body),
            gzipped,
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
    ) -> (Body, bool) {
        let (page, gzipped) = {
            let _waiting = Waiting::new(self);
            self.shared_body(metrics, format).await
        };
        if want_gzip || !gzipped {
            return (Body::Full(page.into()), gzipped);
        }
        (stream_decompressed(page), false)
    }

    async fn shared_body(&self, metrics: &Arc<Metrics>, format: Format) -> (Bytes, bool) {
        let arrived = Instant::now();
        let mut last = self.last.lock().await;
        let rendered = match last.take() {
            // Scrapers that queued together share a render if they asked for the same format
            // (a pair of Prometheus servers does; a person's curl beside them does not).
            Some(rendered) if rendered.done >= arrived && rendered.format == format => rendered,
            _ => Rendered::new(metrics, format).await,
        };
        let answer = (rendered.body.clone(), rendered.gzipped);
        *last = Some(rendered);
        answer
    }
}

/// The text of a compressed page, decompressed on the blocking pool as the client takes it.
fn stream_decompressed(page: Bytes) -> Body {
    let (chunks, body) = mpsc::channel(CHUNKS_AHEAD);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut sink = ChunkSink { chunks, runtime };
        // An error here is the client gone or stalled: there is no one left to tell. A stream
        // that stops without its end marker makes the response fail, not look complete.
        if metrics::gunzip_to(&page, &mut sink).is_ok() {
            let _ = sink.send(Chunk::End);
        }
    });
    Body::Streamed(body)
}

/// Hands a render's chunks to the response body, waiting for the client (at most
/// [`CHUNK_WAIT`] per chunk) rather than running ahead of it.
struct ChunkSink {
    chunks: mpsc::Sender<Chunk>,
    runtime: tokio::runtime::Handle,
}

impl ChunkSink {
    fn send(&self, chunk: Chunk) -> std::io::Result<()> {
        let sent = self
            .runtime
            .block_on(tokio::time::timeout(CHUNK_WAIT, self.chunks.send(chunk)));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_closed)) => Err(std::io::ErrorKind::BrokenPipe.into()),
            Err(_elapsed) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
}

impl std::io::Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.send(Chunk::Data(Bytes::copy_from_slice(data)))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
    use http_body_util::BodyExt;

    async fn collect(body: Body) -> Result<Vec<u8>, std::io::Error> {
        Ok(body.collect().await?.to_bytes().to_vec())
    }

    /// Issue 15: a plain-text scrape is streamed in chunks as it is decompressed (the text is
    /// never held whole), and is the same page as the gzip one.
    #[tokio::test]
    async fn a_plain_scrape_streams_the_page_the_gzip_scrape_serves() {
        let metrics = Arc::new(Metrics::new());
        for index in 0..400 {
            metrics.add_provider(format!("tenant{index}"));
        }
        let cache = ScrapeCache::default();
        let (body, gzipped) = cache.body(&metrics, Format::Text, false).await;
        assert!(!gzipped);
        let Body::Streamed(mut chunks) = body else {
            panic!("a plain scrape was not streamed");
        };
        let mut plain = Vec::new();
        let mut pieces = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), chunks.recv()).await {
                Ok(Some(Chunk::Data(data))) => {
                    assert!(data.len() <= 80 * 1024, "a chunk of {} bytes", data.len());
                    plain.extend_from_slice(&data);
                    pieces += 1;
                }
                Ok(Some(Chunk::End)) => break,
                other => panic!(
                    "the stream ended without its end marker: {:?}",
                    other.is_ok()
                ),
            }
        }
        assert!(pieces > 10, "{pieces} chunks");
        let (compressed, gzipped) = cache.body(&metrics, Format::Text, true).await;
        assert!(gzipped);
        let unpacked = crate::metrics::gunzip(&collect(compressed).await.unwrap()).unwrap();
        assert_eq!(text_of(&unpacked), text_of(&plain));
        assert!(
            text_of(&plain)
                .iter()
                .any(|l| l.contains("provider=\"tenant399\""))
        );
    }

    /// A stream whose producer stopped without the end marker fails the body, so the client
    /// sees an error instead of a page that looks complete.
    #[tokio::test]
    async fn a_stream_cut_short_is_an_error_not_a_short_page() {
        let (chunks, receiver) = mpsc::channel(2);
        chunks
            .send(Chunk::Data(Bytes::from_static(b"a 1\n")))
            .await
            .unwrap();
        drop(chunks);
        assert!(collect(Body::Streamed(receiver)).await.is_err());
        let (chunks, receiver) = mpsc::channel(2);
        chunks
            .send(Chunk::Data(Bytes::from_static(b"a 1\n")))
            .await
            .unwrap();
        chunks.send(Chunk::End).await.unwrap();
        assert_eq!(collect(Body::Streamed(receiver)).await.unwrap(), b"a 1\n");
    }
}
