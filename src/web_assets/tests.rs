//! Unit tests of the page files: all embedded, compressed where it pays, validators and
//! the choice of encoding and caching from the request's headers.

use actix_web::test::TestRequest;

use super::*;

#[test]
fn the_committed_page_is_embedded_and_compressed() {
    for (path, mime) in [
        ("index.html", "text/html"),
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let asset = PREPARED
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not embedded"));
        assert!(!asset.body.is_empty(), "{path}");
        assert_eq!(asset.mime, mime, "{path}");
        assert_eq!(asset.hash.len(), HASH_HEX_LEN, "{path}");
    }
    let script = &PREPARED["app.js"];
    let packed = script.gzip.as_ref().expect("app.js is compressed");
    assert!(
        packed.len() * 3 < script.body.len(),
        "{} of {}",
        packed.len(),
        script.body.len()
    );
    assert!(!PREPARED.contains_key("missing.txt"));
}

#[test]
fn gzip_only_when_accepted() {
    let takes = |value: &str| {
        accepts_gzip(
            &TestRequest::default()
                .insert_header((header::ACCEPT_ENCODING, value))
                .to_http_request(),
        )
    };
    assert!(takes("gzip, deflate, br"));
    assert!(takes("br;q=1.0, GZIP;q=0.5"));
    assert!(takes("*"));
    assert!(!takes("gzip;q=0"));
    assert!(!takes("br, identity"));
    assert!(!accepts_gzip(&TestRequest::default().to_http_request()));
}

#[test]
fn if_none_match_and_version_are_matched_against_the_content_hash() {
    let asset = &PREPARED["app.js"];
    let with = |name, value: String| {
        TestRequest::default()
            .insert_header((name, value))
            .to_http_request()
    };
    assert!(not_modified(
        &with(header::IF_NONE_MATCH, asset.etag()),
        asset
    ));
    assert!(not_modified(
        &with(header::IF_NONE_MATCH, format!("\"x\", \"{}\"", asset.hash)),
        asset
    ));
    assert!(!not_modified(
        &with(header::IF_NONE_MATCH, "W/\"0123456789abcdef\"".into()),
        asset
    ));
    let uri = |q: &str| TestRequest::with_uri(&format!("/app.js?{q}")).to_http_request();
    assert!(versioned(&uri(&format!("v={}", asset.hash)), asset));
    assert!(!versioned(&uri("v=old"), asset));
}
