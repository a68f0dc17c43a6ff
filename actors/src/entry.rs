//! The hand-over to the entry program (sandbox/entry): wait until it says its terminal no
//! longer echoes, then write the session's environment line. Invariant: the line is
//! written only after the ready marker, and the marker never reaches a client.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use termcell_entry::line::encode as encode_line;
use termcell_entry::READY;

/// How long a cold sandbox's entry program waits for its line (written as soon as it is
/// ready), and how long the server waits for it to be ready.
pub const COLD_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("the entry program was not ready within {0} s")]
    NotReady(u64),
    #[error("the sandbox ended before its entry program was ready")]
    Ended,
    #[error("the sandbox printed something other than the entry program's ready marker")]
    Unexpected,
    #[error("writing the environment line failed: {0}")]
    Write(String),
}

/// Reads the TTY until the entry program's ready marker (which must be the first output);
/// returns what followed it. `initial`: output that came with the attach.
pub async fn await_ready(
    reader: &mut (dyn AsyncRead + Unpin + Send),
    initial: Bytes,
    timeout: Duration,
) -> Result<Bytes, EntryError> {
    let mut seen = BytesMut::from(&initial[..]);
    let wait = async {
        loop {
            let n = seen.len().min(READY.len());
            if seen[..n] != READY[..n] {
                return Err(EntryError::Unexpected);
            }
            if n == READY.len() {
                seen.advance(READY.len());
                return Ok(seen.split().freeze());
            }
            seen.reserve(256);
            match reader.read_buf(&mut seen).await {
                Ok(0) | Err(_) => return Err(EntryError::Ended),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| EntryError::NotReady(timeout.as_secs()))?
}

/// Writes the environment line to a ready entry program.
pub async fn write_line(
    writer: &mut (dyn AsyncWrite + Unpin + Send),
    line: &[u8],
) -> Result<(), EntryError> {
    let write = async {
        writer.write_all(line).await?;
        writer.flush().await
    };
    write.await.map_err(|e| EntryError::Write(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_marker_is_removed_and_what_follows_is_kept() {
        let (mut shell, mut server) = tokio::io::duplex(64);
        let first = READY[..5].to_vec();
        shell.write_all(&READY[5..]).await.unwrap();
        shell.write_all(b"$ ").await.unwrap();
        let rest = await_ready(&mut server, Bytes::from(first), COLD_TIMEOUT)
            .await
            .unwrap();
        assert!(b"$ ".starts_with(&rest));
    }

    #[tokio::test]
    async fn other_output_silence_or_an_end_is_refused() {
        let (_shell, mut server) = tokio::io::duplex(64);
        assert_eq!(
            await_ready(&mut server, Bytes::from_static(b"/ $ "), COLD_TIMEOUT).await,
            Err(EntryError::Unexpected)
        );
        assert_eq!(
            await_ready(&mut server, Bytes::new(), Duration::from_millis(50)).await,
            Err(EntryError::NotReady(0))
        );
        let (shell, mut server) = tokio::io::duplex(64);
        drop(shell);
        assert_eq!(
            await_ready(&mut server, Bytes::from_static(&READY[..3]), COLD_TIMEOUT).await,
            Err(EntryError::Ended)
        );
    }
}
