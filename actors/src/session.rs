//! SessionActor: one per terminal session. Owns the session's container and timers (its
//! children), the model of its screen and the attached client, and decides the single end
//! cause. It never sees the wire format: clients receive `ToClient` events. Every byte of
//! output is fed to the screen model before it is handed to a client, so a client that
//! attaches later is drawn the screen as the output so far left it, then live output.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit::AuditEvent;
use crate::budget::Credit;
use crate::container::{
    ContainerActor, ContainerDeath, ContainerResize, ContainerSetup, SandboxError, StopContainer,
    TtyInput,
};
use crate::credentials::Fingerprint;
use crate::monitor::{self, Traffic};
use crate::notice::{Notice, WarningKind};
use crate::ratelimit::{SessionLimiter, Slot};
use crate::recording::{Recorder, RecordingHeader};
use crate::registry::Unregister;
use crate::rejection::Rejection;
use crate::screen::{ScreenModel, Size, CLEAR};
use crate::timeout::{TimeoutActor, TimerEvent, TimerKind, TimerUpdate};
use crate::viewers::{ToViewer, Unwatch, ViewerHandle, Viewers, Watch, WatchRefused};
use crate::Shared;

#[cfg(test)]
mod tests;

/// Why a session ended. Exactly one per session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndCause {
    ShellExited,
    IdleTimeout,
    MaxDuration,
    GraceExpired,
    ClientClosed,
    AdminKill,
    Shutdown,
    RateLimited,
    /// The sandbox never became ready.
    CreateFailed(SandboxError),
    /// The sandbox ended under a running session, other than by its shell exiting.
    ContainerDied(ContainerDeath),
    /// One of the session's actors or tasks failed (a panic): the session is wound up
    /// by whoever noticed (its own `drop`, its container, timers or bridge).
    Crashed,
    /// The session actor vanished without ending; the registry's reaper ended it.
    Vanished,
}

impl EndCause {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndCause::ShellExited => "shell_exited",
            EndCause::IdleTimeout => "idle_timeout",
            EndCause::MaxDuration => "max_duration",
            EndCause::GraceExpired => "grace_expired",
            EndCause::ClientClosed => "client_closed",
            EndCause::AdminKill => "admin_kill",
            EndCause::Shutdown => "shutdown",
            EndCause::RateLimited => "rate_limited",
            EndCause::CreateFailed(_) => "create_failed",
            EndCause::ContainerDied(_) => "container_died",
            EndCause::Crashed => "crashed",
            EndCause::Vanished => "vanished",
        }
    }
}

/// What a session tells its attached client. The bridge encodes these for the wire.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum ToClient {
    /// The TTY is attached (new session or resume): `connected`, `hello`, then output.
    Connected { session_id: Uuid },
    /// Terminal output: the shell's, or a snapshot that redraws the screen on resume.
    Output(Bytes),
    Warning {
        kind: WarningKind,
        seconds_left: u64,
    },
    /// One notice line, of one or more facts.
    Notice(Vec<Notice>),
    /// The session ended; the socket is closed after telling the client why.
    Ended(EndCause),
    /// Another socket took this session over.
    TakenOver,
}

/// A socket attached to a session.
#[derive(Clone)]
pub struct ClientHandle {
    pub conn_id: u64,
    pub recipient: Recipient<ToClient>,
    pub ip: IpAddr,
}

/// Everything a new session needs from the auth frame, already validated.
pub struct SessionRequest {
    pub env: Vec<(String, String)>,
    pub api_key: Option<String>,
    pub access_token: Option<String>,
    pub fingerprint: Fingerprint,
    pub client: ClientHandle,
    pub slot: Option<Slot>,
    pub requested_at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Starting,
    Attached,
    Detached,
    Ending,
}

/// A read-only view of a session for operators: never credentials.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub id: Uuid,
    pub state: SessionState,
    pub created: DateTime<Utc>,
    pub last_input: Option<DateTime<Utc>>,
    pub client_address: IpAddr,
    pub container_id: Option<String>,
    pub image: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub credential_fingerprint: String,
    /// Resource use at the latest sample (`None` until the sandbox has been sampled).
    pub usage: Option<crate::monitor::Usage>,
    /// Operators watching it live, read-only.
    pub viewers: usize,
    /// Its recording so far (`None` when it is not recorded).
    pub recording: Option<crate::recording::RecordingSummary>,
}

