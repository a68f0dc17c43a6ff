//! Open client connections, counted at accept time per client address and in total, so that
//! idle keep-alive sockets cannot use up the process's file descriptors. Invariant: a
//! connection counts from accept until its socket is dropped (the guard lives in the
//! connection's data), and one over a cap is answered and shut before any request is read.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use termcell_actors::ratelimit::{AddressSlots, Slot};
use termcell_actors::rejection::Rejection;

/// File descriptors kept free of client connections: the engine socket pool, the audit log,
/// the listeners, and whatever else the process opens.
pub const RESERVED_FDS: usize = 128;
/// Descriptors each session can hold besides its WebSocket: its raw TTY stream on the
/// engine socket, and engine calls in flight for it.
pub const FDS_PER_SESSION: usize = 3;

/// Which cap refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    PerAddress,
    Total,
}

impl Over {
    pub fn kind(self) -> Rejection {
        match self {
            Over::PerAddress => Rejection::ConnectionsPerIp,
            Over::Total => Rejection::ConnectionsTotal,
        }
    }

    /// A complete HTTP response, written straight to the socket before it is shut.
    pub fn response(self) -> Vec<u8> {
        let (status, extra, body) = match self {
            Over::PerAddress => (
                "429 Too Many Requests",
                "",
                "Too many open connections from your address: close some\n",
            ),
            Over::Total => (
                "503 Service Unavailable",
                "retry-after: 5\r\n",
                "The server is at its connection limit: retry soon\n",
            ),
        };
        format!(
            "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-type: text/plain\r\n{extra}\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// Counts open connections against the per-address and total caps.
#[derive(Clone)]
pub struct ConnectionGate {
    open: Arc<AtomicUsize>,
    by_address: AddressSlots,
    per_ip: u32,
    total: usize,
    /// Proxies carry many clients: they count only against the total.
    trusted: Arc<Vec<IpAddr>>,
}

impl ConnectionGate {
    pub fn new(per_ip: u32, total: usize, trusted: Vec<IpAddr>) -> ConnectionGate {
        ConnectionGate {
            open: Arc::default(),
            by_address: AddressSlots::default(),
            per_ip,
            total,
            trusted: Arc::new(trusted),
        }
    }

    pub fn total_cap(&self) -> usize {
        self.total
    }

    /// Admits a connection from `peer`, or says which cap it is over.
    pub fn admit(&self, peer: IpAddr) -> Result<ConnectionGuard, Over> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.total).then_some(n + 1)
            })
            .map_err(|_| Over::Total)?;
        let mut guard = ConnectionGuard {
            open: Arc::clone(&self.open),
            _slot: None,
        };
        if !self.trusted.contains(&peer) {
            // A refusal drops the guard, which gives the place in the total back.
            guard._slot = Some(
                self.by_address
                    .acquire(peer, self.per_ip)
                    .ok_or(Over::PerAddress)?,
            );
        }
        Ok(guard)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// One admitted connection; dropping it gives its places back.
pub struct ConnectionGuard {
    open: Arc<AtomicUsize>,
    _slot: Option<Slot>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The total connection cap for a process allowed `fd_limit` descriptors and
/// `max_sessions` sessions: what is left after the reserve.
pub fn total_for_fd_limit(fd_limit: usize, max_sessions: usize) -> usize {
    fd_limit
        .saturating_sub(RESERVED_FDS + FDS_PER_SESSION * max_sessions)
        .max(16)
}

/// The total connection cap: `configured`, or what the file descriptor limit leaves after
/// the reserve for `max_sessions` sessions, whichever is lower (a higher setting is lowered,
/// with a warning: past it the engine socket and the audit log could not be opened).
pub fn total_cap(configured: Option<usize>, max_sessions: usize) -> usize {
    let fd_limit = fd_limit();
    let derived = fd_limit
        .map(|n| total_for_fd_limit(n, max_sessions))
        .unwrap_or(4096);
    match configured {
        Some(n) if n > derived => {
            log::warn!(
                "--max-connections {n} leaves too few file descriptors for the engine and the \
                 sessions (limit {fd_limit:?}): using {derived}"
            );
            derived
        }
        Some(n) => n,
        None => derived,
    }
}

/// The soft limit on open files of this process (`/proc/self/limits`), if it can be read.
pub fn fd_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_and_total_caps_and_places_come_back_on_drop() {
        let gate = ConnectionGate::new(2, 3, vec![ip("10.0.0.9")]);
        let a1 = gate.admit(ip("192.0.2.1")).unwrap();
        let _a2 = gate.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(gate.admit(ip("192.0.2.1")).err(), Some(Over::PerAddress));
        let _b = gate.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(gate.admit(ip("192.0.2.3")).err(), Some(Over::Total));
        assert_eq!(gate.open(), 3);
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _a3 = gate.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(gate.by_address.addresses(), 2);
    }

    #[test]
    fn trusted_proxies_count_only_against_the_total_and_ipv6_by_its_64() {
        let gate = ConnectionGate::new(1, 10, vec![ip("10.0.0.9")]);
        let _p: Vec<_> = (0..5)
            .map(|_| gate.admit(ip("10.0.0.9")).unwrap())
            .collect();
        let _v6 = gate.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            gate.admit(ip("2001:db8:1:2::ffff")).err(),
            Some(Over::PerAddress)
        );
        drop(_p);
        assert_eq!(gate.open(), 1);
    }

    #[test]
    fn the_total_leaves_a_reserve_for_sessions_and_the_engine() {
        assert_eq!(total_for_fd_limit(20_000, 50), 20_000 - 128 - 150);
        assert_eq!(total_for_fd_limit(100, 50), 16);
        assert!(fd_limit().is_some_and(|n| n > 0));
    }

    #[test]
    fn refusal_responses_are_complete_http() {
        for over in [Over::PerAddress, Over::Total] {
            let response = over.response();
            let text = std::str::from_utf8(&response).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(body.len(), len, "{over:?}");
        }
    }
}
