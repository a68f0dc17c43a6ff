//! Lines from input that is not a terminal (a pipe, a file), with the limits of the line
//! editor. Invariant: memory stays bounded by [`MAX_LINE_BYTES`] whatever the input; a
//! longer line is consumed to its end and refused whole, never split into pieces.

use std::io::BufRead;

use crate::parse::{check_bytes, Refusal, MAX_LINE_BYTES};

/// The next line without its `\n`, or why it is refused; `None` at the end of the input.
pub fn next(input: &mut impl BufRead) -> std::io::Result<Option<Result<String, Refusal>>> {
    let mut line = Vec::new();
    let mut too_long = false;
    let mut read_any = false;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        read_any = true;
        let (chunk, ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        if !too_long {
            if line.len() + chunk.len() > MAX_LINE_BYTES {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(ends);
        input.consume(used);
        if ends {
            break;
        }
    }
    if !read_any {
        return Ok(None);
    }
    if too_long {
        return Ok(Some(Err(Refusal::TooLong)));
    }
    Ok(Some(check_bytes(&line).map(str::to_string)))
}

#[cfg(test)]
mod tests;
