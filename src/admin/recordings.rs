//! The admin API of session recordings: list them, show one session's, download it (as
//! asciicast v2, streamed from the file) and delete it. Downloads and deletions are
//! audited; a recording still being written cannot be deleted.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::stream;
use serde_json::json;
use termcell_actors::audit::AuditEvent;
use termcell_actors::recording::RecordingsError;
use tokio::io::AsyncReadExt;

use super::{authorize, session_id, AdminError, Answer};
use crate::state::AppState;

/// Bytes read from the file per chunk of a download.
const CHUNK: usize = 64 * 1024;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/recordings", web::get().to(list))
        .route("/admin/sessions/{id}/recording", web::get().to(show))
        .route("/admin/sessions/{id}/recording", web::delete().to(delete))
        .route(
            "/admin/sessions/{id}/recording.cast",
            web::get().to(download),
        );
}

pub(super) fn status_of(e: &RecordingsError) -> StatusCode {
    match e {
        RecordingsError::Off | RecordingsError::NotFound => StatusCode::NOT_FOUND,
        RecordingsError::StillRecording => StatusCode::CONFLICT,
        RecordingsError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> Answer {
    authorize(&req, &state)?;
    let recordings = state.shared.recordings.clone();
    let list = web::block(move || recordings.list())
        .await
        .map_err(|_| AdminError::Unavailable)??;
    Ok(HttpResponse::Ok().json(json!({ "recordings": list })))
}

async fn show(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    authorize(&req, &state)?;
    let id = session_id(&path)?;
    let recordings = state.shared.recordings.clone();
    let file = web::block(move || recordings.find(id))
        .await
        .map_err(|_| AdminError::Unavailable)??;
    Ok(HttpResponse::Ok().json(file))
}

async fn delete(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    authorize(&req, &state)?;
    let id = session_id(&path)?;
    let recordings = state.shared.recordings.clone();
    let file = web::block(move || recordings.delete(id))
        .await
        .map_err(|_| AdminError::Unavailable)??;
    let mut event = AuditEvent::new("recording.deleted")
        .session(id)
        .field("file", &file.file)
        .field("bytes", file.bytes);
    if let Some(peer) = req.peer_addr() {
        event = event.field("admin_client", peer.ip());
    }
    state.shared.audit.record(event);
    Ok(HttpResponse::Ok().json(json!({ "deleted": file })))
}

async fn download(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    authorize(&req, &state)?;
    let id = session_id(&path)?;
    let file_path = state.shared.recordings.path(id)?;
    let file = tokio::fs::File::open(&file_path)
        .await
        .map_err(|e| RecordingsError::Io(e.to_string()))?;
    let mut event = AuditEvent::new("recording.downloaded").session(id);
    if let Some(peer) = req.peer_addr() {
        event = event.field("admin_client", peer.ip());
    }
    state.shared.audit.record(event);
    // Streamed: a download holds one chunk, whatever the file's size.
    let body = stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-asciicast")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.cast\"", id.hyphenated()),
        ))
        .streaming(body))
}
