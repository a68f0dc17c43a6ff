//! Unit tests of both limiters on a fake clock (and one that ticks as a real clock does).

use super::*;
use crate::notice::Notice;
use actix::prelude::*;
use governor::clock::FakeRelativeClock;
use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::time::Duration;
use uuid::Uuid;

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
    assert_eq!(
        acquire(ip(1)).await.unwrap().err(),
        Some(SlotRefused::Limit)
    );
    let other = acquire(ip(2))
        .await
        .unwrap()
        .expect("other IP is independent");

    drop(first);
    let third = acquire(ip(1))
        .await
        .unwrap()
        .expect("a dropped slot is free again");
    assert_eq!(
        acquire(ip(1)).await.unwrap().err(),
        Some(SlotRefused::Limit)
    );
    drop((second, third, other));
    assert!(acquire(ip(1)).await.unwrap().is_ok());
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
        command_burst: 3,
        ..RateLimitConfig::default()
    });
    let d = limiter.filter_input(b"a\r\nb\nc\rd\r");
    assert_eq!(
        d.forward, b"a\r\nb\nc\r",
        "the refused line is dropped whole"
    );
    assert_eq!(d.limited, Some(Rejection::Commands));
    assert_eq!(
        d.notices,
        vec![Notice::LinesRefused {
            per_minute: 3,
            lines: 1,
            wait_seconds: 20
        }]
    );
    assert!(!d.end_session);
}

#[test]
fn crlf_split_across_inputs_is_one_press_and_refused_whole() {
    let (mut limiter, clock) = session(RateLimitConfig {
        commands_per_minute: 1,
        command_burst: 1,
        ..RateLimitConfig::default()
    });
    assert_eq!(limiter.filter_input(b"ls\r").forward, b"ls\r");
    let d = limiter.filter_input(b"\nxy");
    assert_eq!(d.forward, b"\nxy", "the \\n completes the allowed press");
    assert_eq!(d.notices, vec![]);

    let d = limiter.filter_input(b"pwd\r");
    assert_eq!(
        d.forward, b"\x05\x15",
        "xy, typed before, is erased; pwd never sent"
    );
    assert_eq!(
        d.notices,
        vec![Notice::LinesRefused {
            per_minute: 1,
            lines: 1,
            wait_seconds: 60
        }]
    );
    assert_eq!(
        limiter.filter_input(b"\n").forward,
        b"",
        "rest of a refused press"
    );

    clock.advance(Duration::from_secs(60));
    let d = limiter.filter_input(b"\r\n");
    assert_eq!(d.forward, b"\r\n");
    assert_eq!(d.notices, vec![]);
}

#[test]
fn a_paste_of_many_lines_is_cut_at_the_limit_with_one_notice() {
    let (mut limiter, _) = session(RateLimitConfig {
        commands_per_minute: 2,
        command_burst: 2,
        ..RateLimitConfig::default()
    });
    let d = limiter.filter_input(b"1\n2\n3\n4\n");
    assert_eq!(
        d.forward, b"1\n2\n",
        "3 and 4 are dropped whole, not joined"
    );
    assert_eq!(
        d.notices,
        vec![Notice::LinesRefused {
            per_minute: 2,
            lines: 2,
            wait_seconds: 30
        }]
    );
    assert!(!d.end_session);
}

#[test]
fn a_paste_of_forty_lines_runs_whole_by_default() {
    let (mut limiter, _) = session(RateLimitConfig::default());
    let paste: Vec<u8> = (0..40)
        .flat_map(|i| format!("echo {i}\r").into_bytes())
        .collect();
    let d = limiter.filter_input(&paste);
    assert_eq!(d.forward, paste);
    assert_eq!(d.notices, vec![]);
}

