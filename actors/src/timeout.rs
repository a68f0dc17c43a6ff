//! TimeoutActor: the timers of one session (idle, maximum duration, resume grace) and the
//! warnings before an idle or max-duration end. Exact to the deadline: one timer armed for
//! the next event, re-armed when it fires early because of later activity.

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::SessionSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    Idle,
    MaxDuration,
    Grace,
}

/// What the timers tell the session.
#[derive(Debug, Message, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum TimerEvent {
    Warn {
        kind: TimerKind,
        seconds_left: u64,
    },
    Expired(TimerKind),
    /// The timers failed (a panic): the session cannot keep its limits, so it ends.
    Failed,
}

/// What the session tells its timers.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum TimerUpdate {
    /// Input from the user: the idle timer starts over.
    Activity,
    /// The socket went away: the grace period starts (the short one when the page said
    /// it was closing).
    Detached { page_closed: bool },
    /// A socket (re)attached: the grace period is off.
    Attached,
    /// The session ended: the timers go.
    Stop,
}

/// The pure schedule, separate from the actor so it can be tested without a clock.
#[derive(Debug, Clone)]
pub struct Schedule {
    idle: Duration,
    max: Duration,
    grace: Duration,
    closed_page_grace: Duration,
    warn_before: Duration,
    started: Instant,
    last_input: Instant,
    /// When the grace of a detached session runs out.
    grace_end: Option<Instant>,
    idle_warned: bool,
    max_warned: bool,
}

impl Schedule {
    pub fn new(settings: &SessionSettings, now: Instant) -> Schedule {
        Schedule {
            idle: settings.idle_timeout,
            max: settings.max_duration,
            grace: settings.resume_grace,
            closed_page_grace: settings.closed_page_grace.min(settings.resume_grace),
            warn_before: settings.warn_before,
            started: now,
            last_input: now,
            grace_end: None,
            idle_warned: false,
            max_warned: false,
        }
    }

    pub fn update(&mut self, update: &TimerUpdate, now: Instant) {
        match update {
            TimerUpdate::Activity => {
                self.last_input = now;
                self.idle_warned = false;
            }
            TimerUpdate::Detached { page_closed } => {
                let grace = if *page_closed {
                    self.closed_page_grace
                } else {
                    self.grace
                };
                self.grace_end = Some(now + grace);
            }
            TimerUpdate::Attached => {
                self.grace_end = None;
                // A resumed user counts as active.
                self.last_input = now;
                self.idle_warned = false;
            }
            TimerUpdate::Stop => {}
        }
    }

    fn idle_end(&self) -> Instant {
        self.last_input + self.idle
    }

    fn max_end(&self) -> Instant {
        self.started + self.max
    }

    /// The instants at which something may happen next.
    pub fn next_deadline(&self) -> Instant {
        let mut next = vec![self.idle_end(), self.max_end()];
        if !self.idle_warned {
            next.push(
                self.idle_end()
                    .checked_sub(self.warn_before)
                    .unwrap_or(self.started),
            );
        }
        if !self.max_warned {
            next.push(
                self.max_end()
                    .checked_sub(self.warn_before)
                    .unwrap_or(self.started),
            );
        }
        next.extend(self.grace_end);
        next.into_iter().min().expect("never empty")
    }

    /// What is due at `now`, if anything (at most one event per call).
    pub fn due(&mut self, now: Instant) -> Option<TimerEvent> {
        if self.grace_end.is_some_and(|end| now >= end) {
            return Some(TimerEvent::Expired(TimerKind::Grace));
        }
        if now >= self.max_end() {
            return Some(TimerEvent::Expired(TimerKind::MaxDuration));
        }
        if now >= self.idle_end() {
            return Some(TimerEvent::Expired(TimerKind::Idle));
        }
        let left = |end: Instant| (end - now).as_secs_f64().round() as u64;
        if !self.max_warned && now + self.warn_before >= self.max_end() {
            self.max_warned = true;
            return Some(TimerEvent::Warn {
                kind: TimerKind::MaxDuration,
                seconds_left: left(self.max_end()),
            });
        }
        if !self.idle_warned && now + self.warn_before >= self.idle_end() {
            self.idle_warned = true;
            return Some(TimerEvent::Warn {
                kind: TimerKind::Idle,
                seconds_left: left(self.idle_end()),
            });
        }
        None
    }
}