// Messages to a session. What a client sends carries a credit on its connection's read
// budget: the socket is not read further while too much of it waits in this mailbox.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Input(pub Bytes, pub Credit);

#[derive(Message)]
#[rtype(result = "()")]
pub struct Resize {
    pub cols: u16,
    pub rows: u16,
    pub credit: Credit,
}

/// A socket went away, and how.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub conn_id: u64,
    pub departure: Departure,
}

/// How a socket went away: what the client said in its close, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// Dropped, or closed without saying why: the full resume grace (a network drop).
    Dropped,
    /// The page said it was closing (a closed tab, or a reload that resumes at once): the
    /// short grace, so a closed tab soon gives its place back.
    PageClosed,
    /// The user is done: end at once.
    UserDone,
}

/// A new socket takes the session over (resume).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach(pub ClientHandle);

/// End the session from outside (admin kill, drain, shutdown, container events).
#[derive(Message)]
#[rtype(result = "()")]
pub struct End(pub EndCause);

#[derive(Message)]
#[rtype(result = "SessionInfo")]
pub struct Describe;

/// A warning from the server as a whole (drain, shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ServerWarning {
    pub kind: WarningKind,
    pub seconds_left: u64,
}

/// Output read from the container; answered once the client has taken it (back-pressure).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ContainerOutput(pub Bytes);

#[derive(Message)]
#[rtype(result = "()")]
pub enum ContainerStatus {
    /// The sandbox runs; `input` is its TTY, which the session writes directly.
    Ready {
        container_id: String,
        input: TtyInput,
    },
    ShellExited,
    LaunchFailed(SandboxError),
    Died(ContainerDeath),
}

/// A notice from the Docker events stream about this session's container.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ContainerEventNotice {
    pub action: String,
}

/// A session's end as the session and the registry share it. The session accounts for its
/// end (audit, gauges) as it stops; if it vanished without doing so, the registry's reaper
/// does. `claim` makes exactly one of them the one.
#[derive(Debug, Default)]
pub struct EndLedger {
    claimed: AtomicBool,
    detached: AtomicBool,
}

impl EndLedger {
    /// True for the first caller only.
    pub fn claim(&self) -> bool {
        !self.claimed.swap(true, Ordering::SeqCst)
    }

    /// Whether the session counts in the detached-sessions gauge.
    pub fn detached(&self) -> bool {
        self.detached.load(Ordering::SeqCst)
    }
}

pub struct SessionActor {
    id: Uuid,
    ledger: Arc<EndLedger>,
    shared: Arc<Shared>,
    registry: Recipient<Unregister>,
    fingerprint: Fingerprint,
    client_ip: IpAddr,
    client: Option<ClientHandle>,
    state: SessionState,
    container: Option<Addr<ContainerActor>>,
    container_id: Option<String>,
    /// The sandbox's TTY, once it is ready (and the client told `connected`): keystrokes go
    /// there without another hop.
    tty: Option<TtyInput>,
    timer: Option<Addr<TimeoutActor>>,
    /// `None` when the server keeps no screen models (`--screen-model false`).
    screen: Option<ScreenModel>,
    /// The size the screen model has (the TTY's, once the container is ready).
    screen_size: Size,
    /// The client was just drawn a snapshot: if its first resize changes the size, it is
    /// drawn again at the new size (a window resized while its socket was down).
    redraw_on_resize: bool,
    /// The connection an output chunk is on its way to; a snapshot for that client waits
    /// for it, so that it reaches the client after the chunk.
    output_in_flight: Option<u64>,
    redraw_due: bool,
    /// The screen model is to parse what it holds back once output pauses.
    settle_due: bool,
    /// Input that arrived before the TTY was attached; delivered once it is.
    pending_input: Vec<Bytes>,
    pending_input_bytes: usize,
    pending_resize: Option<(u16, u16)>,
    limiter: SessionLimiter,
    end: Option<EndCause>,
    created: DateTime<Utc>,
    requested_at: Instant,
    first_output_seen: bool,
    last_input: Option<DateTime<Utc>>,
    bytes_in: u64,
    bytes_out: u64,
    /// The same byte counts, for the resource monitor.
    traffic: Arc<Traffic>,
    /// The audit login uid of the sandbox's processes, when blocked calls are audited.
    audit_id: Option<u32>,
    setup: Option<ContainerSetup>,
    refusals_audited: HashMap<Rejection, Instant>,
    /// When the user was last told that input was refused (at most once per `NOTICE_EVERY`,
    /// so a flood of tiny frames does not become a flood of notices to a client that may
    /// not be reading).
    last_notice: Option<Instant>,
    /// The end has been wound up (by `stopped()`, or by `drop` after a panic).
    wound_up: bool,
    /// The session's recording, from the moment its TTY is ready (`--record-dir`).
    recorder: Option<Recorder>,
    /// Operators watching the session (read-only).
    viewers: Viewers,
    _slot: Option<Slot>,
}

