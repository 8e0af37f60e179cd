//! A view of the process environment that tests and embedders can replace,
//! so credential and region resolution never depends on mutating global state.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Environment variables (and the home directory) as kcheck sees them.
#[derive(Clone, Default)]
pub struct Environment {
    /// `None` reads the real process environment at each lookup.
    vars: Option<HashMap<String, String>>,
    /// Set (`Some`) or unset (`None`) on top of `vars` or the process.
    overrides: BTreeMap<String, Option<String>>,
}

/// Names only: values include secret keys and session tokens.
impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let overrides: Vec<&str> = self.overrides.keys().map(String::as_str).collect();
        match &self.vars {
            None if overrides.is_empty() => f.write_str("Environment(process)"),
            None => f
                .debug_tuple("Environment(process)")
                .field(&overrides)
                .finish(),
            Some(vars) => {
                let mut names: Vec<&str> = vars.keys().map(String::as_str).collect();
                names.extend(overrides);
                names.sort_unstable();
                names.dedup();
                f.debug_tuple("Environment").field(&names).finish()
            }
        }
    }
}

impl Environment {
    /// The real process environment.
    pub fn process() -> Environment {
        Environment {
            vars: None,
            overrides: BTreeMap::new(),
        }
    }

    /// A fixed set of variables; nothing is read from the process.
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Environment
    where
        K: Into<String>,
        V: Into<String>,
    {
        Environment {
            vars: Some(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
            overrides: BTreeMap::new(),
        }
    }

    /// This environment with `name` set to `value` (whatever the process
    /// or the fixed set says), e.g. `AWS_PROFILE` from a `--profile` flag.
    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Environment {
        self.overrides.insert(name.into(), Some(value.into()));
        self
    }

    /// This environment with `name` unset.
    pub fn without_var(mut self, name: impl Into<String>) -> Environment {
        self.overrides.insert(name.into(), None);
        self
    }

    /// The variable's value; unset and empty are the same (as in the AWS SDKs).
    pub fn var(&self, name: &str) -> Option<String> {
        let value = match (self.overrides.get(name), &self.vars) {
            (Some(value), _) => value.clone(),
            (None, Some(vars)) => vars.get(name).cloned(),
            (None, None) => std::env::var(name).ok(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// The user's home directory, from `HOME` (or `USERPROFILE` on Windows).
    pub fn home_dir(&self) -> Option<PathBuf> {
        self.var("HOME")
            .or_else(|| self.var("USERPROFILE"))
            .map(PathBuf::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_the_fixed_set_and_hide_names_values() {
        let env = Environment::from_vars([("AWS_PROFILE", "dev"), ("AWS_REGION", "eu-west-1")])
            .with_var("AWS_PROFILE", "prod")
            .without_var("AWS_REGION");
        assert_eq!(env.var("AWS_PROFILE").as_deref(), Some("prod"));
        assert_eq!(env.var("AWS_REGION"), None);
        let env = env.with_var("AWS_SECRET_ACCESS_KEY", "s3cr3t");
        let debug = format!("{env:?}");
        assert!(debug.contains("AWS_SECRET_ACCESS_KEY"), "{debug}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("prod"),
            "{debug}"
        );
        let process = Environment::process().with_var("KCHECK_TEST_OVERRIDE", "x");
        assert_eq!(process.var("KCHECK_TEST_OVERRIDE").as_deref(), Some("x"));
        assert!(format!("{process:?}").starts_with("Environment(process)"));
    }
}
