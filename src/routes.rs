//! The public listener: the terminal page, the WebSocket upgrade (origin and connection
//! rate checks happen here, before any socket exists), /health, /ready and /metrics.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::{self, HeaderMap};
use actix_web::{guard, web, HttpRequest, HttpResponse};
use serde_json::json;
use termcell_actors::audit::AuditEvent;
use termcell_actors::ratelimit::CheckConnection;
use termcell_actors::registry::GetCapacity;

use crate::bridge::WsBridge;
use crate::state::AppState;
use crate::web_assets;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics))
        // Any path upgrades (a Caddy reverse_proxy of the root or of /ws both work).
        .route(
            "/{tail:.*}",
            web::get()
                .guard(guard::fn_guard(is_websocket_upgrade))
                .to(upgrade),
        )
        .route("/{tail:.*}", web::get().to(web_assets::serve));
}

fn is_websocket_upgrade(ctx: &guard::GuardContext<'_>) -> bool {
    ctx.head()
        .headers()
        .get(header::UPGRADE)
        .map(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        .unwrap_or(false)
}

/// The client's address: the socket peer, or the last X-Forwarded-For address that is not
/// a trusted proxy, only when the peer itself is a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

/// A browser Origin is allowed when it is on the list (or the list holds `*`), or when it
/// is the page's own host; a client that sends no Origin (not a browser) is allowed.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    if allowed.iter().any(|a| a == "*" || *a == origin) {
        return true;
    }
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o == h.to_ascii_lowercase())
}

async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let state = state.get_ref().clone();
    let peer = req
        .peer_addr()
        .map(|a: SocketAddr| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip = client_ip(peer, req.headers(), &state.config.trusted_proxies);
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, host, &state.config.allowed_origins) {
        state.shared.metrics.reject("origin");
        state.shared.audit.record(
            AuditEvent::new("origin.rejected")
                .client(ip)
                .field("kind", "origin")
                .field("origin", origin.unwrap_or_default()),
        );
        return Ok(HttpResponse::Forbidden()
            .content_type("text/plain; charset=utf-8")
            .body("Origin not allowed: add it to TERMCELL_ALLOWED_ORIGINS\n"));
    }
    match state.limiter.send(CheckConnection { ip }).await {
        Ok(Ok(())) => {}
        Ok(Err(retry)) => {
            state.shared.metrics.reject("connections");
            state.shared.audit.record(
                AuditEvent::new("ratelimit.rejected")
                    .client(ip)
                    .field("kind", "connections"),
            );
            return Ok(HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, retry.secs().to_string()))
                .content_type("text/plain; charset=utf-8")
                .body("Too many connections from your address: try again later\n"));
        }
        Err(_) => return Ok(HttpResponse::ServiceUnavailable().finish()),
    }
    WsBridge::start(state, ip, &req, payload)
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let engine = &state.shared.engine;
    let docker = engine.ping().await.is_ok();
    let image = docker
        && engine
            .image_exists(&state.shared.settings.image)
            .await
            .unwrap_or(false);
    let capacity = state.registry.send(GetCapacity).await.ok();
    let capacity_left = capacity
        .map(|c| !c.draining && c.active < c.max)
        .unwrap_or(false);
    let ok = docker && image && capacity_left;
    let body = json!({
        "ready": ok,
        "docker": docker,
        "image": { "name": state.shared.settings.image, "present": image },
        "capacity": capacity,
        "protections": crate::protections::report(&state.host_security, &state.shared.settings.profile),
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.shared.metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in xff {
            map.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let h = headers(&["203.0.113.7"]);
        assert_eq!(client_ip(proxy, &h, &[]), proxy);
        assert_eq!(
            client_ip(proxy, &h, &[proxy]),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_for_takes_the_last_untrusted_hop() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        // A client can put anything first; only what the proxy appended counts.
        let h = headers(&["1.1.1.1, 198.51.100.9", "10.0.0.1"]);
        assert_eq!(
            client_ip(proxy, &h, &[proxy]),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        let garbage = headers(&["not-an-ip"]);
        assert_eq!(client_ip(proxy, &garbage, &[proxy]), proxy);
    }

    #[test]
    fn origins() {
        let list = vec!["https://docs.example.com".to_string()];
        assert!(origin_allowed(None, Some("x"), &[]));
        assert!(origin_allowed(
            Some("https://docs.example.com"),
            Some("term.example.com"),
            &list
        ));
        assert!(origin_allowed(
            Some("https://DOCS.example.com/"),
            None,
            &list
        ));
        assert!(!origin_allowed(
            Some("https://evil.example"),
            Some("term.example.com"),
            &list
        ));
        assert!(origin_allowed(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080"),
            &[]
        ));
        assert!(!origin_allowed(
            Some("http://127.0.0.1:8080.evil"),
            Some("127.0.0.1:8080"),
            &[]
        ));
        assert!(origin_allowed(
            Some("https://any.example"),
            None,
            &["*".to_string()]
        ));
        assert!(!origin_allowed(Some("null"), Some("127.0.0.1:8080"), &[]));
    }
}
