//! The public listener: the terminal page, the WebSocket upgrade (origin and connection
//! rate checks happen here, before any socket exists), /health, /ready and /metrics.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderMap};
use actix_web::{guard, web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;
use serde_json::json;
use termcell_actors::audit::AuditEvent;
use termcell_actors::ratelimit::CheckConnection;
use termcell_actors::registry::GetCapacity;
use termcell_actors::rejection::Rejection;

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
        // HEAD is answered like GET (same headers, no body).
        .route(
            "/{tail:.*}",
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(web_assets::serve),
        );
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

/// A browser Origin is allowed when it is on the list (or the list holds `*`), when it is
/// the configured public origin, or when it is the page's own host and that host cannot be
/// a rebound name: an IP address or localhost. A client that sends no Origin (not a
/// browser) is allowed.
pub fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    allowed: &[String],
    public_origin: Option<&str>,
) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    if allowed.iter().any(|a| a == "*" || *a == origin) || public_origin == Some(&origin) {
        return true;
    }
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match (origin_host, host) {
        (Some(o), Some(h)) => o == h.to_ascii_lowercase() && not_rebindable(o),
        _ => false,
    }
}

/// Whether `host[:port]` names this machine in a way DNS cannot redirect: an IP literal
/// (a page at another name cannot have it as its Origin) or localhost.
fn not_rebindable(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok()
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
    // The cheapest check first: a flood is refused before anything else is looked at.
    match state.limiter.send(CheckConnection { ip }).await {
        Ok(Ok(())) => {}
        Ok(Err(retry)) => {
            let kind = Rejection::Connections;
            state.shared.metrics.reject(kind);
            state
                .shared
                .audit
                .rejected(AuditEvent::rejection(kind).client(ip));
            return Ok(HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, retry.secs().to_string()))
                .content_type("text/plain; charset=utf-8")
                .body("Too many connections from your address: try again later\n"));
        }
        Err(_) => return Ok(HttpResponse::ServiceUnavailable().finish()),
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let config = &state.config;
    if !origin_allowed(
        origin,
        host,
        &config.allowed_origins,
        config.public_origin.as_deref(),
    ) {
        let kind = Rejection::Origin;
        state.shared.metrics.reject(kind);
        state.shared.audit.rejected(
            AuditEvent::rejection(kind)
                .client(ip)
                .client_text("origin", origin.unwrap_or_default()),
        );
        return Ok(HttpResponse::Forbidden()
            .content_type("text/plain; charset=utf-8")
            .body(
                "Origin not allowed: set TERMCELL_PUBLIC_URL to the page's address, or add \
                 the origin to TERMCELL_ALLOWED_ORIGINS\n",
            ));
    }
    WsBridge::start(state, ip, &req, payload)
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// What the engine said for /ready, kept for a second so that no request rate turns into
/// an engine load.
#[derive(Default)]
pub struct ReadyCache {
    last: Mutex<Option<(Instant, EngineCheck)>>,
    /// One refresh at a time; the others wait for its answer.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Clone, Copy)]
struct EngineCheck {
    docker: bool,
    image: bool,
    at: DateTime<Utc>,
}

const READY_REFRESH: Duration = Duration::from_secs(1);

impl ReadyCache {
    fn fresh(&self) -> Option<EngineCheck> {
        let last = self.last.lock();
        last.filter(|(at, _)| at.elapsed() < READY_REFRESH)
            .map(|(_, check)| check)
    }

