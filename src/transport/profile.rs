//! Shared config and credentials files (~/.aws/config, ~/.aws/credentials).
//!
//! The files are INI-like, parsed the way the AWS SDKs and the CLI accept
//! them:
//! - `#` and `;` start a comment line; after a value they start a comment only
//!   when preceded by whitespace (so a `;` inside a value survives);
//! - whitespace around `=` and around section names is ignored;
//! - property names are case-insensitive (botocore lowercases them);
//! - a line that starts with whitespace continues the previous value (the
//!   nested `s3 =` style), kept but not interpreted;
//! - in the config file, profiles are `[profile NAME]` (and `[default]`);
//!   in the credentials file they are `[NAME]`; other sections
//!   (`[sso-session x]`, `[services x]`) are ignored.
//!
//! Error messages name the file and line but never quote a line: the line
//! may hold a secret.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::transport::env::Environment;

/// The properties of one profile, names lowercased.
pub(crate) type Properties = HashMap<String, String>;

/// Which of the two files a text comes from; they spell sections differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// `~/.aws/config`: `[profile NAME]`, `[default]`.
    Config,
    /// `~/.aws/credentials`: `[NAME]`.
    Credentials,
}

/// Both shared files, parsed, and the profile the environment selects.
#[derive(Clone, Default)]
pub(crate) struct SharedProfiles {
    /// The selected profile: `AWS_PROFILE`, else `default`.
    pub(crate) selected: String,
    /// Whether `AWS_PROFILE` chose it (then a missing profile is an error).
    pub(crate) explicitly_selected: bool,
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) credentials_path: Option<PathBuf>,
    config: HashMap<String, Properties>,
    credentials: HashMap<String, Properties>,
}

// Deliberately not derived: properties hold secret keys.
impl std::fmt::Debug for SharedProfiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut config: Vec<_> = self.config.keys().collect();
        config.sort();
        let mut credentials: Vec<_> = self.credentials.keys().collect();
        credentials.sort();
        f.debug_struct("SharedProfiles")
            .field("selected", &self.selected)
            .field("config_path", &self.config_path)
            .field("credentials_path", &self.credentials_path)
            .field("config_profiles", &config)
            .field("credentials_profiles", &credentials)
            .finish()
    }
}

impl SharedProfiles {
    /// Reads both files as `env` locates them. A missing file is an empty
    /// file; an unreadable or malformed one is an error.
    pub(crate) fn load(env: &Environment) -> Result<SharedProfiles> {
        let (selected, explicitly_selected) = match env.var("AWS_PROFILE") {
            Some(name) => (name.trim().to_owned(), true),
            None => ("default".to_owned(), false),
        };
        let config_path = shared_file_path(env, "AWS_CONFIG_FILE", "config");
        let credentials_path = shared_file_path(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let config = match &config_path {
            Some(path) => read_profiles(path, FileKind::Config)?,
            None => HashMap::new(),
        };
        let credentials = match &credentials_path {
            Some(path) => read_profiles(path, FileKind::Credentials)?,
            None => HashMap::new(),
        };
        Ok(SharedProfiles {
            selected,
            explicitly_selected,
            config_path,
            credentials_path,
            config,
            credentials,
        })
    }

    /// Whether either file defines the profile.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.config.contains_key(name) || self.credentials.contains_key(name)
    }

