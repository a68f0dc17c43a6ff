//! The server-wide `RateLimiter` actor: connections and concurrent sessions per client
//! address, resume attempts per session id and address, failed resumes per address.
//! Invariant: its answers are synchronous (no I/O, no awaits) and its keyed state is pruned.

use std::collections::HashMap;
use std::net::IpAddr;

use actix::prelude::*;

use crate::fault::contain;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::Quota;
use uuid::Uuid;

use super::{
    at_least_one, limit_key, AddressSlots, Keyed, LimiterClock, RateLimitConfig, Rejected,
    Rejection, RetryAfter, Slot, PRUNE_INTERVAL,
};

/// Asks whether a new WebSocket upgrade from `ip` is allowed; refused: answer 429 with `Retry-After`.
#[derive(Message)]
#[rtype(result = "Result<(), RetryAfter>")]
pub struct CheckConnection {
    pub ip: IpAddr,
}

/// Why no session slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefused {
    /// Over the per-IP limit (close 4003, naming the limit).
    Limit,
    /// The limiter failed on this request: refused, but not for the limit's reason.
    Failed,
}

/// Takes one of `ip`'s concurrent session slots.
#[derive(Message)]
#[rtype(result = "Result<Slot, SlotRefused>")]
pub struct AcquireSessionSlot {
    pub ip: IpAddr,
}

/// Counts a resume attempt for `session_id`; also refuses an `ip` that failed too many resumes.
#[derive(Message)]
#[rtype(result = "Result<(), Rejected>")]
pub struct CheckResume {
    pub session_id: Uuid,
    pub ip: IpAddr,
}

/// Records a failed resume (unknown id or wrong credentials) from `ip`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResumeFailed {
    pub ip: IpAddr,
}

/// The server-wide limiter (one actor). Its answers are synchronous: no I/O, no awaits.
pub struct RateLimiter<C: Clock = DefaultClock> {
    clock: C,
    connections: Keyed<IpAddr, C>,
    /// Per session id and client address: attempts from other addresses (a guesser who
    /// knows the id) never use up the budget of the owner's address.
    resume_attempts: Keyed<(Uuid, IpAddr), C>,
    resume_failures: Keyed<IpAddr, C>,
    /// IPs over their failed-resume limit, until the limiter lets one more failure through.
    guessing_blocked: HashMap<IpAddr, C::Instant>,
    sessions: AddressSlots,
    max_sessions_per_ip: u32,
}

impl RateLimiter {
    pub fn new(cfg: RateLimitConfig) -> Self {
        Self::with_clock(cfg, DefaultClock::default())
    }
}

impl<C: LimiterClock> RateLimiter<C> {
    pub fn with_clock(cfg: RateLimitConfig, clock: C) -> Self {
        let per_minute = |n: u32, burst: u32| {
            Quota::per_minute(at_least_one(n)).allow_burst(at_least_one(burst))
        };
        RateLimiter {
            connections: governor::RateLimiter::hashmap_with_clock(
                per_minute(cfg.connections_per_minute, cfg.connection_burst),
                clock.clone(),
            ),
            resume_attempts: governor::RateLimiter::hashmap_with_clock(
                per_minute(
                    cfg.resume_attempts_per_minute,
                    cfg.resume_attempts_per_minute,
                ),
                clock.clone(),
            ),
            resume_failures: governor::RateLimiter::hashmap_with_clock(
                per_minute(
                    cfg.resume_failures_per_minute_per_ip,
                    cfg.resume_failures_per_minute_per_ip,
                ),
                clock.clone(),
            ),
            clock,
            guessing_blocked: HashMap::new(),
            sessions: AddressSlots::default(),
            max_sessions_per_ip: cfg.max_sessions_per_ip,
        }
    }

    pub fn check_connection(&mut self, ip: IpAddr) -> Result<(), RetryAfter> {
        let ip = limit_key(ip);
        self.connections
            .check_key(&ip)
            .map_err(|not_until| RetryAfter::from_wait(not_until.wait_time_from(self.clock.now())))
    }

    pub fn acquire_session_slot(&mut self, ip: IpAddr) -> Option<Slot> {
        self.sessions.acquire(ip, self.max_sessions_per_ip)
    }

