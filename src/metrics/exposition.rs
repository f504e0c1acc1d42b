//! `/metrics` rendered: the entry points that pick a format ([`text`](super::text) or
//! [`protobuf`](super::protobuf)) and gzip-compress it, and the one decompression of a shared
//! gzip render.

use super::text::Out;
use super::{Format, Metrics};

impl Metrics {
    /// The text exposition of every metric.
    #[cfg(test)]
    pub fn render(&self) -> Vec<u8> {
        self.render_as(Format::Text)
    }

    /// The exposition of every metric in `format`.
    pub fn render_as(&self, format: Format) -> Vec<u8> {
        let mut page = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.render_format_to(format, &mut page);
        page
    }

    /// The text exposition gzip-compressed.
    #[cfg(test)]
    pub fn render_gzip(&self) -> std::io::Result<Vec<u8>> {
        self.render_gzip_as(Format::Text)
    }

    /// The exposition in `format`, gzip-compressed. The page streams through the encoder in
    /// chunks, so only the compressed page is ever held whole: 2 MiB rather than 30 MiB of text
    /// at 10 000 providers, and the allocator is not left holding a 30 MiB buffer's worth of
    /// pages between scrapes.
    pub fn render_gzip_as(&self, format: Format) -> std::io::Result<Vec<u8>> {
        let mut encoder = gzip_encoder(Vec::new());
        self.render_format_to(format, &mut encoder)?;
        encoder.finish()
    }

    fn render_format_to(
        &self,
        format: Format,
        sink: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        match format {
            Format::Text => self.render_to(sink),
            Format::Protobuf => self.render_protobuf_to(sink),
        }
    }
}

/// The one compression setting for `/metrics`: the fast level, as scrapes are frequent and the
/// text compresses about 15-fold even so.
fn gzip_encoder(into: Vec<u8>) -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::write::GzEncoder::new(into, flate2::Compression::fast())
}

/// Decompresses a gzip render into `sink` as it goes (a plain-text scrape served from the
/// shared gzip render, streamed: the 30 MiB text is never held whole).
pub fn gunzip_to(compressed: &[u8], sink: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut chunked = std::io::BufWriter::with_capacity(Out::CHUNK, sink);
    std::io::copy(&mut flate2::read::GzDecoder::new(compressed), &mut chunked)?;
    std::io::Write::flush(&mut chunked)
}

/// Decompresses a gzip render (tests compare it with the plain text).
#[cfg(test)]
pub fn gunzip(compressed: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut plain = Vec::with_capacity(compressed.len() * 16);
    gunzip_to(compressed, &mut plain)?;
    Ok(plain)
}
