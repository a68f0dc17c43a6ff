//! Faults: where they are injected and where they are contained.
//!
//! Failpoints (the `fail` crate) sit at every engine call (`docker::create`, `::attach`,
//! `::start`, `::inspect`, `::resize`, `::remove`, `::events`), at the TTY's read and write
//! (`tty::read`, `tty::write`) and at the top of every actor's message handlers
//! (`session::input`, `registry::open`, `bridge::frame`, ...; docs/operations.md lists
//! them). They act only in a build with the `failpoints` feature, which test builds have
//! and release builds do not; elsewhere `fail_point!` compiles to nothing.
//!
//! Invariant: a fault at any of them ends at most the session it happened in. A session's
//! actors (session, container, timers, bridge) turn a panic into that session's end
//! (`EndCause::Crashed`, 1011); the server-wide actors (registry, rate limiter, audit sink,
//! monitor, network guard) catch a panic in a handler with `contain`, refuse that one
//! request and live on.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

/// True in a build whose failpoints act (feature `failpoints`).
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Runs one handler of a server-wide actor. A panic in it is caught and logged, and `None`
/// returned, so the actor and every session it serves live on.
pub fn contain<R>(handler: &str, body: impl FnOnce() -> R) -> Option<R> {
    match std::panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => Some(result),
        Err(panic) => {
            log::error!(
                "{handler} failed ({}); that request is refused",
                panic_text(&*panic)
            );
            None
        }
    }
}

/// Runs a task, catching a panic in it: `Err` with the panic's text.
pub async fn guarded<T>(task: impl Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(task)
        .catch_unwind()
        .await
        .map_err(|panic| panic_text(&*panic))
}

/// What a panic said, when it said it with a string.
pub fn panic_text(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

/// The failpoints configured now, as `name=actions` (for the admin endpoint).
pub fn list() -> Vec<(String, String)> {
    fail::list()
}

/// Configures a failpoint (`fail`'s action syntax: `panic`, `return`, `1*return`, `off`,
/// `sleep(100)`, ...). Refused in a build without failpoints, where it would do nothing.
pub fn configure(name: &str, actions: &str) -> Result<(), String> {
    if !ENABLED {
        return Err("this build has no failpoints (feature `failpoints`)".into());
    }
    fail::cfg(name, actions)
}

/// Removes a failpoint's configuration.
pub fn remove(name: &str) {
    fail::remove(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contain_returns_the_result_or_none_after_a_panic() {
        assert_eq!(contain("test", || 7), Some(7));
        assert_eq!(contain("test", || -> u8 { panic!("boom") }), None);
    }

    #[actix_rt::test]
    async fn guarded_gives_the_panic_text() {
        assert_eq!(guarded(async { 3 }).await, Ok(3));
        let failed = guarded(async { panic!("tty {}", 1) }).await;
        assert_eq!(failed, Err::<(), _>("tty 1".to_string()));
    }
}