    pub fn check_resume(&mut self, session_id: Uuid, ip: IpAddr) -> Result<(), Rejected> {
        let ip = limit_key(ip);
        let now = self.clock.now();
        // Checked first so a guessing IP does not use up the attempts of the id it names.
        if let Some(&until) = self.guessing_blocked.get(&ip) {
            if until > now {
                return Err(Rejected {
                    kind: Rejection::ResumeGuessing,
                    retry_after: RetryAfter::from_wait(until.duration_since(now).into()),
                });
            }
            self.guessing_blocked.remove(&ip);
        }
        self.resume_attempts
            .check_key(&(session_id, ip))
            .map_err(|not_until| Rejected {
                kind: Rejection::ResumeAttempts,
                retry_after: RetryAfter::from_wait(not_until.wait_time_from(now)),
            })
    }

    pub fn resume_failed(&mut self, ip: IpAddr) {
        let ip = limit_key(ip);
        // governor cannot peek without consuming, so the refusal is remembered here.
        if let Err(not_until) = self.resume_failures.check_key(&ip) {
            self.guessing_blocked
                .insert(ip, not_until.earliest_possible());
        }
    }

    /// Sessions currently holding a slot for `ip`.
    pub fn sessions_of(&self, ip: IpAddr) -> u32 {
        self.sessions.held_by(ip)
    }

    /// Keys held across all per-IP and per-id state (for a gauge, and to check it stays bounded).
    pub fn tracked_keys(&self) -> usize {
        self.connections.len()
            + self.resume_attempts.len()
            + self.resume_failures.len()
            + self.guessing_blocked.len()
            + self.sessions.addresses()
    }

    /// Forgets keys whose state equals a fresh one and gives the freed capacity back.
    pub fn prune(&mut self) {
        self.connections.retain_recent();
        self.connections.shrink_to_fit();
        self.resume_attempts.retain_recent();
        self.resume_attempts.shrink_to_fit();
        self.resume_failures.retain_recent();
        self.resume_failures.shrink_to_fit();
        let now = self.clock.now();
        self.guessing_blocked.retain(|_, until| *until > now);
        self.guessing_blocked.shrink_to_fit();
        self.sessions.shrink_to_fit();
    }
}

impl<C: LimiterClock> Actor for RateLimiter<C> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(PRUNE_INTERVAL, |limiter, _| limiter.prune());
    }
}

impl<C: LimiterClock> Handler<CheckConnection> for RateLimiter<C> {
    type Result = Result<(), RetryAfter>;

    fn handle(&mut self, msg: CheckConnection, _: &mut Self::Context) -> Self::Result {
        // A failure refuses the one request (fail closed), as over the limit.
        contain("limiter::connection", || {
            fail::fail_point!("limiter::connection");
            self.check_connection(msg.ip)
        })
        .unwrap_or(Err(RetryAfter(std::time::Duration::from_secs(1))))
    }
}

impl<C: LimiterClock> Handler<AcquireSessionSlot> for RateLimiter<C> {
    type Result = Result<Slot, SlotRefused>;

    fn handle(&mut self, msg: AcquireSessionSlot, _: &mut Self::Context) -> Self::Result {
        contain("limiter::session_slot", || {
            fail::fail_point!("limiter::session_slot");
            self.acquire_session_slot(msg.ip)
        })
        .ok_or(SlotRefused::Failed)?
        .ok_or(SlotRefused::Limit)
    }
}

impl<C: LimiterClock> Handler<CheckResume> for RateLimiter<C> {
    type Result = Result<(), Rejected>;

    fn handle(&mut self, msg: CheckResume, _: &mut Self::Context) -> Self::Result {
        contain("limiter::resume", || {
            fail::fail_point!("limiter::resume");
            self.check_resume(msg.session_id, msg.ip)
        })
        .unwrap_or(Err(Rejected {
            kind: Rejection::Internal,
            retry_after: RetryAfter(std::time::Duration::from_secs(1)),
        }))
    }
}

impl<C: LimiterClock> Handler<ResumeFailed> for RateLimiter<C> {
    type Result = ();

    fn handle(&mut self, msg: ResumeFailed, _: &mut Self::Context) {
        contain("limiter::resume_failed", || {
            fail::fail_point!("limiter::resume_failed");
            self.resume_failed(msg.ip)
        });
    }
}
