//! The man pages and shell completions in `deploy/` are generated from the clap definitions
//! (`oauth2_exporter::cli::Cli`) and checked in, for the Debian package and for users without
//! a Rust toolchain (issue 14, section 2). This test generates them again and fails when a file
//! differs, so they always match the current flags; `OAUTH2_EXPORTER_REGENERATE=1 cargo test
//! --test it generated_docs::` rewrites them. It also checks that docs/configuration.md's flag
//! table and the man page list the same flags.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use oauth2_exporter::cli::Cli;

/// The name the binary is installed under, and so the name completions complete.
const BIN: &str = "oauth2-exporter";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every generated file: its path from the crate root and its contents as generated now.
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let command = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .expect("render the man page");
    files.push((PathBuf::from(format!("deploy/man/{BIN}.1")), page));
    for sub in command.get_subcommands() {
        let name = format!("{BIN}-{}", sub.get_name());
        let mut page = Vec::new();
        // `Cli::command()` is not built yet, so the subcommand does not carry the globals
        // (`--config.file`, `--log.*`); building it first propagates them, as clap does at parse.
        let mut built = command.clone();
        built.build();
        let sub = built
            .find_subcommand(sub.get_name())
            .expect("the subcommand")
            .clone()
            .display_name(name.clone());
        clap_mangen::Man::new(sub)
            .source(format!("{BIN} {}", env!("CARGO_PKG_VERSION")))
            .render(&mut page)
            .expect("render a subcommand's man page");
        files.push((PathBuf::from(format!("deploy/man/{name}.1")), page));
    }
    for (shell, file) in [
        (Shell::Bash, format!("{BIN}.bash")),
        (Shell::Zsh, format!("_{BIN}")),
        (Shell::Fish, format!("{BIN}.fish")),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command.clone(), BIN, &mut script);
        files.push((PathBuf::from(format!("deploy/completions/{file}")), script));
    }
    files
}

#[test]
fn man_pages_and_completions_match_the_flags() {
    let regenerate = std::env::var_os("OAUTH2_EXPORTER_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (path, contents) in generated() {
        let full = root().join(&path);
        if regenerate {
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, &contents).unwrap();
            continue;
        }
        match std::fs::read(&full) {
            Ok(on_disk) if on_disk == contents => {}
            Ok(_) => stale.push(format!("{} differs", path.display())),
            Err(error) => stale.push(format!("{} cannot be read: {error}", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are out of date with the flags:\n  {}\nregenerate them with \
         `OAUTH2_EXPORTER_REGENERATE=1 cargo test --test it generated_docs::` and commit the result",
        stale.join("\n  ")
    );
}

/// The long and short flags a roff man page documents (`\fB\-\-name\fR`, `\fB\-V\fR`).
fn man_page_flags(page: &str) -> BTreeSet<String> {
    let text = page.replace("\\-", "-");
    let mut flags = BTreeSet::new();
    for chunk in text.split("\\fB").skip(1) {
        let bold = chunk.split("\\fR").next().unwrap_or_default();
        for word in bold.split([',', ' ', '=']) {
            let is_flag = word.starts_with('-')
                && word.len() > 1
                && word
                    .trim_start_matches('-')
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if is_flag {
                flags.insert(word.to_string());
            }
        }
    }
    flags
}

/// The flags in the first column of docs/configuration.md's "Command line" table.
fn documented_flags(markdown: &str) -> BTreeSet<String> {
    let section = markdown
        .split("## Command line")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a \"Command line\" section in docs/configuration.md");
    section
        .lines()
        .filter(|line| line.starts_with("| `-"))
        .flat_map(|line| {
            let first = line.split('|').nth(1).unwrap_or_default();
            first
                .split('`')
                .filter(|part| part.starts_with('-'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// docs/configuration.md (which the README links for the flags) and the man page agree on the
/// daemon's flags, both ways. `--help` is clap's own and not in the table.
#[test]
fn the_flag_table_and_the_man_page_list_the_same_flags() {
    let page = std::fs::read_to_string(root().join(format!("deploy/man/{BIN}.1"))).unwrap();
    let mut in_page = man_page_flags(&page);
    in_page.remove("--help");
    in_page.remove("-h");
    let markdown = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let in_table = documented_flags(&markdown);
    assert!(
        in_page.contains("--web.listen-address") && in_page.len() > 5,
        "the man page parser found too little: {in_page:?}"
    );
    let only_page: Vec<_> = in_page.difference(&in_table).collect();
    let only_table: Vec<_> = in_table.difference(&in_page).collect();
    assert!(
        only_page.is_empty() && only_table.is_empty(),
        "docs/configuration.md's flag table and deploy/man/{BIN}.1 disagree:\n  \
         only in the man page: {only_page:?}\n  only in the table: {only_table:?}"
    );
}
