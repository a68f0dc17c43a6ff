//! The per-session `SessionLimiter`: input bytes per second, Enter presses per minute and
//! resizes per second, owned by one session actor so the data path needs no round trip.
//! Invariant: it only removes input (never reorders or adds) and never cuts a UTF-8 character.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::Quota;

use crate::notice::Notice;

use super::{at_least_one, whole_seconds, Direct, LimiterClock, RateLimitConfig, Rejection};

/// Refused-line strikes a session may collect per minute before it is ended.
const REFUSED_LINES_PER_MINUTE: u32 = 10;
/// Input dropped for this long without a pause of `FLOOD_PAUSE` ends the session.
const FLOOD_END_AFTER: Duration = Duration::from_secs(10);
/// A gap between drops longer than this ends a flooding streak.
const FLOOD_PAUSE: Duration = Duration::from_secs(2);

/// What a session does with one piece of input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputDecision {
    /// The input to write to the TTY: refused Enter presses and excess bytes removed.
    pub forward: Vec<u8>,
    /// What to tell the user when something was removed (one line).
    pub notices: Vec<Notice>,
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
    /// Bytes of the current line were forwarded in an earlier piece of input.
    line_open: bool,
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
            commands: direct(
                Quota::per_minute(commands).allow_burst(at_least_one(cfg.command_burst)),
            ),
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
            line_open: false,
            clock,
        }
    }

    /// Applies the input byte rate, then the command rate (Enter presses), to one piece of input.
    pub fn filter_input(&mut self, input: &[u8]) -> InputDecision {
        let admitted = self.admit_bytes(input);
        let mut decision = InputDecision::default();

        if admitted < input.len() {
            decision.limited = Some(Rejection::InputFlood);
            decision.end_session |= self.flood_strike();
            decision.notices.push(Notice::InputDropped {
                kib_per_second: self.input_bytes_per_second.div_ceil(1024),
                bytes: input.len() - admitted,
            });
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
            decision.notices.push(Notice::LinesRefused {
                per_minute: self.commands_per_minute,
                lines: refused,
                wait_seconds: whole_seconds(wait),
            });
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

    /// Removes the Enter presses over the command rate, each with its whole line: a refused
    /// line never stays on the command line to be joined with the next one. `\r`, `\n` and
    /// `\r\n` are one press each. The bytes of a line that arrived in an earlier piece of
    /// input (typed by hand) are already at the TTY: `KILL_LINE` erases them there.
    /// Bracketed-paste markers in a dropped line are kept, so the paste stays balanced.
    /// Returns the bytes to forward, the refused presses, and the wait until the next allowed one.
    fn filter_enter_presses(&mut self, input: &[u8]) -> (Vec<u8>, usize, Duration) {
        let mut forward = Vec::with_capacity(input.len());
        let mut refused = 0;
        let mut wait = Duration::ZERO;
        // Where the current line starts in `forward`.
        let mut line_start = 0;
        let mut line_open = std::mem::take(&mut self.line_open);
        for &byte in input {
            let after_cr = self.after_cr.take();
            match (byte, after_cr) {
                (b'\n', Some(allowed)) => {
                    if allowed {
                        forward.push(byte);
                        line_start = forward.len();
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
                    } else {
                        drop_line(&mut forward, line_start, line_open);
                    }
                    line_start = forward.len();
                    line_open = false;
                    if byte == b'\r' {
                        self.after_cr = Some(allowed);
                    }
                }
                _ => forward.push(byte),
            }
        }
        self.line_open = line_open || forward.len() > line_start;
        (forward, refused, wait)
    }
}

/// Ctrl-E Ctrl-U: to the end of the line, then erase it (the line editors of the sandbox's
/// shells and the TTY's own line discipline all take Ctrl-U as "kill the line").
const KILL_LINE: &[u8] = b"\x05\x15";

/// The bracketed-paste markers a dropped line gives back.
const PASTE_MARKERS: [&[u8]; 2] = [b"\x1b[200~", b"\x1b[201~"];

/// Removes `forward[line_start..]`, keeping any bracketed-paste markers in it; with `kill`,
/// the part of the line already at the TTY is erased first (before the markers, outside any
/// paste, where a line editor takes keys as keys).
fn drop_line(forward: &mut Vec<u8>, line_start: usize, kill: bool) {
    let line = forward.split_off(line_start);
    if kill {
        forward.extend_from_slice(KILL_LINE);
    }
    for at in 0..line.len() {
        if let Some(marker) = PASTE_MARKERS.iter().find(|m| line[at..].starts_with(m)) {
            forward.extend_from_slice(marker);
        }
    }
}

fn is_utf8_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}