pub struct TimeoutActor {
    session: Recipient<TimerEvent>,
    schedule: Schedule,
    armed: Option<(Instant, SpawnHandle)>,
    /// The session asked for this end (`Stop`), was told of it (an expiry), or is gone.
    /// Otherwise the timers failed (actix may still run `stopped()` after a panic).
    session_knows: bool,
}

impl TimeoutActor {
    pub fn new(session: Recipient<TimerEvent>, settings: &SessionSettings) -> TimeoutActor {
        TimeoutActor {
            session,
            schedule: Schedule::new(settings, Instant::now()),
            armed: None,
            session_knows: false,
        }
    }

    /// Arms the timer for the next deadline unless it is already armed for an earlier one.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        let next = self.schedule.next_deadline();
        if let Some((at, handle)) = self.armed {
            if at <= next {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = next.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.armed = None;
            act.fire(ctx);
        });
        self.armed = Some((next, handle));
    }

    fn fire(&mut self, ctx: &mut Context<Self>) {
        fail::fail_point!("timer::fire");
        // A session that vanished takes its timers with it.
        if !self.session.connected() {
            self.session_knows = true;
            ctx.stop();
            return;
        }
        let now = Instant::now();
        while let Some(event) = self.schedule.due(now) {
            let expired = matches!(event, TimerEvent::Expired(_));
            self.session.do_send(event);
            if expired {
                self.session_knows = true;
                ctx.stop();
                return;
            }
        }
        self.arm(ctx);
    }
}

impl Actor for TimeoutActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.arm(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.tell_session_of_failure();
    }
}

impl TimeoutActor {
    /// An end the session did not ask for: it ends (1011, cause `crashed`) rather than
    /// run without its limits.
    fn tell_session_of_failure(&mut self) {
        if !std::mem::replace(&mut self.session_knows, true) {
            log::error!("a session's timers failed; ending the session");
            self.session.do_send(TimerEvent::Failed);
        }
    }
}

/// Timers that panicked may vanish without `stopped()`, but they are dropped.
impl Drop for TimeoutActor {
    fn drop(&mut self) {
        self.tell_session_of_failure();
    }
}

impl Handler<TimerUpdate> for TimeoutActor {
    type Result = ();

