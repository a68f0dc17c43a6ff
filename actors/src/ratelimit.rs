//! Rate limits: the `RateLimiter` actor answers per-IP and per-resume questions, and each
//! session owns a `SessionLimiter` for its input. Keyed state is pruned so memory tracks only recent activity.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use parking_lot::Mutex;
use uuid::Uuid;

/// How often the keyed limiters drop keys whose state is indistinguishable from a fresh one.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Refused-line strikes a session may collect per minute before it is ended.
const REFUSED_LINES_PER_MINUTE: u32 = 10;
/// Input dropped for this long without a pause of `FLOOD_PAUSE` ends the session.
const FLOOD_END_AFTER: Duration = Duration::from_secs(10);
/// A gap between drops longer than this ends a flooding streak.
const FLOOD_PAUSE: Duration = Duration::from_secs(2);

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
            input_bytes_per_second: 64 * 1024,
            input_burst_bytes: 256 * 1024,
            resizes_per_second: 10,
            resize_burst: 20,
        }
    }
}

/// Which limit refused something; `as_str` is the metrics label and audit field value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    Connections,
    Concurrency,
    ResumeAttempts,
    ResumeGuessing,
    Commands,
    InputFlood,
    Resizes,
}

impl Rejection {
    pub const ALL: [Rejection; 7] = [
        Rejection::Connections,
        Rejection::Concurrency,
        Rejection::ResumeAttempts,
        Rejection::ResumeGuessing,
        Rejection::Commands,
        Rejection::InputFlood,
        Rejection::Resizes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Connections => "connections",
            Rejection::Concurrency => "concurrency",
            Rejection::ResumeAttempts => "resume_attempts",
            Rejection::ResumeGuessing => "resume_guessing",
            Rejection::Commands => "commands",
            Rejection::InputFlood => "input_flood",
            Rejection::Resizes => "resizes",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// Asks whether a new WebSocket upgrade from `ip` is allowed; refused: answer 429 with `Retry-After`.
#[derive(Message)]
#[rtype(result = "Result<(), RetryAfter>")]
pub struct CheckConnection {
    pub ip: IpAddr,
}

/// Takes one of `ip`'s concurrent session slots; `None`: over the per-IP limit (close 4003).
#[derive(Message)]
#[rtype(result = "Option<SessionSlot>")]
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

type SlotCounts = Arc<Mutex<HashMap<IpAddr, u32>>>;

/// One live session of an IP. Dropping it frees the slot, also while unwinding from a panic,
/// so the count never depends on the owning actor's `stopped()`.
pub struct SessionSlot {
    ip: IpAddr,
    counts: SlotCounts,
}

impl SessionSlot {
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl fmt::Debug for SessionSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSlot").field("ip", &self.ip).finish()
    }
}

impl Drop for SessionSlot {
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
    sessions: SlotCounts,
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
            sessions: Arc::default(),
            max_sessions_per_ip: cfg.max_sessions_per_ip,
        }
    }

    pub fn check_connection(&mut self, ip: IpAddr) -> Result<(), RetryAfter> {
        let ip = limit_key(ip);
        self.connections
            .check_key(&ip)
            .map_err(|not_until| RetryAfter::from_wait(not_until.wait_time_from(self.clock.now())))
    }

    pub fn acquire_session_slot(&mut self, ip: IpAddr) -> Option<SessionSlot> {
        let ip = limit_key(ip);
        let mut counts = self.sessions.lock();
        let live = counts.get(&ip).copied().unwrap_or(0);
        if live >= self.max_sessions_per_ip {
            return None;
        }
        counts.insert(ip, live + 1);
        Some(SessionSlot {
            ip,
            counts: Arc::clone(&self.sessions),
        })
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
        self.sessions
            .lock()
            .get(&limit_key(ip))
            .copied()
            .unwrap_or(0)
    }

    /// Keys held across all per-IP and per-id state (for a gauge, and to check it stays bounded).
    pub fn tracked_keys(&self) -> usize {
        self.connections.len()
            + self.resume_attempts.len()
            + self.resume_failures.len()
            + self.guessing_blocked.len()
            + self.sessions.lock().len()
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
        self.sessions.lock().shrink_to_fit();
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
        self.check_connection(msg.ip)
    }
}

