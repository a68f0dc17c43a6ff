//! A byte budget shared by the reader of a client's socket and whoever holds what it read.
//! Invariant: the bytes counted as held only come down by `release` or by dropping a
//! `Credit`, and the reader is woken whenever they fall below the cap again.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

#[derive(Default)]
struct State {
    held: usize,
    waker: Option<Waker>,
}

/// Bytes a connection has inside the server, against a cap. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct ByteBudget {
    state: Arc<Mutex<State>>,
    cap: usize,
}

impl ByteBudget {
    pub fn new(cap: usize) -> ByteBudget {
        ByteBudget {
            state: Arc::default(),
            cap,
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn held(&self) -> usize {
        self.state.lock().held
    }

    /// How many more bytes may be read now; when none, the task is woken once some are
    /// released.
    pub fn poll_room(&self, cx: &mut Context<'_>) -> Poll<usize> {
        let mut state = self.state.lock();
        if state.held >= self.cap {
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(self.cap - state.held)
        }
    }

    /// Counts `n` bytes as held (read, not yet handed on).
    pub fn take(&self, n: usize) {
        self.state.lock().held += n;
    }

    /// Gives `n` held bytes back and wakes the reader if that opens room.
    pub fn release(&self, n: usize) {
        let waker = {
            let mut state = self.state.lock();
            state.held = state.held.saturating_sub(n);
            if state.held < self.cap {
                state.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Counts `n` bytes as held until the returned credit is dropped, wherever that is.
    pub fn credit(&self, n: usize) -> Credit {
        self.take(n);
        Credit {
            budget: self.clone(),
            n,
        }
    }
}

/// Bytes held on a budget for as long as this lives (it travels with a message, so a
/// message dropped unhandled, with a stopped actor's mailbox, still gives them back).
pub struct Credit {
    budget: ByteBudget,
    n: usize,
}

impl Credit {
    /// A credit on no budget, for messages a unit test sends.
    #[cfg(test)]
    pub fn none() -> Credit {
        Credit {
            budget: ByteBudget::new(usize::MAX),
            n: 0,
        }
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.budget.release(self.n);
    }
}

impl std::fmt::Debug for Credit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credit({})", self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn room_shrinks_with_what_is_held_and_a_full_budget_wakes_on_release() {
        let budget = ByteBudget::new(100);
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert_eq!(budget.poll_room(&mut cx), Poll::Ready(100));
        budget.take(60);
        assert_eq!(budget.poll_room(&mut cx), Poll::Ready(40));
        let credit = budget.credit(40);
        assert_eq!(budget.held(), 100);
        assert_eq!(budget.poll_room(&mut cx), Poll::Pending);
        budget.release(10);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(budget.poll_room(&mut cx), Poll::Ready(10));
        drop(credit);
        assert_eq!(budget.held(), 50);
        budget.release(500);
        assert_eq!(budget.held(), 0, "never below zero");
    }

    #[test]
    fn a_credit_is_given_back_from_another_thread() {
        let budget = ByteBudget::new(10);
        let credit = budget.credit(10);
        std::thread::spawn(move || drop(credit)).join().unwrap();
        assert_eq!(budget.held(), 0);
    }
}
