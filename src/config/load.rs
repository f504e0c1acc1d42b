//! Loading: files read (bounded) and parsed once each, checked for unknown keys and for
//! providers defined twice, then extracted through figment in two parts. The top-level tables
//! (`[web]`, `[metrics]`, `[defaults]`) go through one figment of every layer (files in order,
//! then the environment, then command-line flags); each provider goes through a figment of its
//! own (its file, then its environment variables), built and dropped in turn.
//!
//! Why per provider: a figment of the whole configuration holds its merged tree and, while
//! extracting, a second copy of it. At 10 000 providers (2.3 MB of TOML) those trees were 60 MB
//! and made the start-up peak of the process; the allocator then kept most of those pages for the
//! process's life (BENCHMARKS.md, rounds four and five). Error messages are unchanged: each
//! figment still sees the key's full path and the file it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider as _};

use super::env::EnvStrings;
use super::messages::{describe_error, source_name};
use super::raw::{RawConfig, walk_unknown};
use super::validate::{check_listen_addresses, validate};
use super::{Config, ConfigError, Grant, SecretSource};
use crate::files::{self, CONFIG_READ_TIMEOUT, describe_io};

/// Largest configuration file accepted (a guard against naming a device or a huge file).
const MAX_CONFIG_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Command-line values that override the configuration (they win over every other layer).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--web.listen-address`, in the order given (it may be repeated, as in the Prometheus
    /// exporter-toolkit): the first replaces `web.listen_address`, the others are added to it.
    pub listen_addresses: Vec<String>,
}

/// Loads the configuration file at `path` with environment and command-line overrides, and
/// validates it.
pub fn load_file(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    load_files(&[path.to_path_buf()], overrides)
}

/// Loads several configuration files, or directories of `*.toml` files taken in name order, as
/// one configuration (later files win for `[web]` and `[defaults]`), with environment and
/// command-line overrides. A provider defined in two files is an error naming both, so teams
/// owning separate files cannot silently override each other.
pub fn load_files(paths: &[PathBuf], overrides: &Overrides) -> Result<Config, ConfigError> {
    let files = expand_paths(paths)?;
    let mut problems = Vec::new();
    let mut layers = Vec::with_capacity(files.len() + 1);
    for file in &files {
        // The text is dropped as soon as it is parsed: only the parsed tree is held.
        match read_text(file, MAX_CONFIG_FILE_BYTES) {
            Ok(text) => match Layer::parse(&TomlText::file(file, &text)) {
                Ok(layer) => layers.push(layer),
                Err(problem) => problems.push(problem),
            },
            Err(problem) => problems.push(format!(
                "configuration file {}: cannot read it: {problem}",
                file.display()
            )),
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let duplicates = defined_twice(&layers);
    if !duplicates.is_empty() {
        return Err(ConfigError {
            problems: duplicates,
        });
    }
    match Layer::parse(&EnvStrings) {
        Ok(environment) => layers.push(environment),
        Err(problem) => problems.push(problem),
    }
    load(layers, problems, overrides)
}

/// Loads configuration from TOML text (the demo's built-in configuration), without environment
/// overrides.
pub fn load_str(toml: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
    match Layer::parse(&TomlText::string(toml)) {
        Ok(layer) => load(vec![layer], Vec::new(), overrides),
        Err(problem) => Err(ConfigError {
            problems: vec![problem],
        }),
    }
}

/// One layer's data, parsed once: its top-level tables and its providers apart.
struct Layer {
    metadata: Metadata,
    /// Everything but `providers`.
    settings: Dict,
    /// `providers`: name to table.
    providers: Dict,
    /// Unknown keys, named with where they were written.
    unknown_keys: Vec<String>,
}

impl Layer {
    /// Parses `source` and checks its keys. A source that cannot be parsed is one problem line
    /// naming it.
    fn parse(source: &impl figment::Provider) -> Result<Layer, String> {
        let metadata = source.metadata();
        let data = source.data().map_err(|mut error| {
            if error.metadata.is_none() {
                error.metadata = Some(metadata.clone());
            }
            describe_error(&error)
        })?;
        let mut settings = Dict::new();
        let mut unknown_keys = Vec::new();
        // Every format this reads puts its data in the default profile.
        for (_, root) in data {
            walk_unknown(&metadata, &root, &mut Vec::new(), &mut unknown_keys);
            settings.extend(root);
        }
        let providers = match settings.remove("providers") {
            Some(Value::Dict(_, providers)) => providers,
            // Not a table: left in place, so that extraction reports it as today.
            Some(other) => {
                settings.insert("providers".to_string(), other);
                Dict::new()
            }
            None => Dict::new(),
        };
        Ok(Layer {
            metadata,
            settings,
            providers,
            unknown_keys,
        })
    }
}

/// TOML text as a figment layer, parsed by `toml`'s own parser straight into figment's values.
/// figment's `Toml` provider goes through `toml_edit`'s document, which keeps every key's and
/// value's formatting: for the benchmark's 10 000 providers (2.3 MB) that document was 47 MB, the
/// peak of the whole load.
struct TomlText<'a> {
    metadata: Metadata,
    text: &'a str,
}

impl<'a> TomlText<'a> {
    fn file(path: &Path, text: &'a str) -> Self {
        TomlText {
            metadata: Metadata::from("TOML file", path),
            text,
        }
    }

    fn string(text: &'a str) -> Self {
        TomlText {
            metadata: Toml::string("").metadata(),
            text,
        }
    }
}

impl figment::Provider for TomlText<'_> {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root: Dict =
            toml::from_str(self.text).map_err(|error| figment::Error::from(error.to_string()))?;
        for value in root.values_mut() {
            dates_as_text(value);
        }
        Ok(Profile::Default.collect(root))
    }
}

/// The key under which toml hands a TOML date or date-time to a deserializer that takes any
/// value (figment's): a table of this one key holding the date as written.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

/// Replaces each TOML date or date-time (`client_secret_expires = 2027-05-01`, unquoted) with its
/// text, as if it had been quoted: the keys that take dates parse text, and without this an
/// unquoted date was refused as "expected a string, found map".
fn dates_as_text(value: &mut Value) {
    match value {
        Value::Dict(tag, dict) => {
            if dict.len() == 1
                && let Some(Value::String(_, text)) = dict.get(TOML_DATETIME_KEY)
            {
                *value = Value::String(*tag, text.clone());
                return;
            }
            dict.values_mut().for_each(dates_as_text);
        }
        Value::Array(_, items) => items.iter_mut().for_each(dates_as_text),
        _ => {}
    }
}

/// A part of a layer's data handed to one figment, under the layer's metadata (so messages name
/// the file or the environment variable).
struct Part<'a> {
    metadata: &'a Metadata,
    data: Dict,
}

impl figment::Provider for Part<'_> {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

/// Each provider defined in two files, named with both.
fn defined_twice(layers: &[Layer]) -> Vec<String> {
    let mut owners: BTreeMap<&str, &Metadata> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for layer in layers {
        for name in layer.providers.keys() {
            match owners.get(name.as_str()) {
                Some(first) => duplicates.push(format!(
                    "key `providers.{name}`: provider defined twice, in {} and in {}; each provider belongs to one file",
                    source_name(first, ""),
                    source_name(&layer.metadata, "")
                )),
                None => {
                    owners.insert(name, &layer.metadata);
                }
            }
        }
    }
    duplicates
}

/// Extracts and validates the layers (in order: later ones win); `problems` holds what was
/// found before.
fn load(
    layers: Vec<Layer>,
    mut problems: Vec<String>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    for layer in &layers {
        problems.extend(layer.unknown_keys.iter().cloned());
    }
    let mut settings = layers.iter().fold(Figment::new(), |figment, layer| {
        figment.merge(Part {
            metadata: &layer.metadata,
            data: layer.settings.clone(),
        })
    });
    if let Some(address) = overrides.listen_addresses.first() {
        settings = settings.merge(("web.listen_address", address));
    }
    let extra_listen_addresses = overrides.listen_addresses.get(1..).unwrap_or_default();
    problems.extend(check_listen_addresses(
        "web.listen_address",
        extra_listen_addresses,
    ));
    let mut extracted = true;
    let mut raw = settings.extract::<RawConfig>().unwrap_or_else(|error| {
        extracted = false;
        problems.extend(error.into_iter().map(|e| describe_error(&e)));
        RawConfig::default()
    });
    drop(settings);

    // Each provider from its own parts, in name order; a part is dropped once extracted.
    let metadata: Vec<Metadata> = layers.iter().map(|layer| layer.metadata.clone()).collect();
    let mut parts: BTreeMap<String, Vec<(usize, Value)>> = BTreeMap::new();
    for (index, layer) in layers.into_iter().enumerate() {
        for (name, table) in layer.providers {
            parts.entry(name).or_default().push((index, table));
        }
    }
    for (name, tables) in parts {
        let figment = tables
            .into_iter()
            .fold(Figment::new(), |figment, (index, table)| {
                let mut providers = Dict::new();
                providers.insert(name.clone(), table);
                let mut data = Dict::new();
                data.insert("providers".to_string(), Value::from(providers));
                figment.merge(Part {
                    metadata: &metadata[index],
                    data,
                })
            });
        match figment.extract::<RawConfig>() {
            Ok(mut one) => raw.providers.extend(one.providers.remove_entry(&name)),
            Err(error) => {
                extracted = false;
                problems.extend(error.into_iter().map(|e| describe_error(&e)));
            }
        }
    }
    if !extracted {
        return Err(ConfigError { problems });
    }
    match validate(raw) {
        Ok(mut config) if problems.is_empty() => {
            config.web.extra_listen_addresses = extra_listen_addresses.to_vec();
            Ok(config)
        }
        Ok(_) => Err(ConfigError { problems }),
        Err(error) => {
            problems.extend(error.problems);
            Err(ConfigError { problems })
        }
    }
}

/// The files named, with each directory replaced by its `*.toml` files in name order.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Err(error) => problems.push(format!(
                "configuration file {}: cannot read it: {}",
                path.display(),
                describe_io(error.kind())
            )),
            Ok(metadata) if metadata.is_dir() => match std::fs::read_dir(path) {
                Err(error) => problems.push(format!(
                    "configuration directory {}: cannot list it: {}",
                    path.display(),
                    describe_io(error.kind())
                )),
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|entry| entry.path())
                        // Hidden entries are skipped: Kubernetes volumes hold `..data` links
                        // beside the files; a symlinked `*.toml` is followed.
                        .filter(|p| {
                            p.file_name()
                                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
                        })
                        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
                        .collect();
                    found.sort();
                    if found.is_empty() {
                        problems.push(format!(
                            "configuration directory {}: holds no *.toml files",
                            path.display()
                        ));
                    }
                    files.extend(found);
                }
            },
            Ok(metadata) if !metadata.is_file() => problems.push(format!(
                "configuration file {}: not a regular file",
                path.display()
            )),
            Ok(metadata) if metadata.len() > MAX_CONFIG_FILE_BYTES => problems.push(format!(
                "configuration file {}: larger than {MAX_CONFIG_FILE_BYTES} bytes",
                path.display()
            )),
            Ok(_) => files.push(path.clone()),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(ConfigError { problems })
    }
}

/// A warning when the file at `path` holds inline secrets and others than its owner may read it.
/// (With several files, the warning names every such file; checking a file without inline
/// secrets is harmless.)
pub fn exposed_secrets_warning(path: &Path, config: &Config) -> Option<String> {
    let inline: Vec<&str> = config
        .providers
        .iter()
        .filter(|p| {
            matches!(p.token.client_secret, Some(SecretSource::Inline(_)))
                || matches!(
                    &p.token.grant,
                    Grant::Password(grant) if matches!(grant.password, SecretSource::Inline(_))
                )
        })
        .map(|p| p.name.as_str())
        .collect();
    if inline.is_empty() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Some(format!(
                "{} holds inline secrets (providers: {}) and is readable by group or others (mode {:o}); run `chmod 600` on it, or use client_secret_file / client_secret_env",
                path.display(),
                name_some(&inline, 5),
                mode & 0o777
            ));
        }
    }
    None
}

/// Up to `shown` names, then how many more: a log line stays readable with 10 000 providers.
fn name_some(names: &[&str], shown: usize) -> String {
    if names.len() <= shown {
        return names.join(", ");
    }
    format!(
        "{} and {} more",
        names[..shown].join(", "),
        names.len() - shown
    )
}

/// A configuration file read through [`files::read`] (a regular file, capped, with a deadline,
/// never blocking an async worker) as a figment layer that names the file in messages, as
/// figment's own file provider does (which reads with blocking I/O and no bound).
pub(crate) struct FileLayer<F: Format> {
    path: PathBuf,
    text: figment::providers::Data<F>,
}

impl<F: Format> FileLayer<F> {
    /// Reads `path` (at most `limit` bytes); the error says why it could not be read.
    pub(crate) fn read(path: &Path, limit: u64) -> Result<Self, String> {
        let text = read_text(path, limit)?;
        Ok(FileLayer {
            path: path.to_path_buf(),
            text: F::string(&text),
        })
    }
}

/// Reads the text of a configuration file (at most `limit` bytes); the error says why it could
/// not be read.
fn read_text(path: &Path, limit: u64) -> Result<String, String> {
    let bytes = files::read(path, limit, CONFIG_READ_TIMEOUT).map_err(|error| error.to_string())?;
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())
}

impl<F: Format> figment::Provider for FileLayer<F> {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::from(format!("{} file", F::NAME), self.path.as_path())
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.text.data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(expires: &str) -> String {
        format!(
            "[providers.entra.token]\nurl = \"https://login.example.com/token\"\n\
             client_id = \"id\"\nclient_secret = \"s\"\nclient_secret_expires = {expires}\n"
        )
    }

    /// An unquoted TOML date or date-time is read as the same text quoted.
    #[test]
    fn unquoted_dates_are_read_as_their_text() {
        for (unquoted, quoted) in [
            ("2027-05-01", "\"2027-05-01\""),
            ("2027-05-01T12:00:00Z", "\"2027-05-01T12:00:00Z\""),
            ("2027-05-01T14:00:00+02:00", "\"2027-05-01T14:00:00+02:00\""),
        ] {
            let load = |expires: &str| {
                load_str(&provider(expires), &Overrides::default())
                    .map(|config| config.providers[0].token.client_secret_expires)
            };
            let expected = load(quoted).unwrap();
            assert!(expected.is_some());
            assert_eq!(load(unquoted), Ok(expected), "{unquoted}");
        }
    }

    /// A local date-time has no offset: named like the same text quoted, not as a table.
    #[test]
    fn an_unquoted_local_date_time_is_named_as_text() {
        let problems = load_str(&provider("2027-05-01T12:00:00"), &Overrides::default())
            .unwrap_err()
            .problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("key `providers.entra.token.client_secret_expires`: invalid date \"2027-05-01T12:00:00\""),
            "{problems:?}"
        );
    }
}
