//! WsBridge: one actor per WebSocket. Decodes client frames (auth, control, input) and
//! hands them to its session; encodes what the session tells it. The only module that uses
//! actix-web-actors (deprecated upstream; kept in one place for a later move to actix-ws).
//! What a client sends is bounded before it is decoded (`inbound`).

mod inbound;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytes::{Bytes, BytesMut};
use termcell_actors::audit::{cut_at_char, AuditEvent};
use termcell_actors::credentials::Fingerprint;
use termcell_actors::fault::contain;
use termcell_actors::ratelimit::{
    AcquireSessionSlot, CheckResume, RateLimiter, ResumeFailed, SlotRefused,
};
use termcell_actors::registry::{OpenSession, Refusal, Registry, ResumeSession};
use termcell_actors::rejection::Rejection;
use termcell_actors::session::{
    Attach, ClientHandle, Departure, Detach, End, EndCause, Input, Resize, SessionActor,
    SessionRequest, ToClient,
};
use uuid::Uuid;

use crate::protocol::{
    self, client_close_departure, decode_client_frame, encode_control, notice_line, notice_text,
    parse_auth_frame, validate_auth, warning_line, warning_reason, ClientFrame, Close,
    ServerControl, UsageReport, Utf8Framer, ValidatedAuth, OUTPUT_HANDSHAKE,
};
use crate::state::AppState;
use inbound::Inbound;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

struct Opening {
    fingerprint: Fingerprint,
    limiter: Addr<RateLimiter>,
    registry: Addr<Registry>,
    ip: IpAddr,
    client: ClientHandle,
}

enum Phase {
    AwaitingAuth,
    Opening,
    Attached(Addr<SessionActor>),
    Closing,
}

pub struct WsBridge {
    state: AppState,
    conn_id: u64,
    ip: IpAddr,
    phase: Phase,
    announces_client: bool,
    framer: Utf8Framer,
    last_seen: Instant,
    continuation: Option<BytesMut>,
    session_id: Option<Uuid>,
    address_recipient: Option<Recipient<ToClient>>,
    inbound: Inbound,
    pongs: PongAllowance,
    usage: UsageFeed,
}

/// `usage` control messages for a client that asked for them in its auth frame: each new
/// sample of the monitor, once the session's `hello` is out. The bridge reads the monitor's
/// table; the monitor and the session know nothing of it.
#[derive(Default)]
struct UsageFeed {
    connected: bool,
    last_sample: Option<chrono::DateTime<chrono::Utc>>,
}

/// How long a close the server started waits for the client's close frame.
const CLOSE_REPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Pongs answered per second: the outgoing queue is unbounded, so a client that floods
/// pings and reads nothing must not fill it.
const PONGS_PER_SECOND: u32 = 10;

struct PongAllowance {
    second: Instant,
    sent: u32,
}

impl PongAllowance {
    fn take(&mut self) -> bool {
        if self.second.elapsed() >= std::time::Duration::from_secs(1) {
            self.second = Instant::now();
            self.sent = 0;
        }
        self.sent += 1;
        self.sent <= PONGS_PER_SECOND
    }
}

/// The close code and reason for each way a session ends, and whether the control message
/// before it is `error` (a failure to serve) or `disconnected` (the session ended).
pub fn close_for(cause: &EndCause) -> (Close, bool) {
    match cause {
        EndCause::ShellExited => (Close::shell_exited(), false),
        EndCause::IdleTimeout => (Close::idle_timeout(), false),
        EndCause::MaxDuration => (Close::max_duration(), false),
        EndCause::AdminKill => (Close::admin_kill(), false),
        EndCause::Shutdown => (Close::shutting_down(), false),
        EndCause::RateLimited => (Close::rate_limited(), true),
        EndCause::CreateFailed(e) if e.engine_unavailable() => (Close::engine_unavailable(), true),
        EndCause::CreateFailed(_) => (Close::create_failed(), true),
        EndCause::ContainerDied(why) => (Close::internal(format!("Container died: {why}")), false),
        EndCause::Crashed | EndCause::Vanished => (Close::server_error(), true),
        // No socket is attached when these happen; a late one is told the session is gone.
        EndCause::GraceExpired | EndCause::ClientClosed => (Close::resume_rejected(), true),
    }
}

/// At most 16 names of at most 64 bytes each: the names come from the client.
fn cut_names(names: &[String]) -> Vec<String> {
    names
        .iter()
        .take(16)
        .map(|n| cut_at_char(n, 64).to_string())
        .collect()
}