    async fn engine(&self, state: &AppState) -> EngineCheck {
        if let Some(check) = self.fresh() {
            return check;
        }
        let _one = self.refreshing.lock().await;
        if let Some(check) = self.fresh() {
            return check;
        }
        state.shared.metrics.ready_checks.inc();
        let engine = &state.shared.engine;
        let docker = engine.ping().await.is_ok();
        let image = docker
            && engine
                .image_exists(&state.shared.settings.image)
                .await
                .unwrap_or(false);
        let check = EngineCheck {
            docker,
            image,
            at: Utc::now(),
        };
        *self.last.lock() = Some((Instant::now(), check));
        check
    }
}

async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let EngineCheck { docker, image, at } = state.ready.engine(&state).await;
    let capacity = state
        .registry
        .send(GetCapacity)
        .await
        .ok()
        .and_then(Result::ok);
    let capacity_left = capacity
        .map(|c| !c.draining && c.active < c.max)
        .unwrap_or(false);
    // Restricted mode: the firewall table must be in place (the guard puts it back when
    // something deletes it; while it cannot, the server is not ready).
    let network_enforced = state.network.as_ref().is_none_or(|net| net.enforced());
    let ok = docker && image && capacity_left && network_enforced;
    // Why not ready, in words an operator can act on.
    let reasons: Vec<&str> = [
        (!docker, "the Docker engine does not answer"),
        (docker && !image, "the sandbox image is missing"),
        (
            capacity.is_some_and(|c| c.draining),
            "the server is draining",
        ),
        (
            capacity.is_some_and(|c| !c.draining && c.active >= c.max),
            "the server is at capacity",
        ),
        (capacity.is_none(), "the registry does not answer"),
        (
            !network_enforced,
            "the restricted network's firewall table is gone and cannot be put back",
        ),
    ]
    .into_iter()
    .filter_map(|(failing, reason)| failing.then_some(reason))
    .collect();
    let body = json!({
        "ready": ok,
        "reasons": reasons,
        "docker": docker,
        "image": { "name": state.shared.settings.image, "present": image },
        "checked_at": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "capacity": capacity,
        "audit": audit_status(&state),
        "connections": {
            "open": state.connections.open(),
            "max": state.connections.total_cap(),
            "max_per_address": state.config.max_connections_per_ip,
        },
        "runtime": state.runtime,
        "network": crate::protections::network_status(&state.shared.settings.profile, state.network.as_deref()),
        "protections": crate::protections::report(&state.host_security, &state.shared.settings.profile, &state.runtime, state.network.as_deref()),
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

fn audit_status(state: &AppState) -> serde_json::Value {
    let audit = &state.shared.audit;
    let (max_total_bytes, cap_reached) = audit.size_cap();
    json!({
        "enabled": audit.is_enabled(),
        "max_total_bytes": max_total_bytes,
        "cap_reached": cap_reached,
        "write_errors": audit.write_errors(),
    })
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let open = state.connections.open();
    state
        .shared
        .metrics
        .connections_open
        .set(i64::try_from(open).unwrap_or(i64::MAX));
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
        let allowed =
            |origin, host, list: &[String], public| origin_allowed(origin, host, list, public);
        assert!(allowed(None, Some("x"), &[], None));
        assert!(allowed(
            Some("https://docs.example.com"),
            Some("term.example.com"),
            &list,
            None
        ));
        assert!(allowed(
            Some("https://DOCS.example.com/"),
            None,
            &list,
            None
        ));
        assert!(!allowed(
            Some("https://evil.example"),
            Some("term.example.com"),
            &list,
            None
        ));
        assert!(allowed(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080"),
            &[],
            None
        ));
        assert!(allowed(
            Some("http://[::1]:8080"),
            Some("[::1]:8080"),
            &[],
            None
        ));
        assert!(allowed(
            Some("http://localhost:8080"),
            Some("localhost:8080"),
            &[],
            None
        ));
        assert!(!allowed(
            Some("http://127.0.0.1:8080.evil"),
            Some("127.0.0.1:8080"),
            &[],
            None
        ));
        assert!(allowed(
            Some("https://any.example"),
            None,
            &["*".to_string()],
            None
        ));
        assert!(!allowed(Some("null"), Some("127.0.0.1:8080"), &[], None));
    }

    #[test]
    fn a_same_host_page_counts_only_on_a_configured_name_an_ip_or_localhost() {
        // DNS rebinding: the attacker's name now points at this server.
        let rebound = (Some("http://evil.example:8080"), Some("evil.example:8080"));
        assert!(!origin_allowed(rebound.0, rebound.1, &[], None));
        assert!(!origin_allowed(
            rebound.0,
            rebound.1,
            &[],
            Some("https://term.example.com")
        ));
        assert!(origin_allowed(
            Some("https://term.example.com"),
            Some("term.example.com"),
            &[],
            Some("https://term.example.com")
        ));
        assert!(origin_allowed(
            Some("http://192.0.2.7:8080"),
            Some("192.0.2.7:8080"),
            &[],
            None
        ));
    }
}