/// A session audits each kind of refusal at most once per this period.
const REFUSAL_AUDIT_EVERY: Duration = Duration::from_secs(60);
/// The user is told of refused input at most once per this period.
const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// How long output must pause before the screen model parses what it holds back.
const SETTLE_AFTER: Duration = Duration::from_millis(200);

/// Input kept while the container starts; more than this is refused.
const PENDING_INPUT_LIMIT: usize = 64 * 1024;

impl SessionActor {
    pub fn new(
        id: Uuid,
        shared: Arc<Shared>,
        registry: Recipient<Unregister>,
        request: SessionRequest,
        ledger: Arc<EndLedger>,
    ) -> SessionActor {
        let settings = &shared.settings;
        let setup = ContainerSetup::new(&shared, id, &request);
        let screen_size = Size {
            cols: settings.default_cols,
            rows: settings.default_rows,
        };
        SessionActor {
            id,
            ledger,
            registry,
            fingerprint: request.fingerprint,
            client_ip: request.client.ip,
            client: Some(request.client),
            state: SessionState::Starting,
            container: None,
            container_id: None,
            tty: None,
            timer: None,
            screen: settings
                .screen_model
                .then(|| ScreenModel::new(screen_size, settings.scrollback_lines)),
            screen_size,
            redraw_on_resize: false,
            output_in_flight: None,
            redraw_due: false,
            settle_due: false,
            pending_input: Vec::new(),
            pending_input_bytes: 0,
            pending_resize: None,
            limiter: SessionLimiter::new(&settings.limits),
            end: None,
            created: Utc::now(),
            requested_at: request.requested_at,
            first_output_seen: false,
            last_input: None,
            bytes_in: 0,
            bytes_out: 0,
            traffic: Arc::default(),
            audit_id: setup.audit_id(),
            setup: Some(setup),
            refusals_audited: HashMap::new(),
            last_notice: None,
            wound_up: false,
            recorder: None,
            viewers: Viewers::new(settings.max_viewers),
            _slot: request.slot,
            shared,
        }
    }

    fn send_client(&self, msg: ToClient) {
        if let Some(client) = &self.client {
            client.recipient.do_send(msg);
        }
    }

    fn notify_timer(&self, update: TimerUpdate) {
        if let Some(timer) = &self.timer {
            timer.do_send(update);
        }
    }

    /// Hands input to the TTY's writer; a TTY that is not reading loses it.
    fn write_tty(&self, tty: &TtyInput, data: Bytes) {
        if !tty.send(data) {
            log::debug!(
                "session {}: the TTY is not reading input; input dropped",
                short(self.id)
            );
        }
    }

    fn deliver_input(&mut self, data: Bytes) {
        if let Some(recorder) = &mut self.recorder {
            recorder.input(&data);
        }
        self.bytes_in += data.len() as u64;
        self.traffic.add_in(data.len());
        self.shared.metrics.bytes_in.inc_by(data.len() as u64);
        match &self.tty {
            Some(tty) => self.write_tty(tty, data),
            None => {
                if self.pending_input_bytes + data.len() > PENDING_INPUT_LIMIT {
                    log::debug!(
                        "session {}: input before start over the limit, dropped",
                        short(self.id)
                    );
                    return;
                }
                self.pending_input_bytes += data.len();
                self.pending_input.push(data);
            }
        }
    }