impl WsBridge {
    pub fn start(
        state: AppState,
        ip: IpAddr,
        req: &HttpRequest,
        payload: actix_web::web::Payload,
    ) -> Result<HttpResponse, actix_web::Error> {
        let max = state.config.max_message_bytes;
        let inbound = Inbound::new(max);
        let limited = inbound.limit(payload);
        let bridge = WsBridge {
            state,
            conn_id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            ip,
            phase: Phase::AwaitingAuth,
            announces_client: false,
            framer: Utf8Framer::default(),
            last_seen: Instant::now(),
            continuation: None,
            session_id: None,
            address_recipient: None,
            inbound,
            pongs: PongAllowance {
                second: Instant::now(),
                sent: 0,
            },
            usage: UsageFeed::default(),
        };
        ws::WsResponseBuilder::new(bridge, req, limited)
            .frame_size(max)
            .start()
    }

    fn control(&self, ctx: &mut ws::WebsocketContext<Self>, msg: ServerControl) {
        ctx.binary(encode_control(&msg));
    }

    /// Tells the client why, closes with the same code and reason, and stops.
    fn close_with(&mut self, ctx: &mut ws::WebsocketContext<Self>, close: Close, error: bool) {
        if let Some(rest) = self.framer.flush() {
            ctx.binary(rest);
        }
        let code = close.code;
        let reason = close.reason.clone();
        self.control(
            ctx,
            if error {
                ServerControl::Error(close)
            } else {
                ServerControl::Disconnected(close)
            },
        );
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code),
            description: Some(reason),
        }));
        self.dropped(Departure::Dropped);
        // The handshake completes when the client's close frame arrives (then the actor
        // stops and the TCP connection goes at once); a client that never answers is cut off.
        ctx.run_later(CLOSE_REPLY_WAIT, |_, ctx| ctx.stop());
    }

    /// A refusal before or instead of a session: counted, audited, closed.
    fn reject(&mut self, ctx: &mut ws::WebsocketContext<Self>, close: Close, kind: Rejection) {
        self.state.shared.metrics.reject(kind);
        let mut audit = AuditEvent::rejection(kind)
            .client(self.ip)
            .field("code", close.code);
        if let Some(id) = self.session_id {
            audit = audit.session(id);
        }
        if matches!(self.phase, Phase::Attached(_)) {
            self.state.shared.audit.record(audit);
        } else {
            // No session of this connection: anyone can cause these at any rate.
            self.state.shared.audit.rejected(audit);
        }
        log::info!(
            target: crate::logging::CLIENT,
            "connection {} from {} refused: {} {}",
            self.conn_id,
            self.ip,
            close.code,
            close.reason
        );
        self.close_with(ctx, close, true);
    }

    fn handle_frame(&mut self, data: Bytes, ctx: &mut ws::WebsocketContext<Self>) {
        match &self.phase {
            Phase::AwaitingAuth => self.authenticate(data, ctx),
            Phase::Opening => {
                // Waiting for the registry (ctx.wait holds frames back); not reached.
            }
            Phase::Attached(session) => {
                let session = session.clone();
                match decode_client_frame(&data) {
                    ClientFrame::Input(bytes) => {
                        let credit = self.inbound.credit(bytes.len());
                        session.do_send(Input(bytes, credit));
                    }
                    ClientFrame::Resize { cols, rows } => session.do_send(Resize {
                        cols,
                        rows,
                        credit: self.inbound.credit(0),
                    }),
                    ClientFrame::Ping { ts } => {
                        if self.pongs.take() {
                            self.control(ctx, ServerControl::Pong { ts });
                        }
                    }
                    ClientFrame::Ignored => {}
                }
            }
            Phase::Closing => {}
        }
    }

    fn authenticate(&mut self, data: Bytes, ctx: &mut ws::WebsocketContext<Self>) {
        let config = &self.state.config;
        let frame = match parse_auth_frame(&data, config.max_auth_bytes) {
            Ok(frame) => frame,
            Err(close) => {
                let kind = if close.code == protocol::close::TOO_BIG {
                    Rejection::AuthTooLarge
                } else {
                    Rejection::AuthMalformed
                };
                return self.reject(ctx, close, kind);
            }
        };
        let auth = match validate_auth(frame, &config.auth_policy, chrono::Utc::now().timestamp()) {
            Ok(auth) => auth,
            Err(close) => return self.reject(ctx, close, Rejection::Credentials),
        };
        if !auth.rejected_env.is_empty() {
            self.state.shared.audit.record(
                AuditEvent::new("env.rejected")
                    .client(self.ip)
                    .field("names", cut_names(&auth.rejected_env))
                    .field("count", auth.rejected_env.len()),
            );
        }
        self.announces_client = auth.announces_client;
        if auth.usage {
            // Half the sampling interval: each sample goes out within half an interval.
            let every = self.state.config.monitor.interval / 2;
            ctx.run_interval(every, |act, ctx| act.send_usage(ctx));
        }
        if auth.resume_requested_invalid {
            self.state.limiter.do_send(ResumeFailed { ip: self.ip });
            return self.reject(ctx, Close::resume_rejected(), Rejection::ResumeUnknown);
        }
        self.phase = Phase::Opening;
        match auth.session_id {
            Some(id) => self.resume(id, auth, ctx),
            None => self.open(auth, ctx),
        }
    }

    fn client_handle(&self) -> ClientHandle {
        ClientHandle {
            conn_id: self.conn_id,
            recipient: self.address_recipient.clone().expect("set at start"),
            ip: self.ip,
        }
    }

    /// What opening or resuming a session needs, taken out of the actor for the future.
    fn opening(&self, auth: &ValidatedAuth) -> Opening {
        Opening {
            fingerprint: self
                .state
                .fingerprint_key
                .fingerprint(auth.api_key.as_deref(), auth.access_token.as_deref()),
            limiter: self.state.limiter.clone(),
            registry: self.state.registry.clone(),
            ip: self.ip,
            client: self.client_handle(),
        }
    }

    fn resume(&mut self, id: Uuid, auth: ValidatedAuth, ctx: &mut ws::WebsocketContext<Self>) {
        self.session_id = Some(id);
        let o = self.opening(&auth);
        ctx.wait(
            async move {
                match o
                    .limiter
                    .send(CheckResume {
                        session_id: id,
                        ip: o.ip,
                    })
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(rejected)) => return Err((Close::rate_limited(), rejected.kind)),
                    Err(_) => return Err((Close::server_error(), Rejection::Internal)),
                }
                let found = o
                    .registry
                    .send(ResumeSession {
                        session_id: id,
                        fingerprint: o.fingerprint,
                    })
                    .await
                    .unwrap_or(Err(Refusal::UnknownSession));
                let session = match found {
                    Ok(session) => session,
                    Err(refusal) => {
                        o.limiter.do_send(ResumeFailed { ip: o.ip });
                        return Err(match refusal {
                            Refusal::CredentialsMismatch => {
                                (Close::credentials_mismatch(), Rejection::ResumeCredentials)
                            }
                            Refusal::Internal => (Close::server_error(), Rejection::Internal),
                            _ => (Close::resume_rejected(), Rejection::ResumeUnknown),
                        });
                    }
                };
                match session.send(Attach(o.client)).await {
                    Ok(()) => Ok(session),
                    Err(_) => Err((Close::resume_rejected(), Rejection::ResumeUnknown)),
                }
            }
            .into_actor(self)
            .map(|result, act, ctx| match result {
                Ok(session) => act.phase = Phase::Attached(session),
                Err((close, kind)) => act.reject(ctx, close, kind),
            }),
        );
    }

    fn open(&mut self, auth: ValidatedAuth, ctx: &mut ws::WebsocketContext<Self>) {
        let o = self.opening(&auth);
        // A restricted network whose firewall is gone would give the session an open one.
        let unguarded = self
            .state
            .network
            .as_ref()
            .is_some_and(|net| !net.enforced());
        let session = &self.state.config.session;
        let too_many = Close::too_many_sessions(
            session.limits.max_sessions_per_ip,
            session.closed_page_grace.as_secs(),
            session.resume_grace.as_secs(),
        );
        ctx.wait(
            async move {
                if unguarded {
                    return Err((Close::create_failed(), Rejection::NetworkUnenforced));
                }
                let slot = match o.limiter.send(AcquireSessionSlot { ip: o.ip }).await {
                    Ok(Ok(slot)) => slot,
                    Ok(Err(SlotRefused::Limit)) => return Err((too_many, Rejection::Concurrency)),
                    // Failed closed: refused like a limit, without claiming one was reached.
                    Ok(Err(SlotRefused::Failed)) => {
                        return Err((Close::rate_limited(), Rejection::Internal))
                    }
                    Err(_) => return Err((Close::server_error(), Rejection::Internal)),
                };
                let request = SessionRequest {
                    env: auth.env,
                    api_key: auth.api_key,
                    access_token: auth.access_token,
                    fingerprint: o.fingerprint,
                    client: o.client,
                    slot: Some(slot),
                    requested_at: Instant::now(),
                };
                match o.registry.send(OpenSession(request)).await {
                    Ok(Ok(opened)) => Ok(opened),
                    Ok(Err(Refusal::Draining)) => {
                        Err((Close::shutting_down(), Rejection::Draining))
                    }
                    Ok(Err(Refusal::Internal)) => Err((Close::server_error(), Rejection::Internal)),
                    Ok(Err(_)) => Err((Close::at_capacity(), Rejection::Capacity)),
                    Err(_) => Err((Close::server_error(), Rejection::Internal)),
                }
            }
            .into_actor(self)
            .map(|result, act, ctx| match result {
                Ok((id, session)) => {
                    act.session_id = Some(id);
                    act.phase = Phase::Attached(session);
                }
                Err((close, kind)) => act.reject(ctx, close, kind),
            }),
        );
    }

    /// The session's latest sample, if it is new and the client has its `hello`.
    fn send_usage(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let (Phase::Attached(_), Some(id), true) =
            (&self.phase, self.session_id, self.usage.connected)
        else {
            return;
        };
        let Some(usage) = self.state.shared.monitor.usage(id) else {
            return;
        };
        if self.usage.last_sample == Some(usage.sampled_at) {
            return;
        }
        self.usage.last_sample = Some(usage.sampled_at);
        self.control(ctx, ServerControl::Usage(UsageReport::from(&usage)));
    }

    fn dropped(&mut self, departure: Departure) {
        if let Phase::Attached(session) = &self.phase {
            session.do_send(Detach {
                conn_id: self.conn_id,
                departure,
            });
        }
        self.phase = Phase::Closing;
    }
}

