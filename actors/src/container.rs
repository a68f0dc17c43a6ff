//! ContainerActor: the sandbox of one session. Creates the container with the security
//! profile, attaches its TTY raw before starting it, pumps bytes both ways, resizes, and
//! removes the container when it stops, whatever the reason. It reaches the engine only
//! through `DockerEngine`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bollard::models::{ContainerCreateBody, ContainerState, ContainerStateStatusEnum as Status};
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::audit::AuditEvent;
use crate::docker::{DockerEngine, DockerError, RawTty};
use crate::entry::{self, EntryError};
use crate::fault;
use crate::pool::Claim;
use crate::profile::{labels, ContainerSpec};
use crate::session::{
    short, ContainerOutput, ContainerStatus, End, EndCause, SessionActor, SessionRequest,
};
use crate::{SessionSettings, Shared};

#[cfg(test)]
mod tests;

/// Bytes read from the TTY per chunk (one chunk is in flight to the client at a time).
const READ_CHUNK: usize = 16 * 1024;
/// How often the pids limit's hit counter is read.
const PIDS_CHECK: Duration = Duration::from_secs(2);
/// Input chunks queued for a TTY that is not reading; more is refused.
const INPUT_QUEUE: usize = 256;

/// Why a session's sandbox never became ready (the session ends with `CreateFailed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("could not create the container: {0}")]
    Create(EngineFailure),
    #[error("could not attach to the container's TTY: {0}")]
    Attach(EngineFailure),
    #[error("could not start the container: {0}")]
    Start(EngineFailure),
    #[error("the sandbox did not take the session's environment: {0}")]
    Entry(EntryError),
}

impl SandboxError {
    /// The engine did not answer (rather than refused): a later attempt may succeed.
    pub fn engine_unavailable(&self) -> bool {
        match self {
            SandboxError::Create(f) | SandboxError::Attach(f) | SandboxError::Start(f) => {
                f.unavailable
            }
            SandboxError::Entry(_) => false,
        }
    }

    /// The engine operation that failed, as the `docker_errors_total` label names it.
    pub fn operation(&self) -> &'static str {
        match self {
            SandboxError::Create(_) => "create",
            SandboxError::Attach(_) => "attach",
            SandboxError::Start(_) => "start",
            SandboxError::Entry(_) => "entry",
        }
    }
}

/// An engine error as it travels in messages and end causes (which are cloned, and
/// `DockerError` cannot be): the engine's HTTP status when it answered, and its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EngineFailure {
    pub status: Option<u16>,
    pub message: String,
    /// The engine did not answer at all (`DockerError::is_unavailable`).
    pub unavailable: bool,
}

impl From<DockerError> for EngineFailure {
    fn from(e: DockerError) -> EngineFailure {
        EngineFailure {
            status: e.status(),
            unavailable: e.is_unavailable(),
            message: e.to_string(),
        }
    }
}

/// How a running sandbox ended other than by its shell exiting (`ContainerDied`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContainerDeath {
    #[error("container removed")]
    Removed,
    #[error("out of memory")]
    OutOfMemory,
    #[error("container killed")]
    Killed,
    /// The TTY ended and the engine could not be asked why (it restarted or is gone):
    /// the server cannot say the user ended it.
    #[error("the engine did not say how it ended")]
    Unknown,
    /// Reading or writing the TTY failed while the container ran: the session cannot go on.
    #[error("the terminal stream broke")]
    StreamBroken,
}

impl ContainerDeath {
    /// Reads a stopped container's state: `None` when its shell simply exited.
    pub fn of(state: &ContainerState) -> Option<ContainerDeath> {
        match state.status {
            Some(Status::REMOVING) | Some(Status::DEAD) => Some(ContainerDeath::Removed),
            // The init process exits with 137 only when it was sent SIGKILL. OOMKilled
            // alone is not enough: a hog killed earlier marks it while the shell lives on.
            _ if state.exit_code == Some(137) && state.oom_killed == Some(true) => {
                Some(ContainerDeath::OutOfMemory)
            }
            _ if state.exit_code == Some(137) => Some(ContainerDeath::Killed),
            _ => None,
        }
    }
}

/// The create request of one session's container, prepared before the actor starts.
pub struct ContainerSetup {
    name: String,
    body: ContainerCreateBody,
    /// The audit login uid its processes get (`monitor::seccomp::tag`).
    audit_id: Option<u32>,
    session_id: Uuid,
    cols: u16,
    rows: u16,
    /// The session's environment line for the entry program; `None` when the image has
    /// none (the environment is then in `body`).
    env_line: Option<Vec<u8>>,
}