    /// Ends the session with one cause: tells the client, stops the children (the
    /// container actor removes the container), unregisters, audits.
    fn finish(&mut self, cause: EndCause, ctx: &mut Context<Self>) {
        if self.end.is_some() {
            return;
        }
        log::info!("session {} ended: {}", short(self.id), cause.as_str());
        self.end = Some(cause.clone());
        self.set_state(SessionState::Ending);
        if let Some(client) = self.client.take() {
            client.recipient.do_send(ToClient::Ended(cause.clone()));
        }
        ctx.stop();
    }

    /// Counts a refusal by a per-session limit and audits it: every kind once per
    /// `REFUSAL_AUDIT_EVERY`, so a flood cannot flood the audit log.
    fn refused(&mut self, kind: Rejection) {
        self.shared.metrics.reject(kind);
        let now = Instant::now();
        let due = self
            .refusals_audited
            .get(&kind)
            .is_none_or(|at| now.duration_since(*at) >= REFUSAL_AUDIT_EVERY);
        if due {
            self.refusals_audited.insert(kind, now);
            self.shared.audit.record(
                AuditEvent::rejection(kind)
                    .session(self.id)
                    .client(self.client_ip),
            );
        }
    }

    /// Changes the state, keeping the detached-sessions gauge in step.
    fn set_state(&mut self, state: SessionState) {
        let detached = &self.shared.metrics.sessions_detached;
        match (
            self.state == SessionState::Detached,
            state == SessionState::Detached,
        ) {
            (true, false) => detached.dec(),
            (false, true) => detached.inc(),
            _ => {}
        }
        self.ledger
            .detached
            .store(state == SessionState::Detached, Ordering::SeqCst);
        self.state = state;
    }

    fn detach_client(&mut self, page_closed: bool, ctx: &mut Context<Self>) {
        if self.client.take().is_some() && self.end.is_none() {
            self.set_state(SessionState::Detached);
            self.notify_timer(TimerUpdate::Detached { page_closed });
            let settings = &self.shared.settings;
            let grace = if page_closed {
                settings.closed_page_grace
            } else {
                settings.resume_grace
            };
            log::info!(
                "session {} detached, grace period of {}s started",
                short(self.id),
                grace.as_secs()
            );
            if grace.is_zero() {
                self.finish(EndCause::GraceExpired, ctx);
            }
        }
    }

    /// Resizes the TTY and the screen model together.
    fn resize_tty(&mut self, container: &Addr<ContainerActor>, size: Size) {
        container.do_send(ContainerResize {
            cols: size.cols,
            rows: size.rows,
        });
        if size != self.screen_size {
            self.screen_size = size;
            if let Some(screen) = &mut self.screen {
                screen.resize(size);
            }
            if let Some(recorder) = &mut self.recorder {
                recorder.resize(size);
            }
            self.tell_viewers(ToViewer::Resize(size));
        }
    }

    /// Sends the attached client a snapshot of the screen, after the output chunk on its
    /// way to it (if any).
    fn redraw(&mut self) {
        let client = self.client.as_ref().map(|c| c.conn_id);
        if client.is_some() && self.output_in_flight == client {
            self.redraw_due = true;
            return;
        }
        self.redraw_due = false;
        let snapshot = self.snapshot();
        log::debug!(
            "session {}: screen redrawn ({} bytes)",
            short(self.id),
            snapshot.len()
        );
        self.send_client(ToClient::Output(snapshot));
    }

    /// Feeds output to the screen model; if it holds some back, it parses it once output
    /// has paused, so that an idle session keeps no more than its screen.
    fn feed_screen(&mut self, data: &[u8], ctx: &mut Context<Self>) {
        let Some(screen) = &mut self.screen else {
            return;
        };
        screen.feed(data);
        if screen.holds_output() && !self.settle_due {
            self.settle_due = true;
            ctx.run_later(SETTLE_AFTER, |act, _| {
                act.settle_due = false;
                if let Some(screen) = &mut act.screen {
                    screen.settle();
                }
            });
        }
    }

