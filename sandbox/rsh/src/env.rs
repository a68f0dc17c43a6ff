//! The environment a command runs with: the shell's own, kept only where its name is on an
//! allowlist. Invariant: nothing that changes how a program is loaded or behaves
//! (`LD_*`, `BASH_ENV`, `ENV`, `NODE_OPTIONS`, `PYTHON*`, `PERL5*`, `RUBYOPT`, `GCONV_PATH`,
//! ...) reaches a command unless the operator names it; the list says what passes, so a
//! name nobody thought of is dropped.

use std::ffi::OsString;

/// The names passed by default; `*` at the end matches any name with that prefix.
pub const DEFAULT_ALLOW: &[&str] = &[
    "HOME",
    "PATH",
    "TERM",
    "COLORTERM",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "COLUMNS",
    "LINES",
    "USER",
    "LOGNAME",
    "HOSTNAME",
    "ABLY_*",
];

/// Names whose value glibc or ncurses may take as a path to load from: a value holding `/`
/// is dropped.
fn value_may_be_a_path(name: &str) -> bool {
    name == "TERM" || name == "LANG" || name == "LANGUAGE" || name.starts_with("LC_")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvAllow {
    patterns: Vec<String>,
}

impl Default for EnvAllow {
    fn default() -> Self {
        EnvAllow::new(DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not an environment variable name (letters, digits and _, optionally ending in *)"
)]
pub struct BadPattern(String);

impl EnvAllow {
    pub fn new(patterns: Vec<String>) -> EnvAllow {
        EnvAllow { patterns }
    }

    /// Checks the operator's patterns.
    pub fn parse(patterns: Vec<String>) -> Result<EnvAllow, BadPattern> {
        for p in &patterns {
            let name = p.strip_suffix('*').unwrap_or(p);
            let mut bytes = name.bytes();
            let first_ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_');
            if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(BadPattern(p.clone()));
            }
        }
        Ok(EnvAllow::new(patterns))
    }

    pub fn allows(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
    }

    /// The variables of `vars` that pass, in their order.
    pub fn filter(
        &self,
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Vec<(OsString, OsString)> {
        vars.into_iter()
            .filter(|(name, value)| {
                let Some(name) = name.to_str() else {
                    return false;
                };
                self.allows(name)
                    && !(value_may_be_a_path(name) && value.as_encoded_bytes().contains(&b'/'))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