/// The session's own environment: the client's allowlisted variables and its credentials.
fn session_env(request: &SessionRequest) -> Vec<(&str, &str)> {
    let mut env: Vec<(&str, &str)> = request
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if let Some(key) = &request.api_key {
        env.push(("ABLY_API_KEY", key));
    }
    if let Some(token) = &request.access_token {
        env.push(("ABLY_ACCESS_TOKEN", token));
    }
    env
}

/// The entry program in front of the shell, when the image has it and the shell is known:
/// the container's entrypoint and command.
fn entry_command(settings: &SessionSettings, wait: Duration) -> Option<(Vec<String>, Vec<String>)> {
    let (entry, shell) = (settings.profile.entry.as_ref()?, settings.cmd.as_ref()?);
    let mut cmd = vec![
        "--timeout".to_string(),
        wait.as_secs().max(1).to_string(),
        "--".to_string(),
    ];
    cmd.extend(shell.iter().cloned());
    Some((vec![entry.clone()], cmd))
}

/// A sandbox's create body: the session profile, `env` in its config, labelled with
/// `owner` (the session label, or the pool's), the entry program in front of the shell
/// (waiting `wait` for its line) when the image has it.
pub fn sandbox_body(
    settings: &SessionSettings,
    env: Vec<String>,
    owner: (&str, String),
    wait: Duration,
) -> ContainerCreateBody {
    let labels = HashMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (labels::DEPLOYMENT.to_string(), settings.deployment.clone()),
        (labels::INSTANCE.to_string(), settings.instance.clone()),
        (owner.0.to_string(), owner.1),
        (
            labels::CREATED_AT.to_string(),
            chrono::Utc::now().to_rfc3339(),
        ),
    ]);
    let (entrypoint, cmd) = match entry_command(settings, wait) {
        Some((entrypoint, cmd)) => (Some(entrypoint), Some(cmd)),
        None => (None, settings.cmd.clone()),
    };
    let spec = ContainerSpec {
        image: &settings.image,
        entrypoint,
        cmd,
        env,
        labels,
        cols: settings.default_cols,
        rows: settings.default_rows,
    };
    settings.profile.create_body(&spec)
}

impl ContainerSetup {
    pub fn new(shared: &Shared, session_id: Uuid, request: &SessionRequest) -> ContainerSetup {
        let settings = &shared.settings;
        let session_env = session_env(request);
        let mut env: Vec<String> = settings.base_env.clone();
        // With the entry program the session's environment goes over the TTY, never in
        // the container's config.
        let uses_entry = entry_command(settings, entry::COLD_TIMEOUT).is_some();
        let env_line = if uses_entry {
            Some(entry::encode_line(
                session_env.iter().map(|(k, v)| (*k, v.as_bytes())),
            ))
        } else {
            env.extend(session_env.iter().map(|(k, v)| format!("{k}={v}")));
            None
        };
        let owner = (labels::SESSION, session_id.to_string());
        let mut body = sandbox_body(settings, env, owner, entry::COLD_TIMEOUT);
        let audit_id = shared.monitor.tag(&mut body);
        ContainerSetup {
            name: format!("termcell-{}-{}", settings.deployment, session_id.simple()),
            body,
            audit_id,
            session_id,
            cols: settings.default_cols,
            rows: settings.default_rows,
            env_line,
        }
    }

    /// The audit login uid the container's processes get, when blocked calls are audited.
    pub fn audit_id(&self) -> Option<u32> {
        self.audit_id
    }
}

/// The way into the sandbox's TTY: the session writes keystrokes here itself, straight to
/// the task that writes the TTY, without a hop through the container actor.
#[derive(Clone)]
pub struct TtyInput {
    queue: mpsc::Sender<Bytes>,
}