    /// What a client that comes back is drawn: the screen, or without a model a cleared
    /// terminal (so that nothing it showed before appears twice).
    fn snapshot(&mut self) -> Bytes {
        match &mut self.screen {
            Some(screen) => screen.snapshot(),
            None => Bytes::from_static(CLEAR.as_bytes()),
        }
    }
}

impl SessionActor {
    /// Hands every viewer a message without waiting; the slow ones are dropped.
    fn tell_viewers(&mut self, msg: ToViewer) {
        if self.viewers.is_empty() {
            return;
        }
        for (viewer, since) in self.viewers.send(&msg) {
            log::info!(
                "session {}: viewer {} did not keep up, dropped",
                short(self.id),
                viewer.id
            );
            self.shared
                .recordings
                .metrics
                .viewers_dropped
                .with_label_values(&["slow"])
                .inc();
            self.unwatched(&viewer, since, "slow");
        }
    }

    /// A view ended: the gauge and the audit line that closes `session.watched`.
    fn unwatched(&self, viewer: &ViewerHandle, since: Instant, reason: &str) {
        self.shared.recordings.metrics.viewers_active.dec();
        self.shared.audit.record(
            AuditEvent::new("session.watch_ended")
                .session(self.id)
                .client(viewer.ip)
                .field("viewer", viewer.id)
                .field("operator", viewer.operator.as_deref())
                .field("reason", reason)
                .field("watched_ms", since.elapsed().as_millis() as u64),
        );
    }
}

impl Handler<Watch> for SessionActor {
    type Result = Result<(), WatchRefused>;

    fn handle(&mut self, Watch(viewer): Watch, _ctx: &mut Context<Self>) -> Self::Result {
        fail::fail_point!("session::watch");
        if self.end.is_some() {
            return Err(WatchRefused::Ended);
        }
        if let Some(refused) = self.viewers.full() {
            self.shared
                .recordings
                .metrics
                .viewers_dropped
                .with_label_values(&["limit"])
                .inc();
            return Err(refused);
        }
        // The screen as it is, then live output: the viewer's mailbox is empty, so these
        // fit; output fed from now on comes after them.
        let first = [
            ToViewer::Watching {
                session_id: self.id,
                size: self.screen_size,
            },
            ToViewer::Output(self.snapshot()),
        ];
        for msg in first {
            if viewer.recipient.try_send(msg).is_err() {
                return Err(WatchRefused::Ended);
            }
        }
        self.shared.recordings.metrics.viewers_active.inc();
        self.shared.recordings.metrics.viewers_started.inc();
        self.shared.audit.record(
            AuditEvent::new("session.watched")
                .session(self.id)
                .client(viewer.ip)
                .field("viewer", viewer.id)
                .field("operator", viewer.operator.as_deref())
                .field("session_client", self.client_ip)
                .field("recorded", self.recorder.is_some()),
        );
        log::info!("session {}: viewer {} watching", short(self.id), viewer.id);
        self.viewers.add(viewer)
    }
}

impl Handler<Unwatch> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: Unwatch, _ctx: &mut Context<Self>) {
        fail::fail_point!("session::unwatch");
        if let Some((viewer, since)) = self.viewers.remove(msg.viewer_id) {
            self.unwatched(&viewer, since, "closed");
        }
    }
}

pub(crate) fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        let settings = &self.shared.settings;
        self.timer = Some(TimeoutActor::new(ctx.address().recipient(), settings).start());
        let setup = self.setup.take().expect("setup is taken once, at start");
        self.container =
            Some(ContainerActor::new(self.shared.clone(), ctx.address(), setup).start());
        self.shared.metrics.sessions_active.inc();
        self.shared.metrics.sessions_started.inc();
        self.shared.audit.record(
            AuditEvent::new("session.created")
                .session(self.id)
                .client(self.client_ip)
                .field("image", &settings.image)
                .field("credential_fingerprint", self.fingerprint.prefix()),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.wind_up();
    }
}

/// A session actor that panicked may vanish without `stopped()`, but it is dropped: it
/// ends there, with one cause, one `session.ended`, its gauges and its container.
impl Drop for SessionActor {
    fn drop(&mut self) {
        self.wind_up();
    }
}

