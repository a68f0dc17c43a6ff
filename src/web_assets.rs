//! The built-in terminal page, embedded in the binary from web/dist at build time (in debug
//! builds too). web/dist is committed; scripts/check-web-bundle.sh keeps it true to web/src.

use actix_web::{http::header, web, HttpResponse};

#[derive(rust_embed::RustEmbed)]
#[folder = "web/dist/"]
struct Assets;

fn asset(path: &str) -> Option<(std::borrow::Cow<'static, [u8]>, String)> {
    let file = Assets::get(path)?;
    let mime = mime_guess::from_path(path)
        .first_or_octet_stream()
        .to_string();
    Some((file.data, mime))
}

pub async fn serve(path: web::Path<String>) -> HttpResponse {
    let path = path.into_inner();
    file(if path.is_empty() {
        "index.html"
    } else {
        path.as_str()
    })
}

/// One file of the page (`index.html`, `app.js`, ...), or 404.
pub fn file(path: &str) -> HttpResponse {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_page_is_embedded() {
        for (path, mime) in [
            ("index.html", "text/html"),
            ("app.js", "text/javascript"),
            ("app.css", "text/css"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let (body, found) = asset(path).unwrap_or_else(|| panic!("{path} is not embedded"));
            assert!(!body.is_empty(), "{path}");
            assert_eq!(found, mime, "{path}");
        }
        assert!(asset("missing.txt").is_none());
    }
}
