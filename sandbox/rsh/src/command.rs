//! From a parsed line to what runs: a built-in, or an allowlisted program with exactly the
//! typed arguments. Invariant: a program runs only when its exact name is a key of the
//! allowlist, and then only at the path the configuration gives for it.

use std::collections::BTreeMap;

use crate::parse::{words, Refusal};

/// The shell's own commands; an allowlist cannot name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Help,
    Clear,
    History,
    Exit,
}

impl Builtin {
    pub const ALL: [Builtin; 4] = [
        Builtin::Help,
        Builtin::Clear,
        Builtin::History,
        Builtin::Exit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Help => "help",
            Builtin::Clear => "clear",
            Builtin::History => "history",
            Builtin::Exit => "exit",
        }
    }

    pub fn named(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// An allowlisted program and the arguments typed after its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The name typed (a key of the allowlist).
    pub name: String,
    /// Its absolute path from the allowlist; also the program's `argv[0]`.
    pub path: String,
    pub args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An empty or blank line.
    Nothing,
    Builtin(Builtin),
    Run(Invocation),
}

/// What `line` asks for, given the allowlist (name → absolute path).
pub fn plan(line: &str, allowed: &BTreeMap<String, String>) -> Result<Action, Refusal> {
    let mut words = words(line)?.into_iter();
    let Some(name) = words.next() else {
        return Ok(Action::Nothing);
    };
    let args: Vec<String> = words.collect();
    if let Some(builtin) = Builtin::named(&name) {
        if !args.is_empty() {
            return Err(Refusal::BuiltinArguments {
                name: builtin.name(),
            });
        }
        return Ok(Action::Builtin(builtin));
    }
    if let Some(path) = allowed.get(&name) {
        return Ok(Action::Run(Invocation {
            name,
            path: path.clone(),
            args,
        }));
    }
    Err(if name.is_empty() {
        Refusal::EmptyName
    } else if name.contains('=') {
        Refusal::Assignment { name }
    } else if name.contains('/') {
        Refusal::Path { name }
    } else {
        Refusal::NotAllowed { name }
    })
}

#[cfg(test)]
mod tests;