impl SessionActor {
    /// Everything a session's end does once: children stopped, gauges, audit, registry.
    fn wind_up(&mut self) {
        if std::mem::replace(&mut self.wound_up, true) {
            return;
        }
        // `return`: the session vanishes without ending, as an actor lost with its arbiter
        // would; the registry's reaper must end it.
        fail::fail_point!("session::vanish", |_| ());
        if !self.ledger.claim() {
            // The reaper took it for vanished already.
            return;
        }
        // The children go with the session: the container actor removes the container.
        if let Some(container) = self.container.take() {
            container.do_send(StopContainer);
        }
        if let Some(timer) = self.timer.take() {
            timer.do_send(TimerUpdate::Stop);
        }
        // Only `finish` stops a session, and it sets the cause first: no cause means the
        // actor failed (a panic in a handler).
        let cause = match self.end.take() {
            Some(cause) => cause,
            None => {
                log::error!("session {} failed; ending it", short(self.id));
                if let Some(client) = self.client.take() {
                    client.recipient.do_send(ToClient::Ended(EndCause::Crashed));
                }
                EndCause::Crashed
            }
        };
        self.set_state(SessionState::Ending);
        self.shared.monitor.unwatch(self.id);
        self.shared.metrics.sessions_active.dec();
        self.shared
            .metrics
            .sessions_ended
            .with_label_values(&[cause.as_str()])
            .inc();
        let mut event = AuditEvent::new("session.ended")
            .session(self.id)
            .client(self.client_ip)
            .field("cause", cause.as_str())
            .field("bytes_in", self.bytes_in)
            .field("bytes_out", self.bytes_out)
            .field(
                "duration_ms",
                (Utc::now() - self.created).num_milliseconds(),
            );
        match &cause {
            EndCause::CreateFailed(error) => event = event.field("detail", error.to_string()),
            EndCause::ContainerDied(death) => event = event.field("detail", death.to_string()),
            _ => {}
        }
        if let Some(recorder) = self.recorder.take() {
            event = event.field("recording", recorder.finish());
        }
        for (viewer, since) in self.viewers.end(cause.as_str()) {
            self.unwatched(&viewer, since, "session_ended");
        }
        self.shared.audit.record(event);
        self.registry.do_send(Unregister { id: self.id });
    }
}

impl Handler<Input> for SessionActor {
    type Result = ();

    fn handle(&mut self, Input(data, _credit): Input, ctx: &mut Context<Self>) {
        fail::fail_point!("session::input");
        if self.end.is_some() {
            return;
        }
        let decision = self.limiter.filter_input(&data);
        if let Some(kind) = decision.limited {
            self.refused(kind);
        }
        if !decision.notices.is_empty() {
            let now = Instant::now();
            if self
                .last_notice
                .is_none_or(|at| now.duration_since(at) >= NOTICE_EVERY)
            {
                self.last_notice = Some(now);
                self.send_client(ToClient::Notice(decision.notices));
            }
        }
        if decision.end_session {
            self.refused(Rejection::InputAbuse);
            self.finish(EndCause::RateLimited, ctx);
            return;
        }
        if decision.forward.is_empty() {
            return;
        }
        // The client draws on what it was sent: a later resize is the user's.
        self.redraw_on_resize = false;
        self.last_input = Some(Utc::now());
        self.notify_timer(TimerUpdate::Activity);
        self.deliver_input(Bytes::from(decision.forward));
    }
}

impl Handler<Resize> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: Resize, _ctx: &mut Context<Self>) {
        fail::fail_point!("session::resize");
        if !self.limiter.allow_resize() {
            self.refused(Rejection::Resizes);
            return;
        }
        let size = Size {
            cols: msg.cols,
            rows: msg.rows,
        };
        match self.container.clone() {
            Some(container) if self.tty.is_some() => {
                let changed = size != self.screen_size;
                self.resize_tty(&container, size);
                if std::mem::take(&mut self.redraw_on_resize) && changed {
                    self.redraw();
                }
            }
            _ => self.pending_resize = Some((msg.cols, msg.rows)),
        }
    }
}

impl Handler<Detach> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        fail::fail_point!("session::detach");
        let current = self.client.as_ref().map(|c| c.conn_id);
        if current != Some(msg.conn_id) {
            return;
        }
        match msg.departure {
            Departure::UserDone => {
                self.client = None;
                self.finish(EndCause::ClientClosed, ctx);
            }
            Departure::PageClosed => self.detach_client(true, ctx),
            Departure::Dropped => self.detach_client(false, ctx),
        }
    }
}