impl<C: LimiterClock> Handler<AcquireSessionSlot> for RateLimiter<C> {
    type Result = Option<SessionSlot>;

    fn handle(&mut self, msg: AcquireSessionSlot, _: &mut Self::Context) -> Self::Result {
        self.acquire_session_slot(msg.ip)
    }
}

impl<C: LimiterClock> Handler<CheckResume> for RateLimiter<C> {
    type Result = Result<(), Rejected>;

    fn handle(&mut self, msg: CheckResume, _: &mut Self::Context) -> Self::Result {
        self.check_resume(msg.session_id, msg.ip)
    }
}

impl<C: LimiterClock> Handler<ResumeFailed> for RateLimiter<C> {
    type Result = ();

    fn handle(&mut self, msg: ResumeFailed, _: &mut Self::Context) {
        self.resume_failed(msg.ip)
    }
}

/// What a session does with one piece of input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputDecision {
    /// The input to write to the TTY: refused Enter presses and excess bytes removed.
    pub forward: Vec<u8>,
    /// A line to show the user when something was removed.
    pub notice: Option<String>,
    /// The limit that removed something (an input flood wins over commands).
    pub limited: Option<Rejection>,
    /// Persistent abuse: end the session with 4003.
    pub end_session: bool,
}

/// The per-session limits, owned by one session actor so the data path needs no round trip.
pub struct SessionLimiter<C: Clock = DefaultClock> {
    clock: C,
    commands: Direct<C>,
    commands_per_minute: u32,
    refused_line_strikes: Direct<C>,
    input: Direct<C>,
    input_bytes_per_second: u32,
    input_burst_bytes: u32,
    /// Start and latest drop of the current flooding streak.
    flood: Option<(C::Instant, C::Instant)>,
    resizes: Direct<C>,
    /// The last forwarded byte was `\r`, and whether that press was allowed: a `\n` right
    /// after it belongs to the same press, even across two pieces of input.
    after_cr: Option<bool>,
}

impl SessionLimiter {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        Self::with_clock(cfg, DefaultClock::default())
    }
}

impl<C: LimiterClock> SessionLimiter<C> {
    pub fn with_clock(cfg: &RateLimitConfig, clock: C) -> Self {
        let commands = at_least_one(cfg.commands_per_minute);
        let bytes = at_least_one(cfg.input_bytes_per_second);
        let byte_burst = at_least_one(cfg.input_burst_bytes);
        let direct = |quota: Quota| governor::RateLimiter::direct_with_clock(quota, clock.clone());
        SessionLimiter {
            commands: direct(Quota::per_minute(commands)),
            commands_per_minute: commands.get(),
            refused_line_strikes: direct(Quota::per_minute(at_least_one(REFUSED_LINES_PER_MINUTE))),
            input: direct(Quota::per_second(bytes).allow_burst(byte_burst)),
            input_bytes_per_second: bytes.get(),
            input_burst_bytes: byte_burst.get(),
            flood: None,
            resizes: direct(
                Quota::per_second(at_least_one(cfg.resizes_per_second))
                    .allow_burst(at_least_one(cfg.resize_burst)),
            ),
            after_cr: None,
            clock,
        }
    }

    /// Applies the input byte rate, then the command rate (Enter presses), to one piece of input.
    pub fn filter_input(&mut self, input: &[u8]) -> InputDecision {
        let admitted = self.admit_bytes(input);
        let mut notices = Vec::new();
        let mut decision = InputDecision::default();

        if admitted < input.len() {
            decision.limited = Some(Rejection::InputFlood);
            decision.end_session |= self.flood_strike();
            notices.push(format!(
                "input rate limit reached ({} KiB/s): {} bytes of input dropped",
                self.input_bytes_per_second.div_ceil(1024),
                input.len() - admitted
            ));
        }

        let (forward, refused, wait) = self.filter_enter_presses(&input[..admitted]);
        if admitted < input.len() {
            // The dropped tail separates the last forwarded byte from the next input.
            self.after_cr = None;
        }
        decision.forward = forward;

        if refused > 0 {
            decision.limited.get_or_insert(Rejection::Commands);
            // One strike per piece of input, not per line: a pasted block is one act of the user.
            decision.end_session |= self.refused_line_strikes.check().is_err();
            let what = if refused == 1 {
                "line not run".to_owned()
            } else {
                format!("{refused} lines not run")
            };
            notices.push(format!(
                "command rate limit reached ({} per minute): {what}, wait {}s",
                self.commands_per_minute,
                whole_seconds(wait)
            ));
        }

        if !notices.is_empty() {
            decision.notice = Some(notices.join("; "));
        }
        decision
    }

