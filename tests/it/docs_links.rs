//! Every relative link and anchor in README.md and docs/*.md resolves, and so does every alert's
//! `runbook_url` in prometheus/alerts.yml (issue 10: the reference moved from the README to docs/,
//! and an alert that points at a heading nobody can find is worse than one without a link).
//!
//! Anchors follow GitHub's rules (github-slugger): the heading's text, lower-cased, with every
//! character other than a letter, a digit, `-`, `_` or a space dropped and spaces turned into
//! `-`; a repeated heading gets `-1`, `-2`, ...; `<a id="...">` and `<a name="...">` count too.
//! Fenced code blocks and inline code are not Markdown, so neither their `# ` lines nor their
//! `[x](y)` count. Links with a scheme (`https://`, `mailto:`) are not checked: the tests stay on
//! loopback.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documentation the links of which are checked: README.md and every docs/*.md.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    docs
}

/// The lines of a Markdown text with fenced code blocks blanked (so line numbers stay right).
fn prose_lines(text: &str) -> Vec<String> {
    let mut fence: Option<(char, usize)> = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| trimmed.chars().take_while(|c| *c == m).count());
        match (fence, marker) {
            (None, Some(m)) if run >= 3 => {
                fence = Some((m, run));
                lines.push(String::new());
            }
            (Some((m, open)), Some(c))
                if c == m && run >= open && trimmed[run..].trim().is_empty() =>
            {
                fence = None;
                lines.push(String::new());
            }
            (Some(_), _) => lines.push(String::new()),
            (None, _) => lines.push(line.to_owned()),
        }
    }
    lines
}

/// `text` with every inline code span replaced by `code`: a span opens with a run of backticks
/// and closes with a run of the same length; an unmatched run is literal text.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|c| **c == '`').count();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let open = run_at(i);
        let mut j = i + open;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let run = run_at(j);
                if run == open {
                    close = Some(j + run);
                    break;
                }
                j += run;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.push_str("code");
                i = end;
            }
            None => {
                out.extend(&chars[i..i + open]);
                i += open;
            }
        }
    }
    out
}

