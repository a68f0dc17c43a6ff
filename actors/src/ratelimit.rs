//! Rate limits: the `RateLimiter` actor answers per-IP and per-resume questions, and each
//! session owns a `SessionLimiter` for its input. Keyed state is pruned so memory tracks only recent activity.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use parking_lot::Mutex;

/// How often the keyed limiters drop keys whose state is indistinguishable from a fresh one.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

type Keyed<K, C> =
    governor::RateLimiter<K, HashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Direct<C> =
    governor::RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The time source of the limiters: governor's monotonic clock in production, a fake in tests.
pub trait LimiterClock: Clock<Instant: Unpin> + Clone + Unpin + Send + 'static {}
impl<C: Clock<Instant: Unpin> + Clone + Unpin + Send + 'static> LimiterClock for C {}

/// Every limit, with the units of the original server's settings where it had one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// New WebSocket upgrades per IP, replenished over a minute.
    pub connections_per_minute: u32,
    pub connection_burst: u32,
    /// `MAX_CONCURRENT_CONNECTIONS`: live sessions per IP.
    pub max_sessions_per_ip: u32,
    /// `RESUME_MAX_ATTEMPTS`: resume attempts per session id and client address per minute.
    pub resume_attempts_per_minute: u32,
    /// Failed resumes (unknown id, wrong credentials) per IP per minute before the IP is refused.
    pub resume_failures_per_minute_per_ip: u32,
    /// `MAX_COMMANDS_PER_MINUTE`: Enter presses per session per minute.
    pub commands_per_minute: u32,
    /// Enter presses a session may make at once before the per-minute rate applies, so that
    /// a pasted script of that many lines runs whole.
    pub command_burst: u32,
    pub input_bytes_per_second: u32,
    pub input_burst_bytes: u32,
    pub resizes_per_second: u32,
    pub resize_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            connections_per_minute: 30,
            connection_burst: 10,
            max_sessions_per_ip: 5,
            resume_attempts_per_minute: 3,
            resume_failures_per_minute_per_ip: 10,
            commands_per_minute: 30,
            command_burst: 100,
            input_bytes_per_second: 64 * 1024,
            input_burst_bytes: 256 * 1024,
            resizes_per_second: 10,
            resize_burst: 20,
        }
    }
}

pub use crate::rejection::Rejection;

/// How long a refused client should wait: whole seconds, at least one (the `Retry-After` value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    fn from_wait(wait: Duration) -> Self {
        RetryAfter(Duration::from_secs(whole_seconds(wait)))
    }

    /// The value of the `Retry-After` header.
    pub fn secs(self) -> u64 {
        self.0.as_secs()
    }
}

/// A refused resume: which limit, and when a new attempt can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} rate limit exceeded, retry in {}s", retry_after.secs())]
pub struct Rejected {
    pub kind: Rejection,
    pub retry_after: RetryAfter,
}

/// The address a limit counts against: IPv4 as it is, IPv6 by its /64 (one host usually
/// holds a whole /64, so per-address limits on full IPv6 addresses would not limit it).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// Rounds a wait up to whole seconds, at least one: "wait 0s" would invite an immediate retry.
fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Live things (sessions, connections) per client address (by `limit_key`) against a cap.
/// Each is held by a `Slot` that gives its place back when dropped, also while unwinding
/// from a panic, so a count never depends on its owner's `stopped()`.
#[derive(Clone, Default)]
pub struct AddressSlots {
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl AddressSlots {
    /// A slot for `ip`, unless it already holds `max`.
    pub fn acquire(&self, ip: IpAddr, max: u32) -> Option<Slot> {
        let ip = limit_key(ip);
        let mut counts = self.counts.lock();
        let live = counts.entry(ip).or_insert(0);
        if *live >= max {
            if *live == 0 {
                counts.remove(&ip);
            }
            return None;
        }
        *live += 1;
        Some(Slot {
            ip,
            counts: Arc::clone(&self.counts),
        })
    }

    /// Slots `ip` holds now.
    pub fn held_by(&self, ip: IpAddr) -> u32 {
        self.counts.lock().get(&limit_key(ip)).copied().unwrap_or(0)
    }

    /// Addresses holding a slot.
    pub fn addresses(&self) -> usize {
        self.counts.lock().len()
    }

    pub fn shrink_to_fit(&self) {
        self.counts.lock().shrink_to_fit();
    }
}

/// One place of an address in an `AddressSlots`; dropping it frees the place.
pub struct Slot {
    ip: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Slot {
    /// The address it counts against (`limit_key` of the client's).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").field("ip", &self.ip).finish()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

mod server;
mod session;

pub use server::*;
pub use session::*;

#[cfg(test)]
mod tests;
