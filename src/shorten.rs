//! The one truncator of text people read: server-supplied text in errors, log lines and traces,
//! and failure details on the status page. The rules are written here once: a text is cut at a
//! number of characters (not bytes, so never inside a character), it is marked as cut only when
//! something was cut, and which characters survive and how a cut is marked depend on where the
//! text goes ([`Shown`]). Scrubbing secrets is the caller's step before this one.

/// Where a text goes, which decides the characters kept and the mark of a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Server text people read (the log, `check`, the status page, `/probe`): printable ASCII
    /// and space, anything else `?` (no terminal escapes, no look-alike letters); a cut is
    /// marked `...`, in ASCII too.
    Ascii,
    /// A code from a server's vocabulary (an OAuth `error`): as [`Shown::Ascii`], cut without a
    /// mark (a code is a word, not prose).
    AsciiWord,
    /// An excerpt on one log line: control characters (newlines, tabs, escapes) become spaces;
    /// a cut is marked `…`.
    OneLine,
    /// Lines kept as lines (a pretty-printed body in a trace); a cut is marked on a line of its
    /// own.
    Lines,
    /// Text already made safe where it was made (a failure's detail); a cut is marked `…`.
    AsIs,
}

impl Shown {
    fn char(self, c: char) -> char {
        match self {
            Shown::Ascii | Shown::AsciiWord if c != ' ' && !c.is_ascii_graphic() => '?',
            Shown::OneLine if c.is_control() => ' ',
            _ => c,
        }
    }

    fn mark(self) -> &'static str {
        match self {
            Shown::Ascii => "...",
            Shown::AsciiWord => "",
            Shown::OneLine | Shown::AsIs => "…",
            Shown::Lines => "\n… (truncated)",
        }
    }
}

/// `text` as [`Shown`] says, at most `max_chars` characters of it, with the mark of a cut when
/// it was longer.
pub fn shorten(text: &str, max_chars: usize, shown: Shown) -> String {
    let mut chars = text.chars();
    let mut out: String = chars
        .by_ref()
        .take(max_chars)
        .map(|c| shown.char(c))
        .collect();
    if chars.next().is_some() {
        out.push_str(shown.mark());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_that_fits_is_not_marked_as_cut() {
        for shown in [
            Shown::Ascii,
            Shown::AsciiWord,
            Shown::OneLine,
            Shown::Lines,
            Shown::AsIs,
        ] {
            assert_eq!(shorten("abc", 3, shown), "abc", "{shown:?}");
            assert_eq!(shorten("", 0, shown), "", "{shown:?}");
        }
    }

    #[test]
    fn each_destination_keeps_its_characters_and_marks_its_cuts() {
        let text = "é\x1b[31m\nb\tc";
        assert_eq!(shorten(text, 100, Shown::Ascii), "??[31m?b?c");
        assert_eq!(shorten(text, 3, Shown::Ascii), "??[...");
        assert_eq!(shorten(text, 3, Shown::AsciiWord), "??[");
        assert_eq!(shorten(text, 100, Shown::OneLine), "é [31m b c");
        assert_eq!(shorten("abcdef", 3, Shown::OneLine), "abc…");
        assert_eq!(
            shorten("{\n  \"a\": 1\n}", 5, Shown::Lines),
            "{\n  \"\n… (truncated)"
        );
        assert_eq!(shorten("é\nb", 2, Shown::AsIs), "é\n…");
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert_eq!(shorten("ééé", 2, Shown::AsIs), "éé…");
        assert_eq!(shorten("ééé", 3, Shown::AsIs), "ééé");
    }
}
