//! The grammar of a command line: words separated by spaces or tabs; `'…'` and `"…"`
//! group; `\` escapes the next character (outside single quotes); nothing else is special
//! and nothing expands. Invariant: a line is either refused, naming the first offending
//! character and its position, or split into exactly the words that were typed, minus the
//! quoting. A line that would mean something else to a real shell (operators, redirections,
//! substitutions, variables) is refused rather than passed on literally.

/// The longest line accepted, in bytes.
pub const MAX_LINE_BYTES: usize = 4096;

/// Why a line does not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{} at position {position}: {why}", describe(*ch))]
    Forbidden {
        ch: char,
        /// 1-based, in characters.
        position: usize,
        why: &'static str,
    },
    #[error("unterminated {quote} quote (opened at position {position})")]
    UnterminatedQuote { quote: char, position: usize },
    #[error("a backslash at the end of the line (position {position}) escapes nothing")]
    TrailingBackslash { position: usize },
    #[error("the line is longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    #[error("the line is not valid UTF-8 (byte 0x{byte:02X} at byte {offset})")]
    InvalidUtf8 {
        byte: u8,
        /// 1-based, in bytes.
        offset: usize,
    },
    #[error("{name}: not an allowed command (help lists them)")]
    NotAllowed { name: String },
    #[error("{name}: commands are run by their name, never by a path (help lists them)")]
    Path { name: String },
    #[error("{name}: variables cannot be set here (help lists the commands)")]
    Assignment { name: String },
    #[error("an empty command name")]
    EmptyName,
    #[error("{name} takes no arguments")]
    BuiltinArguments { name: &'static str },
}

const OPERATORS: &str = "one command per line: ';' does not chain commands";
const PIPE: &str = "pipes are not supported";
const BACKGROUND: &str = "'&' (background jobs, &&) is not supported";
const REDIRECTION: &str = "redirections are not supported";
const SUBSTITUTION: &str = "command substitution is not supported";
const VARIABLE: &str =
    "variables are not expanded (put it in single quotes to pass a '$' as it is)";
const CONTROL: &str = "control characters are not accepted";

/// A character as a message names it: printable ones quoted, control characters by code
/// point (and their usual name), never raw.
pub fn describe(ch: char) -> String {
    let name = match ch {
        '\0' => Some("NUL"),
        '\x07' => Some("BEL"),
        '\x08' => Some("BS"),
        '\n' => Some("LF"),
        '\x0b' => Some("VT"),
        '\x0c' => Some("FF"),
        '\r' => Some("CR"),
        '\x1b' => Some("ESC"),
        '\x7f' => Some("DEL"),
        _ => None,
    };
    match (ch.is_control(), name) {
        (true, Some(name)) => format!("control character U+{:04X} ({name})", ch as u32),
        (true, None) => format!("control character U+{:04X}", ch as u32),
        (false, _) => format!("'{ch}'"),
    }
}

/// The refusals that hold wherever the character is, quoted, escaped or not: control
/// characters other than TAB, the shell's operators and the start of a substitution.
pub fn forbidden_anywhere(ch: char, next: Option<char>, position: usize) -> Result<(), Refusal> {
    let why = match ch {
        '\t' => return Ok(()),
        c if c.is_control() => CONTROL,
        ';' => OPERATORS,
        '|' => PIPE,
        '&' => BACKGROUND,
        '>' | '<' => REDIRECTION,
        '`' => SUBSTITUTION,
        '$' if next == Some('(') => SUBSTITUTION,
        _ => return Ok(()),
    };
    Err(Refusal::Forbidden { ch, position, why })
}

/// The line's bytes as text: refused when longer than [`MAX_LINE_BYTES`] or not UTF-8.
pub fn check_bytes(bytes: &[u8]) -> Result<&str, Refusal> {
    if bytes.len() > MAX_LINE_BYTES {
        return Err(Refusal::TooLong);
    }
    std::str::from_utf8(bytes).map_err(|e| Refusal::InvalidUtf8 {
        byte: bytes[e.valid_up_to()],
        offset: e.valid_up_to() + 1,
    })
}

/// Splits a line into words, or says why it is refused.
pub fn words(line: &str) -> Result<Vec<String>, Refusal> {
    if line.len() > MAX_LINE_BYTES {
        return Err(Refusal::TooLong);
    }
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    // The open quote and where it was opened.
    let mut quote: Option<(char, usize)> = None;
    let mut i = 0;
    while i < chars.len() {
        let (ch, position) = (chars[i], i + 1);
        let next = chars.get(i + 1).copied();
        forbidden_anywhere(ch, next, position)?;
        match (quote, ch) {
            (Some(('\'', _)), '\'') | (Some(('"', _)), '"') => quote = None,
            (Some(('\'', _)), _) => word.push(ch),
            (_, '\\') => {
                let Some(escaped) = next else {
                    return Err(match quote {
                        Some((quote, position)) => Refusal::UnterminatedQuote { quote, position },
                        None => Refusal::TrailingBackslash { position },
                    });
                };
                forbidden_anywhere(escaped, chars.get(i + 2).copied(), position + 1)?;
                word.push(escaped);
                in_word = true;
                i += 1;
            }
            (_, '$') => {
                return Err(Refusal::Forbidden {
                    ch,
                    position,
                    why: VARIABLE,
                })
            }
            (Some(_), _) => word.push(ch),
            (None, ' ' | '\t') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '\'' | '"') => {
                quote = Some((ch, position));
                in_word = true;
            }
            (None, _) => {
                word.push(ch);
                in_word = true;
            }
        }
        i += 1;
    }
    if let Some((quote, position)) = quote {
        return Err(Refusal::UnterminatedQuote { quote, position });
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
pub(crate) mod tests;
