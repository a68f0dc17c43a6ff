//! Pool: the warm pool. Keeps `pool_size` sandboxes created, attached and started with
//! exactly the session profile (the same create body as a cold session's), each waiting
//! in its entry program for a session's environment line. A session claims one and writes
//! its line: one write, and the shell runs. Invariant: a sandbox leaves the pool exactly
//! once (claimed, lost, or discarded); it serves at most one session and is never reused.
//! Refills run in the background, at most `MAX_FILLING` at a time, backing off while the
//! engine fails; an empty pool answers at once (the session starts cold).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use crate::audit::AuditEvent;
use crate::container::{sandbox_body, SandboxError};
use crate::docker::RawTty;
use crate::entry::{self, EntryError};
use crate::profile::labels;
use crate::Shared;

#[cfg(test)]
mod tests;

/// How long a pool sandbox's entry program waits for a session before it exits (the pool
/// then replaces it): waiting sandboxes are renewed this often.
pub const POOL_WAIT: Duration = Duration::from_secs(3600);
/// A sandbox this close to its entry program's deadline is not handed out (the session
/// could write its line as the program gives up).
const DEADLINE_MARGIN: Duration = Duration::from_secs(60);
/// Sandboxes being made at once: refills must not crowd out the engine's cold starts.
const MAX_FILLING: usize = 2;
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the rest of the server knows of the pool: its address once started, and the
/// sandboxes it made that are still in use (the reaper leaves those alone), with the
/// session each serves (their label is the pool's: engine events find the session here).
#[derive(Default)]
pub struct PoolLink {
    addr: OnceLock<Addr<Pool>>,
    /// Names (before their create returns) and ids of the pool's containers, waiting
    /// (`None`) or serving a session.
    owned: parking_lot::Mutex<HashMap<String, Option<uuid::Uuid>>>,
}

impl PoolLink {
    pub fn set(&self, addr: Addr<Pool>) {
        let _ = self.addr.set(addr);
    }

    pub fn addr(&self) -> Option<&Addr<Pool>> {
        self.addr.get()
    }

    /// Whether the container with this id or name (with or without Docker's `/`) is one
    /// of the pool's, still in use.
    pub fn owns(&self, id_or_name: &str) -> bool {
        self.owned
            .lock()
            .contains_key(id_or_name.trim_start_matches('/'))
    }

    /// The session a claimed pool container serves.
    pub fn session_of(&self, id: &str) -> Option<uuid::Uuid> {
        self.owned.lock().get(id).copied().flatten()
    }

    /// A session claimed this container.
    pub fn serve(&self, id: &str, session: uuid::Uuid) {
        self.owned.lock().insert(id.to_string(), Some(session));
    }

    /// A pool container was removed (or never created): it is no longer owned.
    pub fn release(&self, id_or_name: &str) {
        self.owned.lock().remove(id_or_name);
    }

    fn adopt(&self, id_or_name: &str) {
        self.owned.lock().insert(id_or_name.to_string(), None);
    }
}

/// A sandbox taken from the pool: started, its entry program waiting for the line.
pub struct Warm {
    pub id: String,
    pub tty: RawTty,
}

/// Takes a waiting sandbox; `None` when the pool is empty (start cold).
#[derive(Message)]
#[rtype(result = "Option<Warm>")]
pub struct Claim;

/// The server is shutting down: no more refills; the waiting sandboxes are removed, and
/// the answer comes once no sandbox is being made (so that none is created after the
/// server's last sweep).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// A waiting sandbox's TTY ended or printed something: it is of no use any more.
#[derive(Message)]
#[rtype(result = "()")]
struct Lost {
    id: String,
}

struct Waiting {
    id: String,
    since: Instant,
    /// Tells the sandbox's watcher to give its TTY back (the claim).
    take: oneshot::Sender<()>,
    watcher: tokio::task::JoinHandle<Option<RawTty>>,
}

pub struct Pool {
    shared: Arc<Shared>,
    ready: VecDeque<Waiting>,
    filling: usize,
    failures: u32,
    retry_pending: bool,
    stopping: bool,
    /// Shutdowns waiting for the fills in flight to end.
    idle_waiters: Vec<oneshot::Sender<()>>,
}

impl Pool {
    pub fn new(shared: Arc<Shared>) -> Pool {
        Pool {
            shared,
            ready: VecDeque::new(),
            filling: 0,
            failures: 0,
            retry_pending: false,
            stopping: false,
            idle_waiters: Vec::new(),
        }
    }

    fn size(&self) -> usize {
        self.shared.settings.pool_size
    }

    fn publish(&self) {
        self.shared.metrics.pool_ready.set(self.ready.len() as i64);
    }

    /// Starts as many fills as the pool lacks, within `MAX_FILLING`; none while a backoff
    /// runs.
    fn refill(&mut self, ctx: &mut Context<Self>) {
        if self.retry_pending || self.stopping {
            return;
        }
        while self.ready.len() + self.filling < self.size() && self.filling < MAX_FILLING {
            self.filling += 1;
            let shared = self.shared.clone();
            ctx.spawn(fill(shared).into_actor(self).map(|result, act, ctx| {
                act.filling -= 1;
                if act.stopping {
                    if let Ok((id, _)) = result {
                        act.discard(id);
                    }
                    if act.filling == 0 {
                        act.idle_waiters.drain(..).for_each(|w| {
                            let _ = w.send(());
                        });
                    }
                    return;
                }
                match result {
                    Ok((id, tty)) => {
                        act.failures = 0;
                        act.keep(id, tty, ctx);
                        act.refill(ctx);
                    }
                    Err(error) => {
                        act.shared.metrics.docker_error(error.operation());
                        act.failures = act.failures.saturating_add(1);
                        let wait = backoff(act.failures);
                        log::warn!(
                            "pool: could not make a sandbox ({error}); next try in {} ms",
                            wait.as_millis()
                        );
                        act.retry_pending = true;
                        ctx.run_later(wait, |act, ctx| {
                            act.retry_pending = false;
                            act.refill(ctx);
                        });
                    }
                }
            }));
        }
    }