impl TtyInput {
    /// Queues input for the TTY; `false` when the TTY is not reading (the queue is full or
    /// the writer is gone), and the input is dropped.
    pub fn send(&self, data: Bytes) -> bool {
        self.queue.try_send(data).is_ok()
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct ContainerResize {
    pub cols: u16,
    pub rows: u16,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct StopContainer;

pub struct ContainerActor {
    shared: Arc<Shared>,
    session: Addr<SessionActor>,
    setup: Option<ContainerSetup>,
    session_id: Uuid,
    /// The container, once created (set by `launch` as soon as the engine answers, so that
    /// a failure later in the launch still removes it).
    id: Arc<parking_lot::Mutex<Option<String>>>,
    pids_hits: u64,
    /// The session asked for this end (`StopContainer`) or was told of it (a launch
    /// failure, its own disappearance). Otherwise the actor failed: after a panic actix may
    /// still run `stopped()` as it drops the actor, or only `drop` runs.
    session_knows: bool,
}

impl ContainerActor {
    pub fn new(
        shared: Arc<Shared>,
        session: Addr<SessionActor>,
        setup: ContainerSetup,
    ) -> ContainerActor {
        ContainerActor {
            shared,
            session,
            session_id: setup.session_id,
            setup: Some(setup),
            id: Arc::default(),
            pids_hits: 0,
            session_knows: false,
        }
    }

    /// An end the session did not ask for: it ends too (1011, cause `crashed`).
    fn tell_session_of_failure(&mut self) {
        if std::mem::replace(&mut self.session_knows, true) {
            return;
        }
        log::error!(
            "session {}: its container actor failed; ending the session",
            short(self.session_id)
        );
        self.session.do_send(End(EndCause::Crashed));
    }

    fn container_id(&self) -> Option<String> {
        self.id.lock().clone()
    }

    /// Removes the container (once); a failure is left to the reaper.
    fn remove_container(&mut self) {
        let Some(id) = self.id.lock().take() else {
            return;
        };
        let engine = self.shared.engine.clone();
        let shared = self.shared.clone();
        let session_id = self.session_id;
        let removal = async move {
            let removed = engine.remove(&id).await;
            shared.pool.release(&id);
            match removed {
                Ok(()) => shared.audit.record(
                    AuditEvent::new("container.removed")
                        .session(session_id)
                        .field("container_id", &id),
                ),
                Err(e) => {
                    shared.metrics.docker_error("remove");
                    log::warn!(
                        "session {}: removing container {id} failed ({e}); the reaper will retry",
                        short(session_id)
                    );
                }
            }
        };
        // Also from `drop` after a panic, where only the runtime's handle is sure to work.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(removal);
        }
    }

    /// Audits new hits on the container's pids limit (fork bombs). Docker has no event
    /// for them, so the cgroup's counter is read while the container lives.
    fn check_pids(&mut self, id: &str) {
        let Some(hits) = self.shared.engine.pids_limit_hits(id) else {
            return;
        };
        if hits > self.pids_hits {
            self.pids_hits = hits;
            self.shared.audit.record(
                AuditEvent::new("security.pids")
                    .session(self.session_id)
                    .field("container_id", id)
                    .field("limit_hits", hits),
            );
        }
    }

    /// Starts the TTY's reader and writer tasks; the writer ends when the session drops the
    /// returned input (the session ends) or the TTY fails.
    fn run_tty(&mut self, id: String, tty: RawTty) -> TtyInput {
        let RawTty {
            reader,
            mut writer,
            initial,
        } = tty;
        let session = self.session.clone();
        let engine = self.shared.engine.clone();
        actix::spawn(async move {
            match fault::guarded(pump_output(&session, &engine, &id, reader, initial)).await {
                Ok(Some(status)) => session.do_send(status),
                // The session is gone; nobody to tell.
                Ok(None) => {}
                Err(panic) => crashed(&session, "TTY reader", &panic),
            }
        });
        let (queue, mut rx) = mpsc::channel::<Bytes>(INPUT_QUEUE);
        let session = self.session.clone();
        let session_id = self.session_id;
        actix::spawn(async move {
            let written = fault::guarded(async move {
                while let Some(data) = rx.recv().await {
                    fail::fail_point!("tty::write", |_| Err(std::io::Error::other(
                        "injected fault at tty::write"
                    )));
                    writer.write_all(&data).await?;
                }
                let _ = writer.shutdown().await;
                Ok::<(), std::io::Error>(())
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    log::warn!("session {}: writing the TTY failed: {e}", short(session_id));
                    session.do_send(ContainerStatus::Died(ContainerDeath::StreamBroken));
                }
                Err(panic) => crashed(&session, "TTY writer", &panic),
            }
        });
        TtyInput { queue }
    }
}

/// A task of the session's sandbox panicked: the session ends (1011, cause `crashed`).
fn crashed(session: &Addr<SessionActor>, task: &str, panic: &str) {
    log::error!("{task} failed ({panic}); ending its session");
    session.do_send(End(EndCause::Crashed));
}

/// Hands the TTY's output to the session, one chunk in flight, until the stream ends;
/// then says how the container ended. `None`: the session went away first.
async fn pump_output(
    session: &Addr<SessionActor>,
    engine: &DockerEngine,
    id: &str,
    mut reader: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    initial: Bytes,
) -> Option<ContainerStatus> {
    if !initial.is_empty() && session.send(ContainerOutput(initial)).await.is_err() {
        return None;
    }
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        buf.reserve(READ_CHUNK);
        let read = reader.read_buf(&mut buf).await;
        let read = (|| {
            fail::fail_point!("tty::read", |_| Err(std::io::Error::other(
                "injected fault at tty::read"
            )));
            read
        })();
        match read {
            Ok(0) => break,
            Err(e) => {
                log::warn!("reading the TTY of {id} failed: {e}");
                return Some(ContainerStatus::Died(ContainerDeath::StreamBroken));
            }
            Ok(_) => {
                // Take what is already buffered too, without waiting: fewer, larger
                // chunks per hand-off to the client.
                while buf.len() < READ_CHUNK {
                    match reader.read_buf(&mut buf).now_or_never() {
                        Some(Ok(n)) if n > 0 => {}
                        _ => break,
                    }
                }
                let chunk = buf.split().freeze();
                if session.send(ContainerOutput(chunk)).await.is_err() {
                    return None;
                }
            }
        }
    }
    Some(why_it_ended(engine, id).await)
}

/// The TTY stream ended: the shell exited, or the container was killed, OOM-killed or
/// removed from outside (then the session ends with 1011 and the cause).
async fn why_it_ended(engine: &DockerEngine, id: &str) -> ContainerStatus {
    match engine.inspect(id).await {
        Ok(inspect) => match ContainerDeath::of(&inspect.state.unwrap_or_default()) {
            Some(death) => ContainerStatus::Died(death),
            None => ContainerStatus::ShellExited,
        },
        Err(e) if e.status() == Some(404) => ContainerStatus::Died(ContainerDeath::Removed),
        Err(_) => ContainerStatus::Died(ContainerDeath::Unknown),
    }
}

/// Takes a waiting sandbox from the warm pool and writes the session's line to it; `None`
/// when the pool is off or empty, or the sandbox failed (then it is removed).
async fn claim_warm(
    shared: &Shared,
    setup: &ContainerSetup,
    line: &[u8],
    created: &parking_lot::Mutex<Option<String>>,
) -> Option<(String, RawTty)> {
    let pool = shared.pool.addr()?;
    let t0 = Instant::now();
    let claims = &shared.metrics.pool_claims;
    let Ok(Some(warm)) = pool.send(Claim).await else {
        claims.with_label_values(&["cold"]).inc();
        return None;
    };
    let crate::pool::Warm { id, mut tty } = warm;
    *created.lock() = Some(id.clone());
    if let Err(e) = entry::write_line(&mut *tty.writer, line).await {
        log::warn!(
            "session {}: the pool's sandbox {id} did not take its line ({e}); starting cold",
            short(setup.session_id)
        );
        created.lock().take();
        let _ = shared.engine.remove(&id).await;
        shared.pool.release(&id);
        claims.with_label_values(&["cold"]).inc();
        return None;
    }
    shared.pool.serve(&id, setup.session_id);
    claims.with_label_values(&["warm"]).inc();
    shared
        .metrics
        .pool_claim_seconds
        .observe(t0.elapsed().as_secs_f64());
    shared.audit.record(
        AuditEvent::new("container.claimed")
            .session(setup.session_id)
            .field("container_id", &id),
    );
    Some((id, tty))
}

/// Takes a sandbox from the warm pool, or creates, attaches and starts one; returns the
/// container id whenever one was created, so that a failure after create still removes it.
async fn launch(
    engine: DockerEngine,
    shared: Arc<Shared>,
    setup: ContainerSetup,
    created: Arc<parking_lot::Mutex<Option<String>>>,
) -> (Option<String>, Result<RawTty, SandboxError>) {
    if let Some(line) = &setup.env_line {
        if let Some((id, tty)) = claim_warm(&shared, &setup, line, &created).await {
            return (Some(id), Ok(tty));
        }
    }
    let t0 = Instant::now();
    let id = match engine.create(&setup.name, setup.body).await {
        Ok(id) => id,
        Err(e) => return (None, Err(SandboxError::Create(e.into()))),
    };
    *created.lock() = Some(id.clone());
    shared
        .metrics
        .container_create_seconds
        .observe(t0.elapsed().as_secs_f64());
    shared.audit.record(
        AuditEvent::new("container.created")
            .session(setup.session_id)
            .field("container_id", &id),
    );
    let tty = match engine.attach_raw(&id).await {
        Ok(tty) => tty,
        Err(e) => return (Some(id), Err(SandboxError::Attach(e.into()))),
    };
    let t1 = Instant::now();
    if let Err(e) = engine.start(&id).await {
        return (Some(id), Err(SandboxError::Start(e.into())));
    }
    shared
        .metrics
        .container_start_seconds
        .observe(t1.elapsed().as_secs_f64());
    // ConsoleSize at create is ignored by engines before API 1.42: size it now.
    if let Err(e) = engine.resize(&id, setup.cols, setup.rows).await {
        log::debug!("initial resize failed: {e}");
    }
    match setup.env_line {
        Some(line) => {
            let tty = hand_over(tty, &line).await.map_err(SandboxError::Entry);
            (Some(id), tty)
        }
        None => (Some(id), Ok(tty)),
    }
}

/// Gives a started sandbox's entry program the session's environment line; the TTY that
/// returns starts with the shell's output.
async fn hand_over(mut tty: RawTty, line: &[u8]) -> Result<RawTty, EntryError> {
    let initial = std::mem::take(&mut tty.initial);
    tty.initial = entry::await_ready(&mut *tty.reader, initial, entry::COLD_TIMEOUT).await?;
    entry::write_line(&mut *tty.writer, line).await?;
    Ok(tty)
}

impl Actor for ContainerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let setup = self.setup.take().expect("started once");
        let engine = self.shared.engine.clone();
        let shared = self.shared.clone();
        // `wait`: input and resizes queue in the mailbox until the TTY is attached.
        ctx.wait(
            launch(engine, shared, setup, self.id.clone())
                .into_actor(self)
                .map(|(id, result), act, ctx| {
                    fail::fail_point!("container::launched");
                    match result {
                        Ok(tty) => {
                            let id = id.expect("a started container has an id");
                            let input = act.run_tty(id.clone(), tty);
                            act.session.do_send(ContainerStatus::Ready {
                                container_id: id.clone(),
                                input,
                            });
                            ctx.run_interval(PIDS_CHECK, move |act, ctx| {
                                // A session that vanished takes its sandbox with it.
                                if !act.session.connected() {
                                    act.session_knows = true;
                                    ctx.stop();
                                    return;
                                }
                                act.check_pids(&id);
                            });
                        }
                        Err(error) => {
                            act.shared.metrics.docker_error(error.operation());
                            act.session.do_send(ContainerStatus::LaunchFailed(error));
                            act.session_knows = true;
                            ctx.stop();
                        }
                    }
                }),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.tell_session_of_failure();
        if let Some(id) = self.container_id() {
            self.check_pids(&id);
        }
        self.remove_container();
    }
}

/// A container actor that panicked may vanish without `stopped()`, but it is dropped:
/// its session ends (1011, cause `crashed`) and its container is removed.
impl Drop for ContainerActor {
    fn drop(&mut self) {
        self.tell_session_of_failure();
        self.remove_container();
    }
}

impl Handler<ContainerResize> for ContainerActor {
    type Result = ();

    fn handle(&mut self, msg: ContainerResize, _ctx: &mut Context<Self>) {
        fail::fail_point!("container::resize");
        if let Some(id) = self.container_id() {
            let engine = self.shared.engine.clone();
            let shared = self.shared.clone();
            let session = self.session.clone();
            actix::spawn(async move {
                // A failed resize costs the user a wrong size, not the session.
                match fault::guarded(engine.resize(&id, msg.cols, msg.rows)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        shared.metrics.docker_error("resize");
                        log::debug!("resize of {id} failed: {e}");
                    }
                    Err(panic) => crashed(&session, "resize", &panic),
                }
            });
        }
    }
}

impl Handler<StopContainer> for ContainerActor {
    type Result = ();

    fn handle(&mut self, _: StopContainer, ctx: &mut Context<Self>) {
        self.session_knows = true;
        fail::fail_point!("container::stop");
        ctx.stop();
    }
}
