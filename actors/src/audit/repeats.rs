//! Rejections that need no session (refused upgrades, bad auth frames, rate limits) are
//! audited in aggregate: the first of each event, kind and client address in a window is
//! written in full, the rest only counted, and one line per key gives the count when the
//! window closes. Invariant: lines per window are bounded by `MAX_KEYS`, whatever the
//! request rate or the number of addresses.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::Value;

use super::AuditEvent;

/// Distinct (event, kind, client) keys tracked per window; rejections past it are counted
/// per event and kind only.
pub const MAX_KEYS: usize = 1024;

type Key = (&'static str, String, Option<IpAddr>);

#[derive(Default)]
pub struct Repeats {
    /// Rejections of each key since its first one was written, in this window.
    counts: HashMap<Key, u64>,
    /// Rejections of keys beyond `MAX_KEYS`, per (event, kind).
    overflow: HashMap<(&'static str, String), u64>,
}

impl Repeats {
    /// Whether `ev` is the first of its key in this window (then it is written in full).
    pub fn first(&mut self, ev: &AuditEvent) -> bool {
        let kind = match ev.fields.get("kind") {
            Some(Value::String(kind)) => kind.clone(),
            _ => String::new(),
        };
        let key = (ev.event, kind, ev.client.map(crate::ratelimit::limit_key));
        if let Some(n) = self.counts.get_mut(&key) {
            *n += 1;
            return false;
        }
        if self.counts.len() >= MAX_KEYS {
            *self.overflow.entry((key.0, key.1)).or_default() += 1;
            return false;
        }
        self.counts.insert(key, 0);
        true
    }

    /// Closes the window: one line for every key that repeated, and one per event and kind
    /// for the keys that did not fit. Every key is forgotten, so the next rejection of it is
    /// written in full again.
    pub fn close_window(&mut self, window_secs: u64) -> Vec<AuditEvent> {
        let mut lines = Vec::new();
        for ((event, kind, client), n) in self.counts.drain() {
            if n == 0 {
                continue;
            }
            let mut line = AuditEvent::new(event)
                .field("kind", &kind)
                .field("repeated", n)
                .field("window_seconds", window_secs);
            line.client = client;
            lines.push(line);
        }
        for ((event, kind), n) in self.overflow.drain() {
            lines.push(
                AuditEvent::new(event)
                    .field("kind", &kind)
                    .field("repeated", n)
                    .field("window_seconds", window_secs)
                    .field("clients", format!("more than {MAX_KEYS}")),
            );
        }
        self.counts.shrink_to_fit();
        self.overflow.shrink_to_fit();
        lines
    }
}
