//! The admin API, on its own listener behind a bearer token (compared in constant time):
//! list, inspect and end sessions, drain the server; session recordings (recordings.rs)
//! and the live read-only view (watch.rs). Ids are validated before use.

mod recordings;
mod watch;

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use subtle::ConstantTimeEq;
use termcell_actors::audit::AuditEvent;
use termcell_actors::registry::{Drain, EndSession, GetCapacity, GetSession, ListSessions};
use termcell_actors::session::EndCause;
use uuid::Uuid;

use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/sessions", web::get().to(list))
        .route("/admin/sessions/{id}", web::get().to(show))
        .route("/admin/sessions/{id}", web::delete().to(kill))
        .route("/admin/sessions/{id}/watch", web::get().to(watch::watch))
        .route("/admin/drain", web::post().to(drain))
        .route("/admin/status", web::get().to(status));
    recordings::configure(cfg);
    watch::configure_page(cfg);
    // Only in a build with failpoints (test builds): set and clear them in this process.
    if termcell_actors::fault::ENABLED {
        cfg.route("/admin/failpoints", web::get().to(failpoints))
            .route("/admin/failpoints/{name}", web::put().to(set_failpoint))
            .route(
                "/admin/failpoints/{name}",
                web::delete().to(clear_failpoint),
            );
    }
    cfg.default_service(web::to(not_found));
}

/// Every error the admin API answers with, as JSON `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("session id must be a UUID")]
    BadId,
    #[error("no such session")]
    NoSession,
    #[error("no such endpoint")]
    NoEndpoint,
    #[error("registry unavailable")]
    Unavailable,
    #[error("{0}")]
    BadFailpoint(String),
    #[error(transparent)]
    Recording(#[from] termcell_actors::recording::RecordingsError),
    #[error(transparent)]
    Watch(#[from] termcell_actors::viewers::WatchRefused),
}

impl actix_web::ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::BadId | AdminError::BadFailpoint(_) => StatusCode::BAD_REQUEST,
            AdminError::NoSession | AdminError::NoEndpoint => StatusCode::NOT_FOUND,
            AdminError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Recording(e) => recordings::status_of(e),
            AdminError::Watch(e) => watch::status_of(e),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        if matches!(self, AdminError::Unauthorized) {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        resp.json(json!({ "error": self.to_string() }))
    }
}

/// Ok when the request carries the configured token.
fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), AdminError> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    token_matches(given, state)
}

/// Ok when `given` is the configured token (compared in constant time).
fn token_matches(given: &str, state: &AppState) -> Result<(), AdminError> {
    let expected = state.config.admin_token.as_deref().unwrap_or_default();
    let ok = !expected.is_empty()
        && given.len() == expected.len()
        && bool::from(given.as_bytes().ct_eq(expected.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Unauthorized)
    }
}

fn session_id(raw: &str) -> Result<Uuid, AdminError> {
    if raw.len() != 36 {
        return Err(AdminError::BadId);
    }
    Uuid::parse_str(raw).map_err(|_| AdminError::BadId)
}

type Answer = Result<HttpResponse, AdminError>;

async fn list(req: HttpRequest, state: web::Data<AppState>) -> Answer {
    authorize(&req, &state)?;
    let sessions = state
        .registry
        .send(ListSessions)
        .await
        .map_err(|_| AdminError::Unavailable)?
        .map_err(|_| AdminError::Unavailable)?;
    Ok(HttpResponse::Ok().json(json!({ "sessions": sessions })))
}

async fn show(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    authorize(&req, &state)?;
    let id = session_id(&path)?;
    match state.registry.send(GetSession(id)).await {
        Ok(Ok(Some(info))) => Ok(HttpResponse::Ok().json(info)),
        Ok(Ok(None)) => Err(AdminError::NoSession),
        Ok(Err(_)) | Err(_) => Err(AdminError::Unavailable),
    }
}

