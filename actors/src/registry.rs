//! Registry: owns every session by id. Decides capacity, answers resume lookups (with the
//! constant-time credential check), routes Docker events to sessions, and reaps labelled
//! containers that no live session owns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;
use futures_util::StreamExt;
use uuid::Uuid;

use crate::audit::AuditEvent;
use crate::credentials::Fingerprint;
use crate::docker::{ContainerEvent, DockerEngine, DockerError};
use crate::fault::{self, contain};
use crate::profile::labels;
use crate::session::{
    short, ContainerEventNotice, Describe, End, EndCause, EndLedger, SessionActor, SessionInfo,
    SessionRequest, DESCRIBE_TIMEOUT,
};
use crate::Shared;

#[cfg(test)]
mod tests;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("server at capacity")]
    AtCapacity,
    #[error("server is draining")]
    Draining,
    #[error("unknown or expired session")]
    UnknownSession,
    #[error("credentials do not match the session")]
    CredentialsMismatch,
    /// The registry failed to handle the request (a panic it survived).
    #[error("internal error")]
    Internal,
}

struct Entry {
    addr: Addr<SessionActor>,
    fingerprint: Fingerprint,
    ledger: Arc<EndLedger>,
    client_ip: IpAddr,
    opened: chrono::DateTime<chrono::Utc>,
}

