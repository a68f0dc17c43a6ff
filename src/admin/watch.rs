//! The live read-only view: `GET /admin/sessions/{id}/watch` upgrades to a WebSocket that
//! streams one session to an operator. Text frames are JSON events (`watching`, `resize`,
//! `ended`, `error`), binary frames terminal output: the screen as it is, then live output.
//! Invariant: nothing the viewer sends reaches the session (input and resize are
//! ignored, the first answered with an `error` event); a viewer that does not take output
//! is dropped by the session (close 4010) without slowing it.
//!
//! A browser cannot set `Authorization` on a WebSocket: the built-in page's viewer mode
//! (`/admin/viewer`, served here without the token: it is the same public page) offers the
//! token as a subprotocol instead, `termcell.token.<base64url of the token>`, beside
//! `termcell.watch`, which the server selects.

use std::net::IpAddr;
use std::time::Instant;

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde_json::json;
use termcell_actors::audit::cut_at_char;
use termcell_actors::registry::FindSession;
use termcell_actors::session::SessionActor;
use termcell_actors::viewers::{
    ToViewer, Unwatch, ViewerHandle, Watch, WatchRefused, VIEWER_MAILBOX,
};
use uuid::Uuid;

use super::{authorize, session_id, token_matches, AdminError};
use crate::state::AppState;

/// Close codes of a view (besides 1000 when its session ended and 1009 for a frame over
/// `MAX_FRAME`).
pub const TOO_MANY_VIEWERS: u16 = 4009;
pub const VIEWER_TOO_SLOW: u16 = 4010;
/// A viewer sends nothing that matters: any frame larger than this closes it (1009).
const MAX_FRAME: usize = 4096;
/// The operator name a viewer may give (`?operator=`), cut to this many bytes.
const MAX_OPERATOR: usize = 64;

/// The subprotocol the view speaks, and the prefix of the one that carries the token.
const PROTOCOL: &str = "termcell.watch";
const TOKEN_PROTOCOL: &str = "termcell.token.";

/// The page and its files on the admin listener, for the viewer mode (no token: they are
/// the public page's bytes; the token is asked for by the page and sent on the socket).
pub(super) fn configure_page(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/admin/viewer",
        web::get()
            .to(|req: HttpRequest| async move { crate::web_assets::file(&req, "index.html") }),
    );
    for file in ["app.js", "app.css", "favicon.svg"] {
        cfg.route(
            &format!("/{file}"),
            web::get()
                .to(move |req: HttpRequest| async move { crate::web_assets::file(&req, file) }),
        );
    }
}

/// The token a browser offered as a subprotocol, if any.
fn protocol_token(req: &HttpRequest) -> Option<String> {
    use base64::Engine as _;
    let offered = req
        .headers()
        .get(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?;
    let encoded = offered
        .split(',')
        .find_map(|p| p.trim().strip_prefix(TOKEN_PROTOCOL))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

pub(super) fn status_of(e: &WatchRefused) -> StatusCode {
    match e {
        WatchRefused::Ended => StatusCode::NOT_FOUND,
        WatchRefused::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
    }
}

#[derive(serde::Deserialize)]
pub(super) struct WatchQuery {
    /// Who is watching, for the audit log.
    operator: Option<String>,
}

static NEXT_VIEWER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(super) async fn watch(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<WatchQuery>,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    match protocol_token(&req) {
        Some(token) => token_matches(&token, &state)?,
        None => authorize(&req, &state)?,
    }
    let id = session_id(&path)?;
    let session = state
        .registry
        .send(FindSession(id))
        .await
        .map_err(|_| AdminError::Unavailable)?
        .ok_or(AdminError::NoSession)?;
    let operator = query
        .operator
        .as_deref()
        .map(|name| {
            cut_at_char(name, MAX_OPERATOR)
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
        })
        .filter(|name| !name.is_empty());
    let viewer = Viewer {
        id: NEXT_VIEWER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        session,
        session_id: id,
        ip: req
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1])),
        operator,
        last_seen: Instant::now(),
        told_read_only: false,
        heartbeat: state.config.heartbeat_interval,
        timeout: state.config.client_timeout,
    };
    ws::WsResponseBuilder::new(viewer, &req, stream)
        .protocols(&[PROTOCOL])
        .frame_size(MAX_FRAME)
        .start()
}

