//! The built-in terminal page, embedded in the binary from web/dist at build time.

use actix_web::{http::header, web, HttpResponse};

#[cfg(termcell_web_bundle)]
#[derive(rust_embed::RustEmbed)]
#[folder = "web/dist/"]
struct Assets;

#[cfg(termcell_web_bundle)]
fn asset(path: &str) -> Option<(std::borrow::Cow<'static, [u8]>, String)> {
    let file = Assets::get(path)?;
    let mime = mime_guess::from_path(path)
        .first_or_octet_stream()
        .to_string();
    Some((file.data, mime))
}

#[cfg(not(termcell_web_bundle))]
fn asset(path: &str) -> Option<(std::borrow::Cow<'static, [u8]>, String)> {
    const MISSING: &str = "<!doctype html><meta charset=utf-8><title>termcell</title>\
        <p>This termcell binary was built without its terminal page. Build the page with \
        <code>npm --prefix web ci &amp;&amp; npm --prefix web run build</code>, then rebuild \
        termcell (<code>cargo build --release</code>). WebSocket clients work regardless.</p>";
    (path == "index.html").then(|| {
        (
            std::borrow::Cow::Borrowed(MISSING.as_bytes()),
            "text/html; charset=utf-8".to_string(),
        )
    })
}

pub async fn serve(path: web::Path<String>) -> HttpResponse {
    let path = path.into_inner();
    let path = if path.is_empty() {
        "index.html"
    } else {
        path.as_str()
    };
    match asset(path) {
        Some((body, mime)) => HttpResponse::Ok()
            .content_type(mime)
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ))
            .body(body.into_owned()),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("not found\n"),
    }
}
