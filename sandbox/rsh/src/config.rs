//! The shell's configuration, from a TOML file in the image and from arguments (arguments
//! win): the allowed commands and their absolute paths, the environment allowlist, the
//! banner, the prompt, the history size. Invariant: once built, every name is a plain
//! command name that no built-in has, every path is absolute and normalised, and nothing
//! changes afterwards.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::command::Builtin;
use crate::env::{BadPattern, EnvAllow};

/// Read when neither `--config` nor `--allow` is given.
pub const DEFAULT_CONFIG: &str = "/etc/termcell/rsh.conf";

pub const USAGE: &str = "\
usage: termcell-rsh [--config FILE] [--allow NAME=/ABSOLUTE/PATH]... [--banner TEXT] [--prompt TEXT]

A restricted shell: each line names one allowed command and its arguments, which run
directly (no shell in between) with an allowlisted environment. Words are separated by
spaces or tabs; '...' and \"...\" group; a backslash escapes the next character; nothing
expands. Lines holding ; | & > < ` $( $ (outside single quotes) or control characters are
refused. Built-ins: help, clear, history, exit.

Without --config and --allow, the configuration is read from /etc/termcell/rsh.conf:
  banner = \"Welcome\"          # printed once at start
  prompt = \"$ \"
  history_size = 500
  env = [\"HOME\", \"PATH\", \"TERM\", \"LANG\", \"LC_*\", \"ABLY_*\"]   # names passed on
  [commands]
  ably = \"/usr/local/bin/ably\"
";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    #[error("cannot read {path}: {source} (give --config FILE or --allow NAME=PATH)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid configuration: {message}")]
    Toml { path: String, message: String },
    #[error("{0:?} is not a command name: use letters, digits and _ . + - (not first)")]
    BadName(String),
    #[error("{0} is a built-in and cannot be an allowed command")]
    BuiltinName(String),
    #[error("{name}: {path:?} {why}")]
    BadPath {
        name: String,
        path: String,
        why: &'static str,
    },
    #[error("env: {0}")]
    BadEnv(#[from] BadPattern),
    #[error("the prompt holds a control character other than ESC")]
    BadPrompt,
    #[error("history_size: at most {MAX_HISTORY}")]
    BadHistory,
}

const MAX_HISTORY: usize = 10_000;

/// The file's keys; every one is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    banner: Option<String>,
    prompt: Option<String>,
    history_size: Option<usize>,
    env: Option<Vec<String>>,
    #[serde(default)]
    commands: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Name → absolute path.
    pub commands: BTreeMap<String, String>,
    pub banner: Option<String>,
    pub prompt: String,
    pub history_size: usize,
    pub env: EnvAllow,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Start {
    Shell(Config),
    Usage,
}

/// Builds the configuration from the arguments (without the program name); `read` reads
/// a configuration file.
pub fn from_args(
    args: impl IntoIterator<Item = String>,
    read: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<Start, ConfigError> {
    let mut file_path = None;
    let mut allows = Vec::new();
    let (mut banner, mut prompt) = (None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            return Ok(Start::Usage);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| ConfigError::Usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--config" => file_path = Some(value()?),
            "--allow" => allows.push(value()?),
            "--banner" => banner = Some(value()?),
            "--prompt" => prompt = Some(value()?),
            _ => return Err(ConfigError::Usage(format!("unknown argument {arg:?}"))),
        }
    }
    let path = match (&file_path, allows.is_empty()) {
        (Some(path), _) => Some(path.as_str()),
        (None, true) => Some(DEFAULT_CONFIG),
        (None, false) => None,
    };
    let mut file = match path {
        Some(path) => {
            let text = read(Path::new(path)).map_err(|source| ConfigError::Read {
                path: path.to_string(),
                source,
            })?;
            toml::from_str::<File>(&text).map_err(|e| ConfigError::Toml {
                path: path.to_string(),
                message: e.message().to_string(),
            })?
        }
        None => File::default(),
    };
    for allow in allows {
        let (name, path) = allow
            .split_once('=')
            .ok_or_else(|| ConfigError::Usage(format!("--allow {allow:?}: use NAME=PATH")))?;
        file.commands.insert(name.to_string(), path.to_string());
    }
    file.banner = banner.or(file.banner);
    file.prompt = prompt.or(file.prompt);
    validate(file).map(Start::Shell)
}

fn validate(file: File) -> Result<Config, ConfigError> {
    for (name, path) in &file.commands {
        check_name(name)?;
        check_path(name, path)?;
    }
    let prompt = file.prompt.unwrap_or_else(|| "$ ".to_string());
    if prompt.chars().any(|c| c.is_control() && c != '\x1b') {
        return Err(ConfigError::BadPrompt);
    }
    let history_size = file.history_size.unwrap_or(500);
    if history_size > MAX_HISTORY {
        return Err(ConfigError::BadHistory);
    }
    let env = match file.env {
        Some(patterns) => EnvAllow::parse(patterns)?,
        None => EnvAllow::default(),
    };
    Ok(Config {
        commands: file.commands,
        banner: file.banner,
        prompt,
        history_size,
        env,
    })
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    if Builtin::named(name).is_some() {
        return Err(ConfigError::BuiltinName(name.to_string()));
    }
    let mut chars = name.chars();
    let first_ok = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_');
    if !first_ok
        || name.len() > 64
        || !chars.all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c))
    {
        return Err(ConfigError::BadName(name.to_string()));
    }
    Ok(())
}

fn check_path(name: &str, path: &str) -> Result<(), ConfigError> {
    let bad = |why| {
        Err(ConfigError::BadPath {
            name: name.to_string(),
            path: path.to_string(),
            why,
        })
    };
    if !path.starts_with('/') {
        return bad("is not an absolute path");
    }
    if path.len() > 4096 || path.chars().any(char::is_control) {
        return bad("is not a usable path");
    }
    if path
        .split('/')
        .skip(1)
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return bad("is not normalised (no empty, . or .. parts, no trailing /)");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