impl Handler<Attach> for SessionActor {
    type Result = ();

    fn handle(&mut self, Attach(client): Attach, _ctx: &mut Context<Self>) {
        fail::fail_point!("session::attach");
        if self.end.is_some() {
            client
                .recipient
                .do_send(ToClient::Ended(self.end.clone().expect("checked")));
            return;
        }
        if let Some(old) = self.client.take() {
            old.recipient.do_send(ToClient::TakenOver);
        }
        self.shared.metrics.resumes.inc();
        self.shared.audit.record(
            AuditEvent::new("session.resumed")
                .session(self.id)
                .client(client.ip),
        );
        self.notify_timer(TimerUpdate::Attached);
        if self.tty.is_some() {
            self.set_state(SessionState::Attached);
            client.recipient.do_send(ToClient::Connected {
                session_id: self.id,
            });
            // The new socket's mailbox is empty: the snapshot comes right after
            // `connected`, and output fed from now on after it.
            client.recipient.do_send(ToClient::Output(self.snapshot()));
            self.redraw_on_resize = self.screen.is_some();
            self.redraw_due = false;
        } else {
            self.set_state(SessionState::Starting);
        }
        self.client = Some(client);
    }
}

impl Handler<End> for SessionActor {
    type Result = ();

    fn handle(&mut self, End(cause): End, ctx: &mut Context<Self>) {
        fail::fail_point!("session::end");
        self.finish(cause, ctx);
    }
}

impl Handler<ServerWarning> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: ServerWarning, _ctx: &mut Context<Self>) {
        fail::fail_point!("session::server_warning");
        self.send_client(ToClient::Warning {
            kind: msg.kind,
            seconds_left: msg.seconds_left,
        });
    }
}

impl Handler<Describe> for SessionActor {
    type Result = MessageResult<Describe>;

    fn handle(&mut self, _: Describe, _ctx: &mut Context<Self>) -> Self::Result {
        fail::fail_point!("session::describe");
        MessageResult(SessionInfo {
            id: self.id,
            state: self.state,
            created: self.created,
            last_input: self.last_input,
            client_address: self.client.as_ref().map(|c| c.ip).unwrap_or(self.client_ip),
            container_id: self.container_id.clone(),
            image: self.shared.settings.image.clone(),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            credential_fingerprint: self.fingerprint.prefix(),
            usage: self.shared.monitor.usage(self.id),
            viewers: self.viewers.len(),
            recording: self.recorder.as_ref().map(|r| r.summary()),
        })
    }
}

impl Handler<ContainerStatus> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: ContainerStatus, ctx: &mut Context<Self>) {
        fail::fail_point!("session::container_status");
        match msg {
            ContainerStatus::Ready {
                container_id,
                input,
            } => {
                self.shared.monitor.watch(monitor::Watch {
                    session: self.id,
                    container_id: container_id.clone(),
                    client: self.client_ip,
                    traffic: self.traffic.clone(),
                    audit_id: self.audit_id,
                });
                self.container_id = Some(container_id);
                let tty = input.clone();
                self.tty = Some(input);
                // The idle clock starts when the user can type, not while the sandbox starts.
                self.notify_timer(TimerUpdate::Activity);
                // The socket may have gone while the container started.
                if self
                    .client
                    .as_ref()
                    .is_some_and(|c| !c.recipient.connected())
                {
                    self.detach_client(false, ctx);
                }
                if self.client.is_some() {
                    self.set_state(SessionState::Attached);
                    self.send_client(ToClient::Connected {
                        session_id: self.id,
                    });
                } else {
                    self.set_state(SessionState::Detached);
                }
                let container = self
                    .container
                    .clone()
                    .expect("ready comes from the container");
                self.recorder = self.shared.recordings.begin(RecordingHeader {
                    session_id: self.id,
                    started: self.created,
                    size: self.screen_size,
                    image: &self.shared.settings.image,
                    client: self.client_ip,
                });
                if let Some((cols, rows)) = self.pending_resize.take() {
                    self.resize_tty(&container, Size { cols, rows });
                }
                for data in std::mem::take(&mut self.pending_input) {
                    if let Some(recorder) = &mut self.recorder {
                        recorder.input(&data);
                    }
                    self.write_tty(&tty, data);
                }
                self.pending_input_bytes = 0;
            }
            ContainerStatus::ShellExited => self.finish(EndCause::ShellExited, ctx),
            ContainerStatus::LaunchFailed(error) => {
                log::warn!("session {}: sandbox failed: {error}", short(self.id));
                self.finish(EndCause::CreateFailed(error), ctx);
            }
            ContainerStatus::Died(death) => {
                log::warn!("session {}: sandbox died: {death}", short(self.id));
                self.finish(EndCause::ContainerDied(death), ctx);
            }
        }
    }
}

