//! termcell-rsh: a restricted shell for the sandbox. Each line names one allowed command
//! and its arguments; the command runs directly (execve of its configured absolute path),
//! with an allowlisted environment, and the shell waits for it. Invariant: nothing runs
//! but an allowlisted program with exactly the words typed after its name, or a built-in.
//!
//! On a terminal it edits lines (`editor`, `terminal`); otherwise it reads lines from
//! stdin (`lines`) with the same limits and the same refusals.

mod command;
mod config;
mod editor;
mod env;
mod lines;
mod parse;
mod run;
mod terminal;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;

use command::{plan, Action, Builtin};
use config::{Config, Start};
use editor::history::History;
use editor::{Editor, Outcome};
use parse::Refusal;
use terminal::Terminal;

fn main() -> ExitCode {
    let args: Result<Vec<String>, OsString> = std::env::args_os()
        .skip(1)
        .map(OsString::into_string)
        .collect();
    let Ok(args) = args else {
        eprintln!("termcell-rsh: an argument is not valid UTF-8");
        return ExitCode::from(2);
    };
    let config = match config::from_args(args, |path| std::fs::read_to_string(path)) {
        Ok(Start::Shell(config)) => config,
        Ok(Start::Usage) => {
            print!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("termcell-rsh: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = terminal::survive_terminal_signals() {
        eprintln!("termcell-rsh: cannot set up signal handling: {e}");
        return ExitCode::FAILURE;
    }
    warn_about_missing_programs(&config);
    let terminal = match Terminal::open() {
        Ok(terminal) => terminal,
        Err(e) => {
            eprintln!("termcell-rsh: cannot set up the terminal: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut shell = Shell {
        env: config.env.filter(std::env::vars_os()),
        history: History::new(config.history_size),
        config,
        terminal,
    };
    let result = if shell.terminal.is_some() {
        shell.interactive()
    } else {
        shell.batch(&mut std::io::stdin().lock())
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("termcell-rsh: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An allowed command whose program is missing is the image builder's mistake: say so at
/// start (and again when it is typed) rather than hide it.
fn warn_about_missing_programs(config: &Config) {
    for (name, path) in &config.commands {
        let problem = match std::fs::metadata(path) {
            Err(e) => Some(e.to_string()),
            Ok(m) if !m.is_file() => Some("not a file".to_string()),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => Some("not executable".to_string()),
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            eprintln!("termcell-rsh: warning: {name} is allowed but {path}: {problem}");
        }
    }
}

enum Next {
    Continue,
    Exit,
}

struct Shell {
    config: Config,
    /// The environment every command gets.
    env: Vec<(OsString, OsString)>,
    history: History,
    /// `None` when stdin or stdout is not a terminal.
    terminal: Option<Terminal>,
}

impl Shell {
    fn interactive(&mut self) -> std::io::Result<()> {
        if let Some(banner) = &self.config.banner {
            println!("{banner}");
        }
        let names = Builtin::ALL
            .iter()
            .map(|b| b.name().to_string())
            .chain(self.config.commands.keys().cloned())
            .collect();
        let mut editor = Editor::new(&self.config.prompt, names);
        loop {
            let Some(terminal) = &mut self.terminal else {
                return Ok(());
            };
            match terminal.read_line(&mut editor, &self.history)? {
                Outcome::Line(line) => {
                    if let Next::Exit = self.handle(&line) {
                        return Ok(());
                    }
                }
                Outcome::Refused(refusal) => refused(&refusal),
                Outcome::Cancelled => {}
                Outcome::EndOfInput => return Ok(()),
            }
        }
    }

    fn batch(&mut self, input: &mut impl std::io::BufRead) -> std::io::Result<()> {
        while let Some(line) = lines::next(input)? {
            match line {
                Ok(line) => {
                    if let Next::Exit = self.handle(&line) {
                        return Ok(());
                    }
                }
                Err(refusal) => refused(&refusal),
            }
        }
        Ok(())
    }

    fn handle(&mut self, line: &str) -> Next {
        if !line.chars().any(|c| c.is_control() && c != '\t') {
            self.history.add(line);
        }
        match plan(line, &self.config.commands) {
            Ok(Action::Nothing) => {}
            Ok(Action::Builtin(builtin)) => return self.builtin(builtin),
            Ok(Action::Run(invocation)) => {
                let _ = std::io::stdout().flush();
                let ended = run::run(&invocation, &self.env);
                // A command may leave the terminal raw or silent: the message, and the
                // next command, get the terminal as the shell found it.
                if let Some(terminal) = &self.terminal {
                    let _ = terminal.restore();
                }
                if let Some(message) = run::describe(&invocation, &ended) {
                    eprintln!("{message}");
                }
            }
            Err(refusal) => refused(&refusal),
        }
        Next::Continue
    }

    fn builtin(&self, builtin: Builtin) -> Next {
        let mut out = std::io::stdout().lock();
        let _ = match builtin {
            Builtin::Exit => return Next::Exit,
            Builtin::Clear => out.write_all(b"\x1b[H\x1b[2J\x1b[3J"),
            Builtin::History => self
                .history
                .iter()
                .enumerate()
                .try_for_each(|(i, line)| writeln!(out, "{:>5}  {line}", i + 1)),
            Builtin::Help => writeln!(out, "{}", help(&self.config)),
        };
        let _ = out.flush();
        Next::Continue
    }
}

fn help(config: &Config) -> String {
    let commands: Vec<&str> = config.commands.keys().map(String::as_str).collect();
    let builtins: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
    format!(
        "Commands: {}\nBuilt-ins: {}\n\
         One command per line: words are separated by spaces; '...' and \"...\" group words,\n\
         a backslash escapes one character. Nothing expands: no variables, globs or ~.\n\
         Lines with ; | & > < ` $ (outside single quotes) or control characters are refused.",
        if commands.is_empty() {
            "(none)".to_string()
        } else {
            commands.join(" ")
        },
        builtins.join(" ")
    )
}

fn refused(refusal: &Refusal) {
    eprintln!("refused: {refusal}");
}