impl Actor for WsBridge {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.address_recipient = Some(ctx.address().recipient());
        self.control(ctx, ServerControl::Connecting);
        let deadline = self.state.config.auth_timeout;
        ctx.run_later(deadline, |act, ctx| {
            if matches!(act.phase, Phase::AwaitingAuth) {
                act.reject(ctx, Close::auth_timeout(), Rejection::AuthTimeout);
            }
        });
        let every = self.state.config.heartbeat_interval;
        ctx.run_interval(every, |act, ctx| {
            if act.last_seen.elapsed() > act.state.config.client_timeout {
                log::info!(
                    "connection {} from {}: no answer to pings, dropping",
                    act.conn_id,
                    act.ip
                );
                act.dropped(Departure::Dropped);
                ctx.stop();
            } else if !matches!(act.phase, Phase::Closing) {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.dropped(Departure::Dropped);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsBridge {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let handled = contain("bridge::frame", || {
            fail::fail_point!("bridge::frame");
            self.on_message(msg, ctx)
        });
        if handled.is_none() {
            self.crashed(ctx);
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The socket is gone (reset or EOF) without a close frame: a drop, not an end.
        self.dropped(Departure::Dropped);
        ctx.stop();
    }
}

impl WsBridge {
    /// A handler of this bridge failed (a panic, caught): its session ends, and the client
    /// is told 1011 `Server error`.
    fn crashed(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if let Phase::Attached(session) = &self.phase {
            session.do_send(End(EndCause::Crashed));
        }
        if !matches!(self.phase, Phase::Closing) {
            self.close_with(ctx, Close::server_error(), true);
        }
    }

    fn on_message(
        &mut self,
        msg: Result<ws::Message, ws::ProtocolError>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        self.last_seen = Instant::now();
        if matches!(self.phase, Phase::Closing) {
            // Our close frame is out: the client's close (or a broken stream) completes the
            // handshake, and nothing else may be answered.
            if matches!(msg, Ok(ws::Message::Close(_)) | Err(_)) {
                ctx.stop();
            }
            return;
        }
        let msg = match msg {
            Ok(msg) => {
                self.inbound.frame_handled();
                msg
            }
            // Refused at its header by `inbound`, or (the same limit) by the decoder.
            Err(e)
                if self.inbound.oversized().is_some()
                    || matches!(e, ws::ProtocolError::Overflow) =>
            {
                return self.reject(ctx, Close::too_big(), Rejection::MessageTooLarge);
            }
            Err(e) => {
                // The socket is unusable; a live session keeps its grace period.
                log::debug!("connection {}: protocol error: {e}", self.conn_id);
                self.dropped(Departure::Dropped);
                let close = Close::for_stream_error(&e.to_string());
                self.state.shared.metrics.reject(Rejection::ProtocolError);
                self.close_with(ctx, close, true);
                return;
            }
        };
        match msg {
            ws::Message::Text(text) => self.handle_frame(text.into_bytes(), ctx),
            ws::Message::Binary(data) => self.handle_frame(data, ctx),
            ws::Message::Continuation(item) => self.continue_frame(item, ctx),
            ws::Message::Ping(payload) => {
                if self.pongs.take() {
                    ctx.pong(&payload);
                }
            }
            ws::Message::Pong(_) => {}
            ws::Message::Close(reason) => {
                let departure = reason
                    .as_ref()
                    .map(|r| {
                        client_close_departure(
                            r.code.into(),
                            r.description.as_deref().unwrap_or(""),
                        )
                    })
                    .unwrap_or(Departure::Dropped);
                self.dropped(departure);
                ctx.close(reason);
                ctx.stop();
            }
            ws::Message::Nop => {}
        }
    }
}

impl WsBridge {
    /// Reassembles a fragmented message, capped at the message size limit.
    fn continue_frame(&mut self, item: actix_http::ws::Item, ctx: &mut ws::WebsocketContext<Self>) {
        let max = self.state.config.max_message_bytes;
        let (chunk, last) = match item {
            actix_http::ws::Item::FirstText(b) | actix_http::ws::Item::FirstBinary(b) => {
                self.continuation = Some(BytesMut::new());
                (b, false)
            }
            actix_http::ws::Item::Continue(b) => (b, false),
            actix_http::ws::Item::Last(b) => (b, true),
        };
        let Some(buf) = self.continuation.as_mut() else {
            return self.reject(ctx, Close::invalid_auth(), Rejection::BadContinuation);
        };
        if buf.len() + chunk.len() > max {
            self.continuation = None;
            return self.reject(ctx, Close::too_big(), Rejection::MessageTooLarge);
        }
        buf.extend_from_slice(&chunk);
        if last {
            let whole = self.continuation.take().expect("checked").freeze();
            self.handle_frame(whole, ctx);
        }
    }
}

impl Handler<ToClient> for WsBridge {
    type Result = ();

    fn handle(&mut self, msg: ToClient, ctx: &mut Self::Context) {
        let handled = contain("bridge::to_client", || {
            fail::fail_point!("bridge::to_client");
            self.deliver(msg, ctx)
        });
        if handled.is_none() {
            self.crashed(ctx);
        }
    }
}

impl WsBridge {
    fn deliver(&mut self, msg: ToClient, ctx: &mut ws::WebsocketContext<Self>) {
        if matches!(self.phase, Phase::Closing) {
            return;
        }
        match msg {
            ToClient::Connected { session_id } => {
                self.session_id = Some(session_id);
                if let Some(rest) = self.framer.flush() {
                    ctx.binary(rest);
                }
                self.control(ctx, ServerControl::Connected);
                self.control(ctx, ServerControl::Hello { session_id });
                self.usage.connected = true;
                if !self.announces_client {
                    ctx.binary(Bytes::from_static(OUTPUT_HANDSHAKE.as_bytes()));
                }
            }
            ToClient::Output(data) => {
                if let Some(frame) = self.framer.push(&data) {
                    ctx.binary(frame);
                }
            }
            ToClient::Warning { kind, seconds_left } => {
                let reason = warning_reason(kind).to_string();
                // A client that named itself shows the control message (the built-in page:
                // a banner); a line in its terminal would repeat it into the scrollback.
                if !self.announces_client {
                    ctx.binary(warning_line(&reason, seconds_left));
                }
                self.control(
                    ctx,
                    ServerControl::Warning {
                        reason,
                        seconds_left,
                    },
                );
            }
            ToClient::Notice(notices) => {
                // The line stays in the terminal where the input was lost; the control
                // message lets a client show it in its own place too (the page's banner).
                let reason = notice_text(&notices);
                ctx.binary(notice_line(&reason));
                self.control(ctx, ServerControl::Notice { reason });
            }
            ToClient::Ended(cause) => {
                let (close, error) = close_for(&cause);
                self.close_with(ctx, close, error);
            }
            ToClient::TakenOver => self.close_with(ctx, Close::taken_over(), false),
        }
    }
}
