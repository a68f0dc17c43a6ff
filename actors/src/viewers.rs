//! Live read-only views of a session: the operators watching it. The session hands each
//! viewer the screen as it is now, then every output chunk and resize, without waiting:
//! a viewer whose mailbox is full (its socket does not take what it is sent) is dropped.
//! Invariant: a viewer never slows its session, never sends it anything but its leaving,
//! and holds at most `VIEWER_MAILBOX` messages.

use std::net::IpAddr;
use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use uuid::Uuid;

use crate::screen::Size;

/// Messages a viewer may have waiting; one more and it is dropped as too slow.
pub const VIEWER_MAILBOX: usize = 64;

/// What a session tells a viewer.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum ToViewer {
    /// The view starts: the session and its terminal size, then the screen as output.
    Watching {
        session_id: Uuid,
        size: Size,
    },
    Output(Bytes),
    Resize(Size),
    /// The session ended (its end cause).
    Ended(&'static str),
    /// The server dropped the view (`slow`: it did not take output fast enough).
    Dropped(&'static str),
}

/// A viewer as the session knows it.
#[derive(Clone)]
pub struct ViewerHandle {
    pub id: u64,
    pub recipient: Recipient<ToViewer>,
    pub ip: IpAddr,
    /// The operator's name as they gave it (optional; cut to a bounded length).
    pub operator: Option<String>,
}

/// Ask a session to be watched.
#[derive(Message)]
#[rtype(result = "Result<(), WatchRefused>")]
pub struct Watch(pub ViewerHandle);

/// A viewer left (its socket closed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unwatch {
    pub viewer_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WatchRefused {
    #[error("the session has ended")]
    Ended,
    #[error("the session has as many viewers as it may ({0})")]
    TooMany(usize),
}

/// A session's viewers, at most `max`.
pub struct Viewers {
    max: usize,
    list: Vec<(ViewerHandle, Instant)>,
}

impl Viewers {
    pub fn new(max: usize) -> Viewers {
        Viewers {
            max,
            list: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Takes a viewer that was already sent its first messages.
    pub fn add(&mut self, viewer: ViewerHandle) -> Result<(), WatchRefused> {
        if self.list.len() >= self.max {
            return Err(WatchRefused::TooMany(self.max));
        }
        self.list.push((viewer, Instant::now()));
        Ok(())
    }

    pub fn full(&self) -> Option<WatchRefused> {
        (self.list.len() >= self.max).then_some(WatchRefused::TooMany(self.max))
    }

    /// Removes a viewer; with it, how long it watched.
    pub fn remove(&mut self, id: u64) -> Option<(ViewerHandle, Instant)> {
        let at = self.list.iter().position(|(v, _)| v.id == id)?;
        Some(self.list.swap_remove(at))
    }

    /// Sends every viewer the message without waiting; those that cannot take it are
    /// removed, told so, and returned.
    pub fn send(&mut self, msg: &ToViewer) -> Vec<(ViewerHandle, Instant)> {
        let mut dropped = Vec::new();
        let mut i = 0;
        while i < self.list.len() {
            match self.list[i].0.recipient.try_send(msg.clone()) {
                Ok(()) => i += 1,
                Err(SendError::Full(_)) => {
                    let (viewer, since) = self.list.swap_remove(i);
                    // Past the mailbox's capacity on purpose: one message to say why.
                    viewer.recipient.do_send(ToViewer::Dropped("slow"));
                    dropped.push((viewer, since));
                }
                // Gone already: its `Unwatch` is on the way.
                Err(SendError::Closed(_)) => i += 1,
            }
        }
        dropped
    }

    /// Tells every viewer the session ended and forgets them.
    pub fn end(&mut self, cause: &'static str) -> Vec<(ViewerHandle, Instant)> {
        for (viewer, _) in &self.list {
            viewer.recipient.do_send(ToViewer::Ended(cause));
        }
        std::mem::take(&mut self.list)
    }
}

#[cfg(test)]
mod tests;