    fn handle(&mut self, msg: TimerUpdate, ctx: &mut Context<Self>) {
        fail::fail_point!("timer::update");
        if matches!(msg, TimerUpdate::Stop) {
            self.session_knows = true;
            ctx.stop();
            return;
        }
        self.schedule.update(&msg, Instant::now());
        // Activity only moves deadlines later: the armed timer fires early and re-arms.
        if !matches!(msg, TimerUpdate::Activity) {
            self.arm(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SessionSettings {
        SessionSettings {
            idle_timeout: Duration::from_secs(600),
            max_duration: Duration::from_secs(1800),
            resume_grace: Duration::from_secs(300),
            warn_before: Duration::from_secs(60),
            ..SessionSettings::default()
        }
    }

    #[test]
    fn idle_warns_then_expires() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&settings(), t0);
        assert_eq!(s.next_deadline(), t0 + Duration::from_secs(540));
        assert_eq!(s.due(t0 + Duration::from_secs(539)), None);
        assert_eq!(
            s.due(t0 + Duration::from_secs(540)),
            Some(TimerEvent::Warn {
                kind: TimerKind::Idle,
                seconds_left: 60
            })
        );
        assert_eq!(s.due(t0 + Duration::from_secs(541)), None);
        assert_eq!(s.next_deadline(), t0 + Duration::from_secs(600));
        assert_eq!(
            s.due(t0 + Duration::from_secs(600)),
            Some(TimerEvent::Expired(TimerKind::Idle))
        );
    }

    #[test]
    fn input_resets_idle_and_its_warning() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&settings(), t0);
        assert!(s.due(t0 + Duration::from_secs(545)).is_some());
        s.update(&TimerUpdate::Activity, t0 + Duration::from_secs(550));
        assert_eq!(s.due(t0 + Duration::from_secs(600)), None);
        assert_eq!(s.next_deadline(), t0 + Duration::from_secs(1090));
    }

    #[test]
    fn max_duration_wins_over_activity() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&settings(), t0);
        let mut t = t0;
        let mut warned = false;
        while t + Duration::from_secs(30) < t0 + Duration::from_secs(1800) {
            t += Duration::from_secs(30);
            s.update(&TimerUpdate::Activity, t);
            if let Some(TimerEvent::Warn { kind, .. }) = s.due(t) {
                assert_eq!(kind, TimerKind::MaxDuration);
                warned = true;
            }
        }
        assert!(warned);
        assert_eq!(
            s.due(t0 + Duration::from_secs(1800)),
            Some(TimerEvent::Expired(TimerKind::MaxDuration))
        );
    }

    #[test]
    fn grace_runs_only_while_detached() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&settings(), t0);
        s.update(
            &TimerUpdate::Detached { page_closed: false },
            t0 + Duration::from_secs(10),
        );
        assert_eq!(s.next_deadline(), t0 + Duration::from_secs(310));
        s.update(&TimerUpdate::Attached, t0 + Duration::from_secs(100));
        assert_eq!(s.due(t0 + Duration::from_secs(320)), None);
        s.update(
            &TimerUpdate::Detached { page_closed: false },
            t0 + Duration::from_secs(400),
        );
        assert_eq!(
            s.due(t0 + Duration::from_secs(700)),
            Some(TimerEvent::Expired(TimerKind::Grace))
        );
    }

    #[test]
    fn a_closed_page_waits_only_the_short_grace() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&settings(), t0);
        s.update(
            &TimerUpdate::Detached { page_closed: true },
            t0 + Duration::from_secs(10),
        );
        assert_eq!(s.next_deadline(), t0 + Duration::from_secs(25));
        assert_eq!(s.due(t0 + Duration::from_secs(24)), None);
        assert_eq!(
            s.due(t0 + Duration::from_secs(25)),
            Some(TimerEvent::Expired(TimerKind::Grace))
        );
        // A reload resumes within it: the grace is off again.
        s.update(
            &TimerUpdate::Detached { page_closed: true },
            t0 + Duration::from_secs(30),
        );
        s.update(&TimerUpdate::Attached, t0 + Duration::from_secs(32));
        assert_eq!(s.due(t0 + Duration::from_secs(50)), None);
    }

    #[test]
    fn warning_longer_than_the_timeout_fires_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(
            &SessionSettings {
                idle_timeout: Duration::from_secs(2),
                warn_before: Duration::from_secs(5),
                ..settings()
            },
            t0,
        );
        assert_eq!(
            s.due(t0),
            Some(TimerEvent::Warn {
                kind: TimerKind::Idle,
                seconds_left: 2
            })
        );
    }

    #[actix_rt::test]
    async fn actor_fires_warning_and_expiry_in_order() {
        struct Sink(tokio::sync::mpsc::UnboundedSender<TimerEvent>);
        impl Actor for Sink {
            type Context = Context<Self>;
        }
        impl Handler<TimerEvent> for Sink {
            type Result = ();
            fn handle(&mut self, msg: TimerEvent, _: &mut Context<Self>) {
                let _ = self.0.send(msg);
            }
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = Sink(tx).start();
        let s = SessionSettings {
            idle_timeout: Duration::from_millis(300),
            warn_before: Duration::from_millis(200),
            ..settings()
        };
        let t0 = Instant::now();
        let _timer = TimeoutActor::new(sink.recipient(), &s).start();
        assert!(matches!(
            rx.recv().await,
            Some(TimerEvent::Warn {
                kind: TimerKind::Idle,
                ..
            })
        ));
        assert!(t0.elapsed() >= Duration::from_millis(100));
        assert_eq!(rx.recv().await, Some(TimerEvent::Expired(TimerKind::Idle)));
        assert!(t0.elapsed() >= Duration::from_millis(300));
    }
}