async fn kill(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    authorize(&req, &state)?;
    let id = session_id(&path)?;
    let ended = state
        .registry
        .send(EndSession {
            id,
            cause: EndCause::AdminKill,
        })
        .await
        .map_err(|_| AdminError::Unavailable)?
        .map_err(|_| AdminError::Unavailable)?;
    if !ended {
        return Err(AdminError::NoSession);
    }
    state
        .shared
        .audit
        .record(AuditEvent::new("admin.kill").session(id));
    Ok(HttpResponse::Accepted().json(json!({ "ended": id })))
}

#[derive(serde::Deserialize)]
struct DrainQuery {
    /// Seconds of warning before sessions end. Default 60.
    warn: Option<u64>,
}

async fn drain(
    req: HttpRequest,
    query: web::Query<DrainQuery>,
    state: web::Data<AppState>,
) -> Answer {
    authorize(&req, &state)?;
    let warn = Duration::from_secs(query.warn.unwrap_or(60).min(3600));
    let registry = state.registry.clone();
    let deadline = warn + state.config.shutdown_timeout;
    // The drain runs on; the answer says it started.
    let capacity = registry.send(GetCapacity).await.ok().and_then(Result::ok);
    registry.do_send(Drain {
        warn,
        cause: EndCause::Shutdown,
        deadline,
    });
    Ok(HttpResponse::Accepted().json(json!({
        "draining": true,
        "sessions": capacity.map(|c| c.active).unwrap_or(0),
        "warn_seconds": warn.as_secs(),
    })))
}

async fn status(req: HttpRequest, state: web::Data<AppState>) -> Answer {
    authorize(&req, &state)?;
    let capacity = state
        .registry
        .send(GetCapacity)
        .await
        .ok()
        .and_then(Result::ok);
    Ok(HttpResponse::Ok().json(json!({
        "capacity": capacity,
        "image": state.shared.settings.image,
        "deployment": state.shared.settings.deployment,
        "instance": state.shared.settings.instance,
        "docker": state.host_security,
        "runtime": state.runtime,
        "protections": crate::protections::report(&state.host_security, &state.shared.settings.profile, &state.runtime, state.network.as_deref()),
        "audit_write_errors": state.shared.audit.write_errors(),
    })))
}

/// `GET /admin/failpoints`: the failpoints configured now.
async fn failpoints(req: HttpRequest, state: web::Data<AppState>) -> Answer {
    authorize(&req, &state)?;
    let list: serde_json::Map<String, serde_json::Value> = termcell_actors::fault::list()
        .into_iter()
        .map(|(name, actions)| (name, actions.into()))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "failpoints": list })))
}

/// `PUT /admin/failpoints/{name}` with the actions as the body (`panic`, `1*return`, ...).
async fn set_failpoint(
    req: HttpRequest,
    path: web::Path<String>,
    body: String,
    state: web::Data<AppState>,
) -> Answer {
    authorize(&req, &state)?;
    termcell_actors::fault::configure(&path, body.trim()).map_err(AdminError::BadFailpoint)?;
    log::warn!("failpoint {} set to {:?}", path.as_str(), body.trim());
    Ok(HttpResponse::Ok().json(json!({ "failpoint": path.as_str(), "actions": body.trim() })))
}

/// `DELETE /admin/failpoints/{name}`.
async fn clear_failpoint(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Answer {
    authorize(&req, &state)?;
    termcell_actors::fault::remove(&path);
    Ok(HttpResponse::Ok().json(json!({ "failpoint": path.as_str(), "actions": "off" })))
}

async fn not_found(req: HttpRequest, state: web::Data<AppState>) -> Answer {
    authorize(&req, &state)?;
    Err(AdminError::NoEndpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(session_id("..%2f..%2fetc").is_err());
        assert!(session_id(&"a".repeat(1000)).is_err());
        assert!(session_id("7d444840-9dc0-11d1-b245-5ffdce74fad2").is_ok());
        assert!(session_id("7d444840-9dc0-11d1-b245-5ffdce74fadZ").is_err());
    }
}
