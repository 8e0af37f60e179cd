//! A view of the process environment that tests and embedders can replace,
//! so credential and region resolution never depends on mutating global state.

use std::collections::HashMap;
use std::path::PathBuf;

/// Environment variables (and the home directory) as kcheck sees them.
#[derive(Clone, Default)]
pub struct Environment {
    /// `None` reads the real process environment at each lookup.
    vars: Option<HashMap<String, String>>,
}

/// Names only: values include secret keys and session tokens.
impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.vars {
            None => f.write_str("Environment(process)"),
            Some(vars) => {
                let mut names: Vec<&str> = vars.keys().map(String::as_str).collect();
                names.sort_unstable();
                f.debug_tuple("Environment").field(&names).finish()
            }
        }
    }
}

impl Environment {
    /// The real process environment.
    pub fn process() -> Environment {
        Environment { vars: None }
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
        }
    }

    /// The variable's value; unset and empty are the same (as in the AWS SDKs).
    pub fn var(&self, name: &str) -> Option<String> {
        let value = match &self.vars {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
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