pub struct Registry {
    shared: Arc<Shared>,
    sessions: HashMap<Uuid, Entry>,
    draining: bool,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    /// Sessions ending during a shutdown; the shutdown waits for this to reach zero.
    shutdown_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Registry {
    /// `arbiters`: the threads sessions run on (round robin).
    pub fn new(shared: Arc<Shared>, arbiters: Vec<ArbiterHandle>) -> Registry {
        assert!(!arbiters.is_empty(), "at least one session arbiter");
        Registry {
            shared,
            sessions: HashMap::new(),
            draining: false,
            arbiters,
            next_arbiter: 0,
            shutdown_waiters: Vec::new(),
        }
    }

    fn watch_events(&self, ctx: &mut Context<Self>) {
        // A panic while reading the stream ends the stream (then it is watched again), not
        // the registry.
        let events = self.shared.engine.events(&self.shared.settings.deployment);
        let events = std::panic::AssertUnwindSafe(events)
            .catch_unwind()
            .filter_map(|item| {
                std::future::ready(match item {
                    Ok(item) => Some(item),
                    Err(panic) => {
                        log::error!(
                            "Docker events stream failed ({})",
                            fault::panic_text(&*panic)
                        );
                        None
                    }
                })
            });
        ctx.add_stream(events);
    }

    fn reap_orphans(&mut self, ctx: &mut Context<Self>) {
        // A session whose actor is gone without unregistering is forgotten, so its
        // capacity comes back and its container counts as orphaned below; if it also
        // never accounted for its end, that is done here.
        let gone: Vec<Uuid> = self
            .sessions
            .iter()
            .filter(|(_, entry)| !entry.addr.connected())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(entry) = self.sessions.remove(&id) {
                self.end_vanished(id, &entry);
            }
        }
        let engine = self.shared.engine.clone();
        let shared = self.shared.clone();
        let owned: Vec<String> = self.sessions.keys().map(|id| id.to_string()).collect();
        let deployment = self.shared.settings.deployment.clone();
        let instance = self.shared.settings.instance.clone();
        ctx.spawn(
            async move {
                let filter = [
                    format!("{}={deployment}", labels::DEPLOYMENT),
                    format!("{}={instance}", labels::INSTANCE),
                ];
                let Ok(containers) = engine.list_managed(&filter).await else {
                    return;
                };
                for c in containers {
                    let names = c.names.iter().flatten();
                    let in_pool = c
                        .labels
                        .as_ref()
                        .is_some_and(|l| l.contains_key(labels::POOL));
                    // The pool's sandboxes: waiting, or serving a session (under the
                    // pool's label, not the session's).
                    if in_pool && (c.id.iter().chain(names).any(|n| shared.pool.owns(n))) {
                        continue;
                    }
                    let session = c
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(labels::SESSION))
                        .cloned()
                        .unwrap_or_default();
                    if owned.contains(&session) {
                        continue;
                    }
                    if let Some(id) = c.id {
                        log::warn!("reaper: removing orphaned container {id} (session {session})");
                        if engine.remove(&id).await.is_ok() {
                            shared.audit.record(
                                AuditEvent::new("container.removed")
                                    .field("container_id", &id)
                                    .field("reason", "orphaned"),
                            );
                        }
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Registry {
    /// Accounts for the end of a session whose actor vanished, unless it did so itself:
    /// one `session.ended` (cause `vanished`), its gauges down.
    fn end_vanished(&self, id: Uuid, entry: &Entry) {
        if !entry.ledger.claim() {
            return;
        }
        log::error!("session {} vanished without ending; ending it", short(id));
        self.shared.monitor.unwatch(id);
        let metrics = &self.shared.metrics;
        metrics.sessions_active.dec();
        if entry.ledger.detached() {
            metrics.sessions_detached.dec();
        }
        let cause = EndCause::Vanished;
        metrics
            .sessions_ended
            .with_label_values(&[cause.as_str()])
            .inc();
        self.shared.audit.record(
            AuditEvent::new("session.ended")
                .session(id)
                .client(entry.client_ip)
                .field("cause", cause.as_str())
                .field(
                    "duration_ms",
                    (chrono::Utc::now() - entry.opened).num_milliseconds(),
                ),
        );
    }
}

/// Removes the containers that earlier runs of this deployment left behind (all of them,
/// or only those older than `older_than`). Returns how many were removed. Only for a
/// caller that holds the deployment's lock: then no other instance of it is alive here,
/// and every container of another instance is a leftover.
pub async fn reap_previous_runs(
    engine: &DockerEngine,
    deployment: &str,
    current_instance: &str,
    older_than: Option<Duration>,
) -> Result<usize, DockerError> {
    let containers = engine
        .list_managed(&[format!("{}={deployment}", labels::DEPLOYMENT)])
        .await?;
    let now = chrono::Utc::now().timestamp();
    let mut removed = 0;
    for c in containers {
        let labels_map = c.labels.unwrap_or_default();
        if labels_map.get(labels::INSTANCE).map(String::as_str) == Some(current_instance) {
            continue;
        }
        if let Some(min_age) = older_than {
            let age = now - c.created.unwrap_or(now);
            if age < min_age.as_secs() as i64 {
                continue;
            }
        }
        if let Some(id) = c.id {
            engine.remove(&id).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.watch_events(ctx);
        let every = self.shared.settings.reap_interval;
        ctx.run_interval(every, |act, ctx| act.reap_orphans(ctx));
    }
}

impl StreamHandler<Result<ContainerEvent, DockerError>> for Registry {
    fn handle(&mut self, item: Result<ContainerEvent, DockerError>, _ctx: &mut Context<Self>) {
        contain("registry::event", || {
            fail::fail_point!("registry::event");
            self.route_event(item)
        });
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The engine went away (restart): watch again once it answers.
        log::warn!("Docker events stream ended; reconnecting");
        ctx.run_later(Duration::from_secs(1), |act, ctx| act.watch_events(ctx));
    }
}

impl Registry {
    fn route_event(&mut self, item: Result<ContainerEvent, DockerError>) {
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                log::warn!("Docker events stream: {e}");
                return;
            }
        };
        // A warm pool sandbox carries the pool's label: the pool knows its session.
        let Some(session_id) = event
            .session
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
            .or_else(|| self.shared.pool.session_of(&event.container_id))
        else {
            return;
        };
        if event.action == "oom" {
            self.shared.metrics.reject(crate::rejection::Rejection::Oom);
        }
        if let Some(entry) = self.sessions.get(&session_id) {
            entry.addr.do_send(ContainerEventNotice {
                action: event.action,
            });
        }
    }
}

#[derive(Message)]
#[rtype(result = "Result<(Uuid, Addr<SessionActor>), Refusal>")]
pub struct OpenSession(pub SessionRequest);

impl Handler<OpenSession> for Registry {
    type Result = Result<(Uuid, Addr<SessionActor>), Refusal>;

    fn handle(
        &mut self,
        OpenSession(request): OpenSession,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        contain("registry::open", || {
            fail::fail_point!("registry::open");
            self.open(request, ctx)
        })
        .unwrap_or(Err(Refusal::Internal))
    }
}

impl Registry {
    fn open(
        &mut self,
        request: SessionRequest,
        ctx: &mut Context<Self>,
    ) -> Result<(Uuid, Addr<SessionActor>), Refusal> {
        if self.draining {
            return Err(Refusal::Draining);
        }
        if self.sessions.len() >= self.shared.settings.max_sessions {
            return Err(Refusal::AtCapacity);
        }
        let id = Uuid::new_v4();
        let fingerprint = request.fingerprint.clone();
        let client_ip = request.client.ip;
        let ledger = Arc::new(EndLedger::default());
        let session_ledger = ledger.clone();
        let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        let shared = self.shared.clone();
        let registry = ctx.address().recipient();
        let addr = SessionActor::start_in_arbiter(arbiter, move |_| {
            SessionActor::new(id, shared, registry, request, session_ledger)
        });
        self.sessions.insert(
            id,
            Entry {
                addr: addr.clone(),
                fingerprint,
                ledger,
                client_ip,
                opened: chrono::Utc::now(),
            },
        );
        Ok((id, addr))
    }
}

#[derive(Message)]
#[rtype(result = "Result<Addr<SessionActor>, Refusal>")]
pub struct ResumeSession {
    pub session_id: Uuid,
    pub fingerprint: Fingerprint,
}

impl Handler<ResumeSession> for Registry {
    type Result = Result<Addr<SessionActor>, Refusal>;

    fn handle(&mut self, msg: ResumeSession, _ctx: &mut Context<Self>) -> Self::Result {
        contain("registry::resume", || {
            fail::fail_point!("registry::resume");
            self.resume(msg)
        })
        .unwrap_or(Err(Refusal::Internal))
    }
}

impl Registry {
    fn resume(&mut self, msg: ResumeSession) -> Result<Addr<SessionActor>, Refusal> {
        let entry = self
            .sessions
            .get(&msg.session_id)
            .ok_or(Refusal::UnknownSession)?;
        if !entry.fingerprint.matches(&msg.fingerprint) {
            return Err(Refusal::CredentialsMismatch);
        }
        Ok(entry.addr.clone())
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    pub id: Uuid,
}

impl Handler<Unregister> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Unregister, _ctx: &mut Context<Self>) {
        contain("registry::unregister", || {
            fail::fail_point!("registry::unregister");
            self.unregister(msg.id)
        });
    }
}

impl Registry {
    fn unregister(&mut self, id: Uuid) {
        self.sessions.remove(&id);
        if self.sessions.is_empty() {
            for waiter in self.shutdown_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "Result<Vec<SessionInfo>, Refusal>")]
pub struct ListSessions;

impl Handler<ListSessions> for Registry {
    type Result = ResponseFuture<Result<Vec<SessionInfo>, Refusal>>;

    fn handle(&mut self, _: ListSessions, _ctx: &mut Context<Self>) -> Self::Result {
        let addrs = contain("registry::list", || {
            fail::fail_point!("registry::list");
            self.sessions
                .values()
                .map(|e| e.addr.clone())
                .collect::<Vec<_>>()
        });
        let Some(addrs) = addrs else {
            return Box::pin(async { Err(Refusal::Internal) });
        };
        Box::pin(async move {
            let answers = join_all(
                addrs
                    .iter()
                    .map(|a| tokio::time::timeout(DESCRIBE_TIMEOUT, a.send(Describe))),
            )
            .await;
            let mut infos: Vec<SessionInfo> = answers
                .into_iter()
                .filter_map(|r| r.ok().and_then(Result::ok))
                .collect();
            infos.sort_by_key(|i| i.created);
            Ok(infos)
        })
    }
}

/// The address of a live session (to watch it), if there is one.
#[derive(Message)]
#[rtype(result = "Option<Addr<SessionActor>>")]
pub struct FindSession(pub Uuid);

impl Handler<FindSession> for Registry {
    type Result = Option<Addr<SessionActor>>;

    fn handle(&mut self, msg: FindSession, _ctx: &mut Context<Self>) -> Self::Result {
        self.sessions.get(&msg.0).map(|e| e.addr.clone())
    }
}

#[derive(Message)]
#[rtype(result = "Result<Option<SessionInfo>, Refusal>")]
pub struct GetSession(pub Uuid);

impl Handler<GetSession> for Registry {
    type Result = ResponseFuture<Result<Option<SessionInfo>, Refusal>>;

    fn handle(&mut self, msg: GetSession, _ctx: &mut Context<Self>) -> Self::Result {
        let addr = contain("registry::get", || {
            fail::fail_point!("registry::get");
            self.sessions.get(&msg.0).map(|e| e.addr.clone())
        });
        let Some(addr) = addr else {
            return Box::pin(async { Err(Refusal::Internal) });
        };
        Box::pin(async move {
            let Some(addr) = addr else {
                return Ok(None);
            };
            Ok(tokio::time::timeout(DESCRIBE_TIMEOUT, addr.send(Describe))
                .await
                .ok()
                .and_then(Result::ok))
        })
    }
}

/// Ends one session from outside; false when there is no such session.
#[derive(Message)]
#[rtype(result = "Result<bool, Refusal>")]
pub struct EndSession {
    pub id: Uuid,
    pub cause: EndCause,
}

impl Handler<EndSession> for Registry {
    type Result = Result<bool, Refusal>;

    fn handle(&mut self, msg: EndSession, _ctx: &mut Context<Self>) -> Self::Result {
        contain("registry::end", || {
            fail::fail_point!("registry::end");
            match self.sessions.get(&msg.id) {
                Some(entry) => {
                    entry.addr.do_send(End(msg.cause));
                    true
                }
                None => false,
            }
        })
        .ok_or(Refusal::Internal)
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Capacity {
    pub active: usize,
    pub max: usize,
    pub draining: bool,
}

#[derive(Message)]
#[rtype(result = "Result<Capacity, Refusal>")]
pub struct GetCapacity;

impl Handler<GetCapacity> for Registry {
    type Result = Result<Capacity, Refusal>;

    fn handle(&mut self, _: GetCapacity, _ctx: &mut Context<Self>) -> Self::Result {
        contain("registry::capacity", || {
            fail::fail_point!("registry::capacity");
            Capacity {
                active: self.sessions.len(),
                max: self.shared.settings.max_sessions,
                draining: self.draining,
            }
        })
        .ok_or(Refusal::Internal)
    }
}

/// Stop taking sessions; end every live one with `cause` (after `warn` has passed, during
/// which each client sees a warning); resolve once all have ended or `deadline` passes.
/// Returns the number of sessions that were live.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain {
    pub warn: Duration,
    pub cause: EndCause,
    pub deadline: Duration,
}

#[derive(Message)]
#[rtype(result = "()")]
struct WarnAll {
    seconds_left: u64,
}

impl Handler<WarnAll> for Registry {
    type Result = ();

    fn handle(&mut self, msg: WarnAll, _ctx: &mut Context<Self>) {
        contain("registry::warn_all", || {
            fail::fail_point!("registry::warn_all");
            for entry in self.sessions.values() {
                entry.addr.do_send(crate::session::ServerWarning {
                    kind: crate::notice::WarningKind::ServerShutdown,
                    seconds_left: msg.seconds_left,
                });
            }
        });
    }
}

impl Handler<Drain> for Registry {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) -> Self::Result {
        // A failure here must not leave the sessions running past a shutdown: the drain
        // goes on without its failed part.
        contain("registry::drain", || fail::fail_point!("registry::drain"));
        self.draining = true;
        let live = self.sessions.len();
        self.shared.audit.record(
            AuditEvent::new("admin.drain")
                .field("sessions", live)
                .field("cause", msg.cause.as_str()),
        );
        ctx.notify(WarnAll {
            seconds_left: msg.warn.as_secs(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.sessions.is_empty() {
            let _ = tx.send(());
        } else {
            self.shutdown_waiters.push(tx);
        }
        let started = Instant::now();
        let cause = msg.cause;
        let warn = msg.warn;
        let deadline = msg.deadline;
        Box::pin(
            actix::fut::wrap_future::<_, Self>(tokio::time::sleep(warn))
                .map(move |_, act: &mut Registry, _ctx| {
                    for entry in act.sessions.values() {
                        entry.addr.do_send(End(cause.clone()));
                    }
                })
                .then(move |_, _act, _ctx| {
                    let left = deadline.saturating_sub(started.elapsed());
                    actix::fut::wrap_future(async move {
                        let _ = tokio::time::timeout(left, rx).await;
                    })
                })
                .map(move |_, _act, _ctx| live),
        )
    }
}
