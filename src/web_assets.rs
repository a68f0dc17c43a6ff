//! The built-in terminal page, embedded in the binary from web/dist at build time (in debug
//! builds too). web/dist is committed; scripts/check-web-bundle.sh keeps it true to web/src.
//!
//! Each file is prepared once, on first use: its gzip form (kept only when smaller) and a
//! validator (a weak ETag from the content's hash). Invariant: a response is the same
//! content whatever the encoding, and HEAD gets GET's headers without the body.
//! Caching: every file is revalidated (`no-cache` plus ETag: a repeat load is a 304 with
//! no body), except a script or stylesheet asked for with `?v=<its hash>` (index.html
//! links them so, web/build.mjs writes the hash), which is immutable for a year.

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;

#[derive(rust_embed::RustEmbed)]
#[folder = "web/dist/"]
struct Assets;

const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";
/// Versioned (`?v=<hash>`) files never change under their URL.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else is asked for again, and answered 304 while unchanged.
const REVALIDATE: &str = "no-cache";
/// Hex digits of the content's SHA-256 in the ETag and in `?v=` (web/build.mjs: the same).
pub const HASH_HEX_LEN: usize = 16;

/// One embedded file, ready to serve.
struct Asset {
    body: Bytes,
    gzip: Option<Bytes>,
    mime: String,
    /// The first `HASH_HEX_LEN` hex digits of the content's SHA-256.
    hash: String,
}

impl Asset {
    fn etag(&self) -> String {
        // Weak: the gzip and the plain form are the same content.
        format!("W/\"{}\"", self.hash)
    }
}

static PREPARED: LazyLock<HashMap<String, Asset>> = LazyLock::new(|| {
    Assets::iter()
        .filter_map(|path| {
            let file = Assets::get(&path)?;
            let mime = mime_guess::from_path(path.as_ref())
                .first_or_octet_stream()
                .to_string();
            let hash: String = file
                .metadata
                .sha256_hash()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()[..HASH_HEX_LEN]
                .to_owned();
            let body = Bytes::from(file.data.into_owned());
            let gzip = gzip(&body).filter(|packed| packed.len() < body.len());
            Some((
                path.into_owned(),
                Asset {
                    body,
                    gzip,
                    mime,
                    hash,
                },
            ))
        })
        .collect()
});

fn gzip(data: &[u8]) -> Option<Bytes> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

/// Prepares every file now (compression takes some milliseconds), so the first page load
/// does not wait for it.
pub fn prepare() {
    LazyLock::force(&PREPARED);
}

/// Whether the client takes gzip: a `gzip` (or `*`) coding in Accept-Encoding without `q=0`.
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Whether If-None-Match names this file's current content.
fn not_modified(req: &HttpRequest, asset: &Asset) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.trim_matches('"') == asset.hash)
}

fn versioned(req: &HttpRequest, asset: &Asset) -> bool {
    req.query_string()
        .split('&')
        .any(|pair| pair.strip_prefix("v=") == Some(asset.hash.as_str()))
}

fn headers(mut response: HttpResponseBuilder, asset: &Asset, cache: &str) -> HttpResponseBuilder {
    response
        .insert_header((header::ETAG, asset.etag()))
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::VARY, "Accept-Encoding"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP));
    response
}

/// GET and HEAD of a page file.
pub async fn serve(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let path = path.into_inner();
    file(
        &req,
        if path.is_empty() {
            "index.html"
        } else {
            path.as_str()
        },
    )
}

/// One file of the page (`index.html`, `app.js`, ...), compressed and cached as `req`
/// accepts, or 404.
pub fn file(req: &HttpRequest, path: &str) -> HttpResponse {
    let Some(asset) = PREPARED.get(path) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("not found\n");
    };
    let cache = if versioned(req, asset) {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    if not_modified(req, asset) {
        return headers(HttpResponse::build(StatusCode::NOT_MODIFIED), asset, cache).finish();
    }
    let mut response = headers(HttpResponse::Ok(), asset, cache);
    response.content_type(asset.mime.as_str());
    let body = match &asset.gzip {
        Some(packed) if accepts_gzip(req) => {
            response.insert_header((header::CONTENT_ENCODING, "gzip"));
            packed.clone()
        }
        _ => asset.body.clone(),
    };
    // For HEAD, actix sends these headers and the body's length, not the body.
    response.body(body)
}

#[cfg(test)]
mod tests;