#[test]
fn a_line_typed_key_by_key_whose_enter_is_refused_is_erased() {
    let (mut limiter, _) = session(RateLimitConfig {
        commands_per_minute: 1,
        command_burst: 1,
        ..RateLimitConfig::default()
    });
    assert_eq!(limiter.filter_input(b"\r").forward, b"\r");
    assert_eq!(limiter.filter_input(b"l").forward, b"l");
    assert_eq!(limiter.filter_input(b"s").forward, b"s");
    let d = limiter.filter_input(b"\r");
    assert_eq!(
        d.forward, b"\x05\x15",
        "the shell's line is killed, not left to join"
    );
    assert_eq!(d.notices.len(), 1);
    assert_eq!(
        limiter.filter_input(b"\r").forward,
        b"",
        "an empty line has nothing to erase"
    );
}

#[test]
fn a_refused_line_of_a_bracketed_paste_keeps_the_paste_markers() {
    let (mut limiter, _) = session(RateLimitConfig {
        commands_per_minute: 1,
        command_burst: 1,
        ..RateLimitConfig::default()
    });
    let d = limiter.filter_input(b"\x1b[200~one\rtwo\rthree\x1b[201~");
    assert_eq!(d.forward, b"\x1b[200~one\rthree\x1b[201~");
    let d = limiter.filter_input(b"\x1b[200~four\r\x1b[201~");
    assert_eq!(
        d.forward, b"\x05\x15\x1b[200~\x1b[201~",
        "three, left before, is erased"
    );
}

#[test]
fn persistent_refused_lines_end_the_session() {
    let (mut limiter, clock) = session(RateLimitConfig {
        commands_per_minute: 1,
        command_burst: 1,
        ..RateLimitConfig::default()
    });
    assert!(limiter.filter_input(b"\r").notices.is_empty());
    for strike in 1..=10 {
        let d = limiter.filter_input(b"x\r");
        assert_eq!(d.forward, b"");
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
        command_burst: 1,
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
        d.notices,
        vec![Notice::InputDropped {
            kib_per_second: 1,
            bytes: 6000
        }]
    );
    assert!(!d.end_session, "one large paste is not persistent flooding");

    assert!(limiter.filter_input(b"more").forward.is_empty());
    clock.advance(Duration::from_secs(1));
    assert_eq!(limiter.filter_input(&[b'b'; 3_000]).forward.len(), 1_000);
    clock.advance(Duration::from_secs(5));
    let d = limiter.filter_input(b"ls\r");
    assert_eq!(d.forward, b"ls\r");
    assert_eq!(d.notices, vec![]);
}

#[test]
fn dropped_tail_is_not_counted_as_enter_presses() {
    let (mut limiter, clock) = session(RateLimitConfig {
        commands_per_minute: 1,
        command_burst: 1,
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
    assert_eq!(d.notices, vec![]);
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

proptest::proptest! {
    /// With a clock that moves on between any two reads (as a real one does), the input
    /// limiter never panics, never forwards more than it was given, and over the run never
    /// admits more than the burst plus the rate times the time that passed.
    #[test]
    fn input_limit_holds_on_a_clock_that_moves_between_reads(
        rate in 1u32..100_000,
        burst in 1u32..300_000,
        step_us in 0u64..20_000,
        pieces in proptest::collection::vec(1usize..8192, 1..200),
    ) {
        let cfg = RateLimitConfig {
            input_bytes_per_second: rate,
            input_burst_bytes: burst,
            ..RateLimitConfig::default()
        };
        let clock = TickingClock {
            inner: FakeRelativeClock::default(),
            step: Duration::from_micros(step_us),
        };
        let start = clock.inner.now();
        let mut limiter = SessionLimiter::with_clock(&cfg, clock.clone());
        let mut forwarded = 0u64;
        for len in pieces {
            let input = vec![b'a'; len];
            let decision = limiter.filter_input(&input);
            proptest::prop_assert!(decision.forward.len() <= len);
            forwarded += decision.forward.len() as u64;
        }
        let elapsed: Duration =
            governor::clock::Reference::duration_since(&clock.inner.now(), start).into();
        let allowed = f64::from(burst) + f64::from(rate) * elapsed.as_secs_f64();
        proptest::prop_assert!(
            forwarded as f64 <= allowed + 1.0,
            "forwarded {forwarded} > burst {burst} + {rate}/s over {elapsed:?}"
        );
    }
}