    /// Puts a ready sandbox in the pool, watched: if its TTY ends (killed, engine gone,
    /// entry program timed out) it is replaced.
    fn keep(&mut self, id: String, mut tty: RawTty, ctx: &mut Context<Self>) {
        let (take, taken) = oneshot::channel::<()>();
        let pool = ctx.address();
        let watched = id.clone();
        let watcher = actix::spawn(async move {
            let mut byte = [0u8; 1];
            let claimed = tokio::select! {
                biased;
                _ = taken => true,
                _ = tty.reader.read(&mut byte) => false,
            };
            if claimed {
                Some(tty)
            } else {
                pool.do_send(Lost { id: watched });
                None
            }
        });
        self.ready.push_back(Waiting {
            id,
            since: Instant::now(),
            take,
            watcher,
        });
        self.publish();
    }

    fn discard(&self, id: String) {
        let shared = self.shared.clone();
        actix::spawn(async move {
            if shared.engine.remove(&id).await.is_err() {
                shared.metrics.docker_error("remove");
            }
            shared.pool.release(&id);
        });
    }
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1 << failures.min(10).saturating_sub(1))
        .min(BACKOFF_MAX)
}

/// Makes one pool sandbox: create (labelled as the pool's, the session profile), attach,
/// start, and wait for its entry program. A sandbox that fails on the way is removed.
async fn fill(shared: Arc<Shared>) -> Result<(String, RawTty), SandboxError> {
    let started = Instant::now();
    let settings = &shared.settings;
    let name = format!(
        "termcell-{}-pool-{}",
        settings.deployment,
        uuid::Uuid::new_v4().simple()
    );
    let body = sandbox_body(
        settings,
        settings.base_env.clone(),
        (labels::POOL, name.clone()),
        POOL_WAIT,
    );
    let engine = &shared.engine;
    // Owned before it exists: a reaper pass during the create must not take it.
    shared.pool.adopt(&name);
    let created = engine.create(&name, body).await;
    shared.pool.release(&name);
    let id = created.map_err(|e| SandboxError::Create(e.into()))?;
    shared.pool.adopt(&id);
    let made = async {
        let mut tty = engine
            .attach_raw(&id)
            .await
            .map_err(|e| SandboxError::Attach(e.into()))?;
        engine
            .start(&id)
            .await
            .map_err(|e| SandboxError::Start(e.into()))?;
        if let Err(e) = engine
            .resize(&id, settings.default_cols, settings.default_rows)
            .await
        {
            log::debug!("pool: initial resize of {id} failed: {e}");
        }
        let initial = std::mem::take(&mut tty.initial);
        let after = entry::await_ready(&mut *tty.reader, initial, entry::COLD_TIMEOUT)
            .await
            .map_err(SandboxError::Entry)?;
        if !after.is_empty() {
            return Err(SandboxError::Entry(EntryError::Unexpected));
        }
        Ok(tty)
    }
    .await;
    match made {
        Ok(tty) => {
            shared
                .metrics
                .pool_refill_seconds
                .observe(started.elapsed().as_secs_f64());
            shared.audit.record(
                AuditEvent::new("container.created")
                    .field("container_id", &id)
                    .field("pool", true),
            );
            Ok((id, tty))
        }
        Err(error) => {
            let _ = engine.remove(&id).await;
            shared.pool.release(&id);
            Err(error)
        }
    }
}

impl Actor for Pool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        log::info!("warm pool: keeping {} sandbox(es) ready", self.size());
        self.refill(ctx);
    }
}

impl Handler<Claim> for Pool {
    type Result = ResponseFuture<Option<Warm>>;

    fn handle(&mut self, _: Claim, ctx: &mut Context<Self>) -> Self::Result {
        let mut found = None;
        while let Some(waiting) = self.ready.pop_front() {
            if waiting.since.elapsed() + DEADLINE_MARGIN < POOL_WAIT {
                found = Some(waiting);
                break;
            }
            // Too close to its entry program's deadline: renewed, not handed out.
            waiting.watcher.abort();
            self.discard(waiting.id);
        }
        self.publish();
        self.refill(ctx);
        Box::pin(async move {
            let waiting = found?;
            let _ = waiting.take.send(());
            match waiting.watcher.await {
                Ok(Some(tty)) => Some(Warm {
                    id: waiting.id,
                    tty,
                }),
                // It ended just now: its watcher reported it lost.
                _ => None,
            }
        })
    }
}

impl Handler<Shutdown> for Pool {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let waiting: Vec<Waiting> = self.ready.drain(..).collect();
        self.publish();
        let idle = (self.filling > 0).then(|| {
            let (tx, rx) = oneshot::channel();
            self.idle_waiters.push(tx);
            rx
        });
        let shared = self.shared.clone();
        Box::pin(async move {
            for w in waiting {
                w.watcher.abort();
                let _ = shared.engine.remove(&w.id).await;
                shared.pool.release(&w.id);
            }
            if let Some(idle) = idle {
                let _ = idle.await;
            }
        })
    }
}

impl Handler<Lost> for Pool {
    type Result = ();

    fn handle(&mut self, Lost { id }: Lost, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        log::info!("pool: sandbox {id} ended while waiting; replacing it");
        self.ready.retain(|w| w.id != id);
        self.publish();
        self.discard(id);
        self.refill(ctx);
    }
}