    /// Whether a resize may go to the engine now; excess resizes are ignored by the caller.
    pub fn allow_resize(&mut self) -> bool {
        self.resizes.check().is_ok()
    }

    /// The length of the prefix of `input` the byte budget admits.
    fn admit_bytes(&mut self, input: &[u8]) -> usize {
        let len = input.len();
        if len == 0 {
            return 0;
        }
        if let Some(n) = u32::try_from(len).ok().and_then(NonZeroU32::new) {
            if let Ok(Ok(())) = self.input.check_n(n) {
                return len;
            }
        }
        // GCRA admits a batch all or nothing: take the largest prefix the budget still
        // holds in halving steps (logarithmic in the burst size).
        let mut admitted = 0usize;
        let mut step = len.min(self.input_burst_bytes as usize);
        while step > 0 {
            let n = NonZeroU32::new(step as u32).expect("step is positive and at most the burst");
            if admitted + step <= len && matches!(self.input.check_n(n), Ok(Ok(()))) {
                admitted += step;
            } else {
                step /= 2;
            }
        }
        // Do not cut a UTF-8 sequence: the TTY would see a broken character.
        // A character is at most 4 bytes, so at most 3 continuation bytes are given back.
        // The loop can admit the whole input when the bucket refilled since the first check.
        let mut cut = admitted;
        for _ in 0..3 {
            if cut == 0 || cut >= len || !is_utf8_continuation(input[cut]) {
                break;
            }
            cut -= 1;
        }
        cut
    }

    /// Records one piece of input that lost bytes; true once the flooding has gone on too long.
    fn flood_strike(&mut self) -> bool {
        let now = self.clock.now();
        let start = match self.flood {
            Some((start, last)) if Duration::from(now.duration_since(last)) <= FLOOD_PAUSE => start,
            _ => now,
        };
        self.flood = Some((start, now));
        Duration::from(now.duration_since(start)) >= FLOOD_END_AFTER
    }

    /// Removes the Enter presses over the command rate. `\r`, `\n` and `\r\n` are one press each.
    /// Returns the bytes to forward, the refused presses, and the wait until the next allowed one.
    fn filter_enter_presses(&mut self, input: &[u8]) -> (Vec<u8>, usize, Duration) {
        let mut forward = Vec::with_capacity(input.len());
        let mut refused = 0;
        let mut wait = Duration::ZERO;
        for &byte in input {
            let after_cr = self.after_cr.take();
            match (byte, after_cr) {
                (b'\n', Some(allowed)) => {
                    if allowed {
                        forward.push(byte);
                    }
                }
                (b'\r' | b'\n', _) => {
                    let allowed = match self.commands.check() {
                        Ok(()) => true,
                        Err(not_until) => {
                            refused += 1;
                            wait = not_until.wait_time_from(self.clock.now());
                            false
                        }
                    };
                    if allowed {
                        forward.push(byte);
                    }
                    if byte == b'\r' {
                        self.after_cr = Some(allowed);
                    }
                }
                _ => forward.push(byte),
            }
        }
        (forward, refused, wait)
    }
}