struct Viewer {
    id: u64,
    session: Addr<SessionActor>,
    session_id: Uuid,
    ip: IpAddr,
    operator: Option<String>,
    last_seen: Instant,
    told_read_only: bool,
    heartbeat: std::time::Duration,
    timeout: std::time::Duration,
}

impl Viewer {
    fn event(ctx: &mut ws::WebsocketContext<Self>, value: serde_json::Value) {
        ctx.text(value.to_string());
    }

    fn close(ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: &str) {
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::Other(code),
            description: Some(reason.to_string()),
        }));
        ctx.stop();
    }
}

impl Actor for Viewer {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(VIEWER_MAILBOX);
        let handle = ViewerHandle {
            id: self.id,
            recipient: ctx.address().recipient(),
            ip: self.ip,
            operator: self.operator.clone(),
        };
        // Nothing is read from the socket until the session has answered.
        ctx.wait(
            self.session.send(Watch(handle)).into_actor(self).map(
                |answer, act, ctx| match answer {
                    Ok(Ok(())) => {
                        log::info!(
                            "viewer {} watching session {}",
                            act.id,
                            act.session_id.simple()
                        );
                    }
                    Ok(Err(WatchRefused::TooMany(max))) => Viewer::close(
                        ctx,
                        TOO_MANY_VIEWERS,
                        &format!("Too many viewers (at most {max})"),
                    ),
                    Ok(Err(WatchRefused::Ended)) | Err(_) => {
                        Viewer::close(ctx, 1000, "Session ended")
                    }
                },
            ),
        );
        ctx.run_interval(self.heartbeat, |act, ctx| {
            if act.last_seen.elapsed() > act.timeout {
                log::info!("viewer {}: no frame from it, closed", act.id);
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.session.do_send(Unwatch { viewer_id: self.id });
    }
}

impl Handler<ToViewer> for Viewer {
    type Result = ();

    fn handle(&mut self, msg: ToViewer, ctx: &mut Self::Context) {
        match msg {
            ToViewer::Watching { session_id, size } => Viewer::event(
                ctx,
                json!({"type": "watching", "session_id": session_id,
                       "cols": size.cols, "rows": size.rows, "read_only": true}),
            ),
            ToViewer::Output(data) => ctx.binary(data),
            ToViewer::Resize(size) => Viewer::event(
                ctx,
                json!({"type": "resize", "cols": size.cols, "rows": size.rows}),
            ),
            ToViewer::Ended(cause) => {
                Viewer::event(ctx, json!({"type": "ended", "cause": cause}));
                Viewer::close(ctx, 1000, "Session ended");
            }
            ToViewer::Dropped(reason) => Viewer::close(
                ctx,
                VIEWER_TOO_SLOW,
                &format!("Viewer dropped ({reason}): not reading output fast enough"),
            ),
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Viewer {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match msg {
            Ok(ws::Message::Ping(data)) => ctx.pong(&data),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Close(_)) => ctx.stop(),
            // Input and resize (and anything else) never reach the session.
            Ok(ws::Message::Text(_))
            | Ok(ws::Message::Binary(_))
            | Ok(ws::Message::Continuation(_)) => {
                if !std::mem::replace(&mut self.told_read_only, true) {
                    Viewer::event(
                        ctx,
                        json!({"type": "error",
                               "error": "read-only view: input and resize are ignored"}),
                    );
                }
            }
            Err(ws::ProtocolError::Overflow) => Viewer::close(ctx, 1009, "Message too large"),
            Err(e) => {
                log::debug!("viewer {}: {e}", self.id);
                Viewer::close(ctx, 1002, "WebSocket protocol error");
            }
        }
    }
}