    /// The profile's properties, credentials-file values winning over
    /// config-file values (as in the SDKs), or `None` when neither file
    /// defines it.
    pub(crate) fn merged(&self, name: &str) -> Option<Properties> {
        if !self.contains(name) {
            return None;
        }
        let mut merged = self.config.get(name).cloned().unwrap_or_default();
        if let Some(overrides) = self.credentials.get(name) {
            merged.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Some(merged)
    }

    /// The selected profile's `region`: the config file first, then the
    /// credentials file.
    pub(crate) fn region(&self) -> Option<String> {
        let from = |profiles: &HashMap<String, Properties>| {
            profiles
                .get(&self.selected)
                .and_then(|p| p.get("region"))
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
        };
        from(&self.config).or_else(|| from(&self.credentials))
    }

    /// Where the files are, for messages: "~/.aws/config or ~/.aws/credentials".
    pub(crate) fn describe_paths(&self) -> String {
        let show = |p: &Option<PathBuf>| match p {
            Some(p) => p.display().to_string(),
            None => "(no home directory)".to_owned(),
        };
        format!(
            "{} or {}",
            show(&self.config_path),
            show(&self.credentials_path)
        )
    }
}

/// The `region` of the selected profile, if any. Unreadable or malformed
/// files give `None` here (region falls back to the default); the
/// credentials provider reports them.
pub(crate) fn profile_region(env: &Environment) -> Option<String> {
    match SharedProfiles::load(env) {
        Ok(profiles) => profiles.region(),
        Err(e) => {
            log::warn!("ignoring the shared AWS files for the region: {e}");
            None
        }
    }
}

/// `$VAR` (with a leading `~` expanded), else `~/.aws/<file>`.
fn shared_file_path(env: &Environment, var: &str, file: &str) -> Option<PathBuf> {
    match env.var(var) {
        Some(path) => Some(expand_home(env, path.trim())),
        None => env.home_dir().map(|home| home.join(".aws").join(file)),
    }
}

/// Expands a leading `~/` (or a lone `~`) to the home directory, as the SDKs
/// do for paths taken from variables and files.
pub(crate) fn expand_home(env: &Environment, path: &str) -> PathBuf {
    let rest = if path == "~" {
        Some("")
    } else {
        path.strip_prefix("~/").or_else(|| path.strip_prefix("~\\"))
    };
    match (rest, env.home_dir()) {
        (Some(""), Some(home)) => home,
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// Reads and parses one file; a file that does not exist has no profiles.
fn read_profiles(path: &Path, kind: FileKind) -> Result<HashMap<String, Properties>> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let text = String::from_utf8(text)
        .map_err(|_| Error::Config(format!("{} is not valid UTF-8", path.display())))?;
    parse(&text, kind).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// What a section header names.
enum Section {
    /// A profile, and whether it was spelled `[profile NAME]` (which wins
    /// over `[NAME]` for `default` in the config file).
    Profile { name: String, prefixed: bool },
    /// Anything else: its properties are skipped.
    Ignored,
}

/// Parses the text of one file into profiles. Errors carry a line number,
/// never the line.
pub(crate) fn parse(
    text: &str,
    kind: FileKind,
) -> std::result::Result<HashMap<String, Properties>, String> {
    let mut profiles: HashMap<String, Properties> = HashMap::new();
    // Names that came from `[profile default]`-style headers, so that a later
    // or earlier bare `[default]` does not override them.
    let mut prefixed_names: Vec<String> = Vec::new();
    let mut current: Option<Section> = None;
    // The key of the property a continuation line extends.
    let mut last_key: Option<String> = None;
    // Properties of a bare `[default]` in a config file that also has
    // `[profile default]`: parsed into this scratch map and dropped.
    let mut discard = Properties::new();

    for (index, raw_line) in text.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = raw_line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if trimmed.starts_with('[') {
            last_key = None;
            let header = strip_comment(trimmed, false).trim_end();
            let inner = header
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .ok_or_else(|| format!("line {line_no}: section header lacks a closing `]`"))?;
            let section = classify_section(inner.trim(), kind);
            if let Section::Profile { name, prefixed } = &section {
                if *prefixed && !prefixed_names.contains(name) {
                    // `[profile default]` replaces anything `[default]` set.
                    profiles.remove(name);
                    prefixed_names.push(name.clone());
                }
                profiles.entry(name.clone()).or_default();
            }
            current = Some(section);
            continue;
        }
        let starts_indented = raw_line.starts_with([' ', '\t']);
        let Some(section) = &current else {
            return Err(format!(
                "line {line_no}: a property appears before any [section]"
            ));
        };
        let target = match section {
            Section::Ignored => None,
            Section::Profile { name, prefixed } => {
                let shadowed =
                    kind == FileKind::Config && !*prefixed && prefixed_names.contains(name);
                if shadowed {
                    Some(&mut discard)
                } else {
                    profiles.get_mut(name)
                }
            }
        };
        if starts_indented {
            if let Some(key) = &last_key {
                // A continuation of the previous value.
                if let Some(value) = target.and_then(|props| props.get_mut(key)) {
                    value.push('\n');
                    value.push_str(strip_comment(trimmed, true).trim());
                }
                continue;
            }
        }
        let (key, value) = trimmed
            .split_once('=')
            .ok_or_else(|| format!("line {line_no}: expected `name = value`"))?;
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(format!("line {line_no}: a property has no name"));
        }
        let value = strip_comment(value, true).trim().to_owned();
        if let Some(props) = target {
            if props.insert(key.clone(), value).is_some() {
                log::debug!("line {line_no}: property {key} is set twice; the last value wins");
            }
        }
        last_key = Some(key);
    }
    Ok(profiles)
}

/// What a header's inner text names in a file of `kind`.
fn classify_section(inner: &str, kind: FileKind) -> Section {
    let prefixed_name = inner
        .strip_prefix("profile")
        .filter(|rest| rest.starts_with([' ', '\t']))
        .map(str::trim);
    match (kind, prefixed_name) {
        (FileKind::Config, Some(name)) if !name.is_empty() => Section::Profile {
            name: name.to_owned(),
            prefixed: true,
        },
        (FileKind::Config, None) if inner == "default" => Section::Profile {
            name: inner.to_owned(),
            prefixed: false,
        },
        (FileKind::Config, _) => {
            if !inner.contains(char::is_whitespace) && !inner.is_empty() {
                log::debug!(
                    "config file section [{inner}] is ignored: profiles there are [profile {inner}]"
                );
            }
            Section::Ignored
        }
        (FileKind::Credentials, Some(_)) => {
            log::warn!(
                "credentials file section [{inner}] is ignored: profiles there are named without the `profile` prefix"
            );
            Section::Ignored
        }
        (FileKind::Credentials, None) if !inner.is_empty() => Section::Profile {
            name: inner.to_owned(),
            prefixed: false,
        },
        (FileKind::Credentials, None) => Section::Ignored,
    }
}

/// Cuts a trailing `#`/`;` comment. In values the marker must follow
/// whitespace (`a;b` is a value); in headers it may follow anything.
fn strip_comment(text: &str, needs_whitespace: bool) -> &str {
    let mut previous_is_space = false;
    for (i, c) in text.char_indices() {
        if (c == '#' || c == ';') && (!needs_whitespace || previous_is_space) {
            return &text[..i];
        }
        previous_is_space = c.is_whitespace();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sections_comments_and_case() {
        let text = "\
# leading comment
; another
[default]
region = eu-west-1
[profile  dev ]   ; trailing comment
AWS_Access_Key_ID=AKIDDEV
aws_secret_access_key   =  secret;with;semicolons # comment
[dev]
region = ignored-without-prefix
[sso-session corp]
sso_region = us-east-1
[profile nested]
s3 =
  max_concurrent_requests = 10
region = us-west-2
";
        let profiles = parse(text, FileKind::Config).expect("parses");
        assert_eq!(profiles["default"]["region"], "eu-west-1");
        assert_eq!(profiles["dev"]["aws_access_key_id"], "AKIDDEV");
        assert_eq!(
            profiles["dev"]["aws_secret_access_key"],
            "secret;with;semicolons"
        );
        assert!(!profiles["dev"].contains_key("region"));
        assert!(!profiles.contains_key("corp"));
        assert!(!profiles.contains_key("sso-session corp"));
        assert_eq!(profiles["nested"]["s3"], "\nmax_concurrent_requests = 10");
        assert_eq!(profiles["nested"]["region"], "us-west-2");
    }

    #[test]
    fn prefixed_default_wins_over_bare_default_in_config() {
        let text = "[profile default]\nregion = a\n[default]\nregion = b\n";
        assert_eq!(
            parse(text, FileKind::Config).unwrap()["default"]["region"],
            "a"
        );
        let text = "[default]\nregion = b\nextra = x\n[profile default]\nregion = a\n";
        let profiles = parse(text, FileKind::Config).unwrap();
        assert_eq!(profiles["default"]["region"], "a");
        assert!(!profiles["default"].contains_key("extra"));
    }

    #[test]
    fn credentials_file_uses_bare_names() {
        let text = "[default]\naws_access_key_id = A\n[profile x]\naws_access_key_id = B\n[x]\naws_access_key_id = C\n";
        let profiles = parse(text, FileKind::Credentials).unwrap();
        assert_eq!(profiles["default"]["aws_access_key_id"], "A");
        assert_eq!(profiles["x"]["aws_access_key_id"], "C");
        assert_eq!(profiles.len(), 2);
    }

    #[test]
    fn errors_name_the_line_but_never_quote_it() {
        let err = parse("[default]\nSECRETVALUE\n", FileKind::Credentials).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("SECRETVALUE"), "{err}");
        let err = parse(
            "aws_secret_access_key = SECRETVALUE\n",
            FileKind::Credentials,
        )
        .unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains("SECRETVALUE"), "{err}");
        let err = parse("[default\n", FileKind::Config).unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn empty_profile_exists() {
        let profiles = parse("[profile empty]\n", FileKind::Config).unwrap();
        assert!(profiles["empty"].is_empty());
    }

    #[test]
    fn home_expansion() {
        let env = Environment::from_vars([("HOME", "/home/u")]);
        assert_eq!(expand_home(&env, "~/x/y"), PathBuf::from("/home/u/x/y"));
        assert_eq!(expand_home(&env, "/abs"), PathBuf::from("/abs"));
        assert_eq!(expand_home(&env, "~"), PathBuf::from("/home/u"));
    }

    #[test]
    fn region_prefers_config_file() {
        let mut profiles = SharedProfiles {
            selected: "p".into(),
            ..SharedProfiles::default()
        };
        profiles.credentials = parse("[p]\nregion = from-creds\n", FileKind::Credentials).unwrap();
        assert_eq!(profiles.region().as_deref(), Some("from-creds"));
        profiles.config = parse("[profile p]\nregion = from-config\n", FileKind::Config).unwrap();
        assert_eq!(profiles.region().as_deref(), Some("from-config"));
    }
}