fn is_utf8_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
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

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn ipv6_hosts_are_limited_by_their_slash_64() {
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(limit_key(ip(7)), ip(7));
        assert_eq!(limit_key(v6("2001:db8:1:2:aaaa::1")), v6("2001:db8:1:2::"));
        assert_eq!(limit_key(v6("::ffff:192.0.2.7")), ip(7));
        let mut limiter = RateLimiter::new(RateLimitConfig {
            max_sessions_per_ip: 1,
            ..RateLimitConfig::default()
        });
        let _slot = limiter
            .acquire_session_slot(v6("2001:db8:1:2::1"))
            .expect("first session");
        assert!(
            limiter
                .acquire_session_slot(v6("2001:db8:1:2::ffff"))
                .is_none(),
            "another address of the same /64 shares the limit"
        );
        assert!(limiter
            .acquire_session_slot(v6("2001:db8:1:3::1"))
            .is_some());
    }

    fn limiter(cfg: RateLimitConfig) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (RateLimiter::with_clock(cfg, clock.clone()), clock)
    }

    fn session(cfg: RateLimitConfig) -> (SessionLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (SessionLimiter::with_clock(&cfg, clock.clone()), clock)
    }

    #[actix_rt::test]
    async fn connections_burst_then_refuse_with_retry_after_then_recover() {
        let clock = FakeRelativeClock::default();
        let cfg = RateLimitConfig {
            connections_per_minute: 6,
            connection_burst: 2,
            ..RateLimitConfig::default()
        };
        let addr = RateLimiter::with_clock(cfg, clock.clone()).start();
        let check = |ip| addr.send(CheckConnection { ip });

        assert_eq!(check(ip(1)).await.unwrap(), Ok(()));
        assert_eq!(check(ip(1)).await.unwrap(), Ok(()));
        let refused = check(ip(1)).await.unwrap().unwrap_err();
        assert_eq!(refused, RetryAfter(Duration::from_secs(10)));
        assert_eq!(refused.secs(), 10);
        // Another address has its own budget.
        assert_eq!(check(ip(2)).await.unwrap(), Ok(()));

        clock.advance(Duration::from_millis(9_500));
        assert_eq!(
            check(ip(1)).await.unwrap(),
            Err(RetryAfter(Duration::from_secs(1))),
            "a wait under a second still says 1"
        );
        clock.advance(Duration::from_millis(500));
        assert_eq!(check(ip(1)).await.unwrap(), Ok(()));
    }

    #[actix_rt::test]
    async fn session_slots_limit_concurrency_per_ip_and_release_on_drop() {
        let cfg = RateLimitConfig {
            max_sessions_per_ip: 2,
            ..RateLimitConfig::default()
        };
        let addr = RateLimiter::new(cfg).start();
        let acquire = |ip| addr.send(AcquireSessionSlot { ip });

        let first = acquire(ip(1)).await.unwrap().expect("first slot");
        let second = acquire(ip(1)).await.unwrap().expect("second slot");
        assert_eq!(first.ip(), ip(1));
        assert!(acquire(ip(1)).await.unwrap().is_none());
        let other = acquire(ip(2))
            .await
            .unwrap()
            .expect("other IP is independent");

        drop(first);
        let third = acquire(ip(1))
            .await
            .unwrap()
            .expect("a dropped slot is free again");
        assert!(acquire(ip(1)).await.unwrap().is_none());
        drop((second, third, other));
        assert!(acquire(ip(1)).await.unwrap().is_some());
    }

    #[test]
    fn slot_is_released_when_its_owner_panics_and_counts_are_removed_at_zero() {
        let (mut limiter, _) = limiter(RateLimitConfig {
            max_sessions_per_ip: 1,
            ..RateLimitConfig::default()
        });
        let slot = limiter.acquire_session_slot(ip(7)).unwrap();
        assert_eq!(limiter.sessions_of(ip(7)), 1);
        let owner = std::thread::spawn(move || {
            let _slot = slot;
            panic!("session actor panicked");
        });
        assert!(owner.join().is_err());
        assert_eq!(limiter.sessions_of(ip(7)), 0);
        assert_eq!(
            limiter.tracked_keys(),
            0,
            "an IP with no sessions is not kept"
        );
        assert!(limiter.acquire_session_slot(ip(7)).is_some());
    }

    #[test]
    fn zero_sessions_per_ip_refuses_every_slot() {
        let (mut limiter, _) = limiter(RateLimitConfig {
            max_sessions_per_ip: 0,
            ..RateLimitConfig::default()
        });
        assert!(limiter.acquire_session_slot(ip(1)).is_none());
        assert_eq!(limiter.tracked_keys(), 0);
    }

    #[actix_rt::test]
    async fn resume_attempts_are_limited_per_session_id_and_address() {
        let clock = FakeRelativeClock::default();
        let addr = RateLimiter::with_clock(RateLimitConfig::default(), clock.clone()).start();
        let (id, other_id) = (Uuid::new_v4(), Uuid::new_v4());
        let check = |session_id, from| {
            addr.send(CheckResume {
                session_id,
                ip: ip(from),
            })
        };
        // Three addresses that know the id try once each (the lockout of the owner).
        for from in 2..=4 {
            assert_eq!(check(id, from).await.unwrap(), Ok(()));
        }
        // The owner's own budget is whole.
        for _ in 0..3 {
            assert_eq!(check(id, 1).await.unwrap(), Ok(()));
        }
        let refused = check(id, 1).await.unwrap().unwrap_err();
        assert_eq!(refused.kind, Rejection::ResumeAttempts);
        assert_eq!(refused.retry_after.secs(), 20);
        assert_eq!(check(other_id, 1).await.unwrap(), Ok(()));

        clock.advance(Duration::from_secs(20));
        assert_eq!(check(id, 1).await.unwrap(), Ok(()));
    }

    #[actix_rt::test]
    async fn failed_resumes_block_the_guessing_ip_only() {
        let clock = FakeRelativeClock::default();
        let cfg = RateLimitConfig {
            resume_failures_per_minute_per_ip: 2,
            ..RateLimitConfig::default()
        };
        let addr = RateLimiter::with_clock(cfg, clock.clone()).start();
        let resume = |ip| {
            addr.send(CheckResume {
                session_id: Uuid::new_v4(),
                ip,
            })
        };

        for _ in 0..2 {
            assert_eq!(resume(ip(1)).await.unwrap(), Ok(()));
            addr.send(ResumeFailed { ip: ip(1) }).await.unwrap();
        }
        assert_eq!(
            resume(ip(1)).await.unwrap(),
            Ok(()),
            "at the limit, not over"
        );
        addr.send(ResumeFailed { ip: ip(1) }).await.unwrap();

        let refused = resume(ip(1)).await.unwrap().unwrap_err();
        assert_eq!(refused.kind, Rejection::ResumeGuessing);
        assert_eq!(refused.retry_after.secs(), 30);
        assert_eq!(resume(ip(2)).await.unwrap(), Ok(()));

        clock.advance(Duration::from_secs(30));
        assert_eq!(resume(ip(1)).await.unwrap(), Ok(()));
    }

    #[test]
    fn retain_recent_keeps_memory_bounded_after_many_ips() {
        let (mut limiter, clock) = limiter(RateLimitConfig::default());
        for i in 0..10_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i));
            limiter.check_connection(ip).unwrap();
            limiter.resume_failed(ip);
            limiter.check_resume(Uuid::new_v4(), ip).unwrap();
        }
        assert_eq!(limiter.tracked_keys(), 30_000);

        // Pruning too early keeps keys whose budget is still partly used.
        limiter.prune();
        assert_eq!(limiter.tracked_keys(), 30_000);

        clock.advance(Duration::from_secs(61));
        limiter.prune();
        assert_eq!(limiter.tracked_keys(), 0);
        // The budget after pruning is the fresh one.
        let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000));
        for _ in 0..10 {
            limiter.check_connection(ip).unwrap();
        }
        assert!(limiter.check_connection(ip).is_err());
    }

    #[test]
    fn enter_presses_count_cr_lf_and_crlf_as_one_each() {
        let (mut limiter, _) = session(RateLimitConfig {
            commands_per_minute: 3,
            ..RateLimitConfig::default()
        });
        let d = limiter.filter_input(b"a\r\nb\nc\rd\r");
        assert_eq!(d.forward, b"a\r\nb\nc\rd");
        assert_eq!(d.limited, Some(Rejection::Commands));
        assert_eq!(
            d.notice.as_deref(),
            Some("command rate limit reached (3 per minute): line not run, wait 20s")
        );
        assert!(!d.end_session);
    }

    #[test]
    fn crlf_split_across_inputs_is_one_press_and_refused_whole() {
        let (mut limiter, clock) = session(RateLimitConfig {
            commands_per_minute: 1,
            ..RateLimitConfig::default()
        });
        assert_eq!(limiter.filter_input(b"ls\r").forward, b"ls\r");
        let d = limiter.filter_input(b"\nxy");
        assert_eq!(d.forward, b"\nxy", "the \\n completes the allowed press");
        assert_eq!(d.notice, None);

        let d = limiter.filter_input(b"pwd\r");
        assert_eq!(d.forward, b"pwd");
        assert_eq!(
            d.notice.as_deref(),
            Some("command rate limit reached (1 per minute): line not run, wait 60s")
        );
        assert_eq!(
            limiter.filter_input(b"\n").forward,
            b"",
            "rest of a refused press"
        );

        clock.advance(Duration::from_secs(60));
        let d = limiter.filter_input(b"\r\n");
        assert_eq!(d.forward, b"\r\n");
        assert_eq!(d.notice, None);
    }

    #[test]
    fn a_paste_of_many_lines_is_cut_at_the_limit_with_one_notice() {
        let (mut limiter, _) = session(RateLimitConfig {
            commands_per_minute: 2,
            ..RateLimitConfig::default()
        });
        let d = limiter.filter_input(b"1\n2\n3\n4\n");
        assert_eq!(d.forward, b"1\n2\n34");
        assert_eq!(
            d.notice.as_deref(),
            Some("command rate limit reached (2 per minute): 2 lines not run, wait 30s")
        );
        assert!(!d.end_session);
    }

    #[test]
    fn persistent_refused_lines_end_the_session() {
        let (mut limiter, clock) = session(RateLimitConfig {
            commands_per_minute: 1,
            ..RateLimitConfig::default()
        });
        assert!(limiter.filter_input(b"\r").notice.is_none());
        for strike in 1..=10 {
            let d = limiter.filter_input(b"x\r");
            assert_eq!(d.forward, b"x");
            assert!(!d.end_session, "strike {strike} is still tolerated");
            clock.advance(Duration::from_millis(100));
        }
        let d = limiter.filter_input(b"x\r");
        assert!(d.end_session);
        assert_eq!(d.limited, Some(Rejection::Commands));
    }

    #[test]
    fn refused_lines_spread_over_time_do_not_end_the_session() {
        let (mut limiter, clock) = session(RateLimitConfig {
            commands_per_minute: 1,
            ..RateLimitConfig::default()
        });
        limiter.filter_input(b"\r");
        for _ in 0..30 {
            clock.advance(Duration::from_secs(7));
            let d = limiter.filter_input(b"\r");
            assert!(!d.end_session);
        }
    }

    fn flood_cfg() -> RateLimitConfig {
        RateLimitConfig {
            input_bytes_per_second: 1_000,
            input_burst_bytes: 4_000,
            ..RateLimitConfig::default()
        }
    }

    #[test]
    fn paste_flood_forwards_the_burst_and_drops_the_rest_with_a_notice() {
        let (mut limiter, clock) = session(flood_cfg());
        let d = limiter.filter_input(&[b'a'; 10_000]);
        assert_eq!(d.forward.len(), 4_000);
        assert_eq!(d.limited, Some(Rejection::InputFlood));
        assert_eq!(
            d.notice.as_deref(),
            Some("input rate limit reached (1 KiB/s): 6000 bytes of input dropped")
        );
        assert!(!d.end_session, "one large paste is not persistent flooding");

        assert!(limiter.filter_input(b"more").forward.is_empty());
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.filter_input(&[b'b'; 3_000]).forward.len(), 1_000);
        clock.advance(Duration::from_secs(5));
        let d = limiter.filter_input(b"ls\r");
        assert_eq!(d.forward, b"ls\r");
        assert_eq!(d.notice, None);
    }

    #[test]
    fn dropped_tail_is_not_counted_as_enter_presses() {
        let (mut limiter, clock) = session(RateLimitConfig {
            commands_per_minute: 1,
            ..flood_cfg()
        });
        let mut input = vec![b'a'; 4_000];
        input.extend_from_slice(&[b'\n'; 100]);
        let d = limiter.filter_input(&input);
        assert_eq!(d.forward.len(), 4_000);
        assert_eq!(d.limited, Some(Rejection::InputFlood));
        clock.advance(Duration::from_secs(1));
        let d = limiter.filter_input(b"\n");
        assert_eq!(d.forward, b"\n", "the command budget is untouched");
        assert_eq!(d.notice, None);
    }

    #[test]
    fn a_cut_never_splits_a_utf8_character() {
        let (mut limiter, _) = session(RateLimitConfig {
            input_bytes_per_second: 1,
            input_burst_bytes: 5,
            ..RateLimitConfig::default()
        });
        let d = limiter.filter_input("éééé".as_bytes());
        assert_eq!(d.forward, "éé".as_bytes());
    }

    #[test]
    fn sustained_flooding_ends_the_session() {
        let (mut limiter, clock) = session(flood_cfg());
        let mut ended_at = None;
        for tick in 0..30 {
            let d = limiter.filter_input(&[b'z'; 5_000]);
            assert!(!d.forward.is_empty());
            if d.end_session {
                ended_at = Some(tick);
                break;
            }
            clock.advance(Duration::from_millis(500));
        }
        assert_eq!(ended_at, Some(20), "after 10 s of dropped input");
    }

    #[test]
    fn flooding_with_pauses_does_not_end_the_session() {
        let (mut limiter, clock) = session(flood_cfg());
        for _ in 0..10 {
            for _ in 0..4 {
                assert!(!limiter.filter_input(&[b'z'; 5_000]).end_session);
                clock.advance(Duration::from_millis(500));
            }
            clock.advance(Duration::from_secs(5));
        }
    }

    #[test]
    fn resizes_are_limited_with_a_burst() {
        let (mut limiter, clock) = session(RateLimitConfig {
            resizes_per_second: 2,
            resize_burst: 3,
            ..RateLimitConfig::default()
        });
        assert!((0..3).all(|_| limiter.allow_resize()));
        assert!(!limiter.allow_resize());
        clock.advance(Duration::from_millis(500));
        assert!(limiter.allow_resize());
        assert!(!limiter.allow_resize());
    }

    #[test]
    fn plain_typing_passes_untouched_with_real_clock() {
        let mut limiter = SessionLimiter::new(&RateLimitConfig::default());
        let d = limiter.filter_input(b"echo hello\r");
        assert_eq!(
            d,
            InputDecision {
                forward: b"echo hello\r".to_vec(),
                ..InputDecision::default()
            }
        );
    }

    #[test]
    fn rejection_labels_are_distinct_snake_case() {
        let labels: std::collections::HashSet<_> =
            Rejection::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), Rejection::ALL.len());
        assert!(labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        assert_eq!(Rejection::InputFlood.to_string(), "input_flood");
    }

    /// A clock that moves on by `step` each time it is read, as a real clock does between
    /// two checks of one piece of input.
    #[derive(Clone)]
    struct TickingClock {
        inner: FakeRelativeClock,
        step: Duration,
    }

    impl governor::clock::Clock for TickingClock {
        type Instant = <FakeRelativeClock as governor::clock::Clock>::Instant;

        fn now(&self) -> Self::Instant {
            self.inner.advance(self.step);
            self.inner.now()
        }
    }

    #[test]
    fn input_admitted_whole_after_a_refill_between_checks_does_not_panic() {
        let cfg = RateLimitConfig {
            input_bytes_per_second: 1000,
            input_burst_bytes: 1000,
            ..RateLimitConfig::default()
        };
        // Each read of the clock refills 5 bytes: a piece that did not fit at the first
        // check can fit whole in the halving loop.
        let clock = TickingClock {
            inner: FakeRelativeClock::default(),
            step: Duration::from_millis(5),
        };
        let mut limiter = SessionLimiter::with_clock(&cfg, clock);
        let mut admitted_whole_after_refusal = false;
        for len in 1..=64usize {
            let input = vec![b'a'; len];
            for _ in 0..200 {
                let d = limiter.filter_input(&input);
                assert!(d.forward.len() <= len);
                if d.forward.len() == len && d.limited.is_none() {
                    admitted_whole_after_refusal |= len > 1;
                }
            }
        }
        assert!(admitted_whole_after_refusal);
    }
}