impl Handler<ContainerEventNotice> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: ContainerEventNotice, ctx: &mut Context<Self>) {
        fail::fail_point!("session::container_event");
        match msg.action.as_str() {
            "oom" => {
                self.shared.audit.record(
                    AuditEvent::new("security.oom")
                        .session(self.id)
                        .client(self.client_ip)
                        .field("container_id", self.container_id.clone()),
                );
                self.send_client(ToClient::Notice(vec![Notice::MemoryKill]));
            }
            "destroy" if self.end.is_none() => {
                self.finish(EndCause::ContainerDied(ContainerDeath::Removed), ctx);
            }
            _ => {}
        }
    }
}

impl Handler<ContainerOutput> for SessionActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(
        &mut self,
        ContainerOutput(data): ContainerOutput,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        fail::fail_point!("session::container_output");
        if !self.first_output_seen {
            self.first_output_seen = true;
            self.shared
                .metrics
                .first_output_seconds
                .observe(self.requested_at.elapsed().as_secs_f64());
        }
        self.bytes_out += data.len() as u64;
        self.traffic.add_out(data.len());
        self.shared.metrics.bytes_out.inc_by(data.len() as u64);
        if let Some(recorder) = &mut self.recorder {
            recorder.output(&data);
        }
        self.tell_viewers(ToViewer::Output(data.clone()));
        let Some(client) = self.client.clone() else {
            self.feed_screen(&data, ctx);
            return Box::pin(actix::fut::ready(()));
        };
        // One chunk in flight: the container reader waits for this answer, so a client
        // that does not drain its socket pauses the reader (and so the TTY).
        let stall = self.shared.settings.client_stall_timeout;
        let send = client.recipient.send(ToClient::Output(data.clone()));
        // Parsed while the client takes the chunk: before any later message (a resume's
        // snapshot) is handled.
        self.feed_screen(&data, ctx);
        self.output_in_flight = Some(client.conn_id);
        Box::pin(
            async move { tokio::time::timeout(stall, send).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.output_in_flight = None;
                    if act.redraw_due {
                        act.redraw();
                    }
                    let delivered = matches!(result, Ok(Ok(())));
                    let still_attached =
                        act.client.as_ref().map(|c| c.conn_id) == Some(client.conn_id);
                    if !delivered && still_attached {
                        log::info!(
                            "session {}: client stopped taking output, treating it as dropped",
                            short(act.id)
                        );
                        act.detach_client(false, ctx);
                    }
                }),
        )
    }
}

impl Handler<TimerEvent> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: TimerEvent, ctx: &mut Context<Self>) {
        fail::fail_point!("session::timer_event");
        match msg {
            TimerEvent::Warn { kind, seconds_left } => {
                let kind = match kind {
                    TimerKind::Idle => WarningKind::Idle,
                    TimerKind::MaxDuration => WarningKind::MaxDuration,
                    TimerKind::Grace => return,
                };
                self.send_client(ToClient::Warning { kind, seconds_left });
            }
            TimerEvent::Expired(kind) => {
                let cause = match kind {
                    TimerKind::Idle => EndCause::IdleTimeout,
                    TimerKind::MaxDuration => EndCause::MaxDuration,
                    TimerKind::Grace => EndCause::GraceExpired,
                };
                self.finish(cause, ctx);
            }
            TimerEvent::Failed => self.finish(EndCause::Crashed, ctx),
        }
    }
}

/// The time a caller may wait for a session to answer `Describe`.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