/// A heading's text as GitHub renders it: links and images by their text, no code backticks,
/// no emphasis stars, no HTML tags.
fn heading_text(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if c == '!' && rest[1..].starts_with('[') {
            rest = &rest[1..];
            continue;
        }
        if c == '[' {
            if let Some(close) = rest.find("](") {
                if let Some(end) = rest[close..].find(')') {
                    out.push_str(&rest[1..close]);
                    rest = &rest[close + end + 1..];
                    continue;
                }
            }
        }
        if c == '<' {
            if let Some(end) = rest.find('>') {
                rest = &rest[end + 1..];
                continue;
            }
        }
        if c != '`' && c != '*' {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out.trim().to_owned()
}

/// GitHub's slug of a heading's text (github-slugger, without the duplicate suffix).
fn slug(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a Markdown text defines: heading slugs (with GitHub's `-1`, `-2` for repeats)
/// and explicit `<a id=...>` / `<a name=...>`.
fn anchors(text: &str) -> Vec<String> {
    let lines = prose_lines(text);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut found = Vec::new();
    let mut add_heading = |raw: &str, found: &mut Vec<String>| {
        let base = slug(&heading_text(raw));
        let mut candidate = base.clone();
        while seen.contains_key(&candidate) {
            let count = seen.get_mut(&base).expect("the base slug was seen first");
            *count += 1;
            candidate = format!("{base}-{count}");
        }
        seen.insert(candidate.clone(), 0);
        found.push(candidate);
    };
    for (n, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let trimmed = line.trim();
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if indent <= 3
            && (1..=6).contains(&hashes)
            && (trimmed.len() == hashes || trimmed[hashes..].starts_with([' ', '\t']))
        {
            // A closing run of `#` after a space is not part of the heading.
            let body = trimmed[hashes..].trim();
            let body = match body.trim_end_matches('#') {
                stripped if stripped.is_empty() || stripped.ends_with(' ') => stripped,
                _ => body,
            };
            add_heading(body, &mut found);
        } else if n > 0
            && indent <= 3
            && !trimmed.is_empty()
            && (trimmed.chars().all(|c| c == '=') || trimmed.chars().all(|c| c == '-'))
        {
            // A setext underline makes the paragraph line above it a heading.
            let above = lines[n - 1].trim();
            let plain = !above.is_empty()
                && !above.starts_with(['#', '|', '-', '*', '+', '>'])
                && !above.starts_with(|c: char| c.is_ascii_digit());
            if plain {
                add_heading(above, &mut found);
            }
        }
        for attr in ["id=", "name="] {
            let mut rest = line.as_str();
            while let Some(tag) = rest.find("<a ") {
                let after = &rest[tag..];
                let end = after.find('>').unwrap_or(after.len());
                let inside = &after[..end];
                if let Some(pos) = inside.find(attr) {
                    let value = &inside[pos + attr.len()..];
                    let quote = value.chars().next().filter(|q| *q == '"' || *q == '\'');
                    if let Some(q) = quote {
                        if let Some(close) = value[1..].find(q) {
                            found.push(value[1..1 + close].to_owned());
                        }
                    }
                }
                rest = &after[end..];
            }
        }
    }
    found
}

/// Every link destination in a Markdown text with its line number: inline links and images
/// `[text](dest)`, reference definitions `[id]: dest`, and `href=`/`src=` attributes.
fn links(text: &str) -> Vec<(usize, String)> {
    let lines = prose_lines(text);
    let mut found = Vec::new();
    // Code spans may wrap across lines, so they are removed a paragraph at a time.
    let mut start = 0;
    while start < lines.len() {
        if lines[start].trim().is_empty() {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < lines.len() && !lines[end].trim().is_empty() {
            end += 1;
        }
        let paragraph = without_code_spans(&lines[start..end].join("\n"));
        let line_of = |byte: usize| start + 1 + paragraph[..byte].matches('\n').count();
        for (at, _) in paragraph.match_indices("](") {
            let dest = &paragraph[at + 2..];
            let dest = dest.trim_start();
            let target = if let Some(inner) = dest.strip_prefix('<') {
                inner.split('>').next().unwrap_or("").to_owned()
            } else {
                let mut depth = 0usize;
                dest.chars()
                    .take_while(|c| match c {
                        '(' => {
                            depth += 1;
                            true
                        }
                        ')' if depth == 0 => false,
                        ')' => {
                            depth -= 1;
                            true
                        }
                        c => !c.is_whitespace(),
                    })
                    .collect()
            };
            found.push((line_of(at), target));
        }
        for (offset, line) in paragraph.split('\n').enumerate() {
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix('[') {
                if let Some(close) = rest.find("]:") {
                    if !rest[..close].contains(']') {
                        let dest = rest[close + 2..].split_whitespace().next().unwrap_or("");
                        found.push((start + 1 + offset, dest.to_owned()));
                    }
                }
            }
            for attr in ["href=\"", "src=\""] {
                for (at, _) in line.match_indices(attr) {
                    let value = &line[at + attr.len()..];
                    let dest = value.split('"').next().unwrap_or("");
                    found.push((start + 1 + offset, dest.to_owned()));
                }
            }
        }
        start = end;
    }
    found
}

/// Lexically resolves `link` (a path without its `#fragment`) against `dir`; `None` when it would
/// leave the repository.
fn resolve(root: &Path, dir: &Path, link: &str) -> Option<PathBuf> {
    let mut path = PathBuf::new();
    for component in dir.join(link).components() {
        match component {
            Component::ParentDir => {
                if !path.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => path.push(other),
        }
    }
    path.starts_with(root).then_some(path)
}

/// Why `target`, written in the file at `from`, does not resolve; `None` when it does.
fn check_target(
    root: &Path,
    from: &Path,
    target: &str,
    cache: &mut BTreeMap<PathBuf, Vec<String>>,
) -> Option<String> {
    if target.is_empty() {
        return Some("empty link".to_owned());
    }
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, fragment) = match target.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        from.to_path_buf()
    } else if path.starts_with('/') {
        return Some("absolute path: write it relative to this file".to_owned());
    } else {
        let dir = from.parent().expect("a document has a directory");
        match resolve(root, dir, path) {
            Some(file) => file,
            None => return Some("leaves the repository".to_owned()),
        }
    };
    if !file.exists() {
        let shown = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        return Some(format!("{shown} does not exist"));
    }
    let fragment = fragment?;
    if file.extension().is_none_or(|ext| ext != "md") {
        return Some("an anchor into a file that is not Markdown cannot be checked".to_owned());
    }
    let known = cache.entry(file.clone()).or_insert_with(|| {
        anchors(&std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}")))
    });
    if known.iter().any(|a| a == fragment) {
        None
    } else {
        Some(format!(
            "no heading or <a id> in {} makes the anchor #{fragment}",
            file.strip_prefix(root).unwrap_or(&file).display()
        ))
    }
}

/// Every broken link in `docs`, as `file:line (link): why`.
fn broken_links(root: &Path, docs: &[PathBuf]) -> Vec<String> {
    let mut cache = BTreeMap::new();
    let mut problems = Vec::new();
    for doc in docs {
        let text = std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("{doc:?}: {e}"));
        for (line, target) in links(&text) {
            if let Some(why) = check_target(root, doc, &target, &mut cache) {
                let name = doc.strip_prefix(root).unwrap_or(doc).display().to_string();
                problems.push(format!("{name}:{line} ({target}): {why}"));
            }
        }
    }
    problems
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let root = repo();
    let docs = documents(&root);
    // The reference the README links to (issue 10); a missing one would also leave links broken.
    for name in [
        "configuration.md",
        "metrics.md",
        "operations.md",
        "deployment.md",
        "security.md",
        "runbooks.md",
        "development.md",
    ] {
        assert!(
            docs.contains(&root.join("docs").join(name)),
            "docs/{name} is missing"
        );
    }
    let checked: usize = docs
        .iter()
        .map(|d| links(&std::fs::read_to_string(d).expect("document")).len())
        .sum();
    assert!(
        checked > 50,
        "only {checked} links found: is the parser blind?"
    );
    let problems = broken_links(&root, &docs);
    assert!(
        problems.is_empty(),
        "{} broken link(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_alert_runbook_url_names_an_existing_section() {
    let root = repo();
    let rules = std::fs::read_to_string(root.join("prometheus/alerts.yml")).expect("alerts.yml");
    let alerts = rules
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    let urls: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("runbook_url:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .collect();
    assert_eq!(urls.len(), alerts, "one runbook_url per alert: {urls:?}");
    // The URLs are relative to the repository root (docs/runbooks.md says how to make them
    // absolute), so they resolve from a file that sits there.
    let from = root.join("a-file-at-the-root");
    let mut cache = BTreeMap::new();
    for url in &urls {
        assert!(url.contains('#'), "{url}: no anchor");
        if let Some(why) = check_target(&root, &from, url, &mut cache) {
            panic!("runbook_url {url}: {why}");
        }
    }
}

#[test]
fn slugs_follow_github() {
    let cases = [
        ("OAuth2CredentialsRejected", "oauth2credentialsrejected"),
        (
            "On-demand probes: `/probe?provider=NAME`",
            "on-demand-probes-probeprovidername",
        ),
        (
            "Checking credentials once: `oauth2-exporter check`",
            "checking-credentials-once-oauth2-exporter-check",
        ),
        ("Protecting /metrics", "protecting-metrics"),
        ("EqHub (Collabor8)", "eqhub-collabor8"),
        (
            "[Linked](x.md) and *stressed* `snake_case`",
            "linked-and-stressed-snake_case",
        ),
    ];
    for (heading, expected) in cases {
        assert_eq!(
            slug(&heading_text(heading)),
            expected,
            "heading {heading:?}"
        );
    }
}

/// The checker itself: a broken file, a broken anchor and an anchor that only a code block
/// "defines" are reported; repeats, explicit anchors and setext headings resolve.
#[test]
fn the_checker_reports_broken_links_and_accepts_good_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().canonicalize().expect("temp dir path");
    std::fs::create_dir(root.join("docs")).expect("docs dir");
    std::fs::write(
        root.join("docs/target.md"),
        "# Title\n\n## Usage\n\n## Usage\n\n<a id=\"custom\"></a>\n\nSetext\n------\n\n\
         ```console\n# Not a heading\n```\n",
    )
    .expect("target.md");
    let good = "[a](target.md) [b](target.md#usage) [c](target.md#usage-1) \
                [d](target.md#custom) [e](target.md#setext) [f](#own) [g](../README.md) \
                [h](https://example.invalid/nowhere) `[i](in-code.md)`\n\n\
                ```\n[j](in-a-block.md)\n```\n\n## Own\n";
    let bad = "[missing](nope.md)\n[anchor](target.md#usage-2)\n[code](target.md#not-a-heading)\n\
               [escape](../../outside.md)\n[own](#nowhere)\n[![img](pic.png)](target.md)\n\
               [wrapped\ntext](gone.md)\n";
    std::fs::write(root.join("README.md"), "# Readme\n").expect("README.md");
    std::fs::write(root.join("docs/good.md"), good).expect("good.md");
    std::fs::write(root.join("docs/bad.md"), bad).expect("bad.md");

    let problems = broken_links(&root, &[root.join("docs/good.md")]);
    assert!(problems.is_empty(), "good links reported: {problems:#?}");

    let problems = broken_links(&root, &[root.join("docs/bad.md")]);
    let lines: Vec<&str> = problems
        .iter()
        .map(|p| p.split(": ").next().unwrap_or(""))
        .collect();
    assert_eq!(
        lines,
        [
            "docs/bad.md:1 (nope.md)",
            "docs/bad.md:2 (target.md#usage-2)",
            "docs/bad.md:3 (target.md#not-a-heading)",
            "docs/bad.md:4 (../../outside.md)",
            "docs/bad.md:5 (#nowhere)",
            "docs/bad.md:6 (pic.png)",
            "docs/bad.md:8 (gone.md)",
        ],
        "{problems:#?}"
    );
}
