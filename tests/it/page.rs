//! What the built-in page relies on, through the real server: a pasted script against the
//! command limit (refused lines dropped whole, a notice for the page's banner), closed tabs
//! (the short grace, a reload within it, a drop keeping the full grace, a refusal naming its
//! cause), and the page's assets (compressed, cacheable, HEAD like GET).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

const KEY: &str = "app.key:secret";

/// Opens a socket that resumes `id`.
async fn resume(server: &Server, id: &str) -> Client {
    let mut c = Client::connect(server).await;
    c.auth(json!({"apiKey": KEY, "sessionId": id})).await;
    c
}

#[tokio::test]
async fn a_paste_over_the_burst_runs_the_burst_and_drops_the_rest_whole() {
    let server = Server::start(&["--commands-per-minute", "60", "--command-burst", "5"]);
    let (mut c, _) = Client::session(&server).await;
    c.wait_output("$ ", T).await;

    // Eight lines in one piece, as a paste arrives: five run, three are not sent at all.
    let paste: String = (1..=8).map(|n| format!("echo p-$(({n}*11))\r")).collect();
    c.send_text(&paste).await;
    let notice = c.wait_control("notice", None, T).await;
    assert_eq!(
        notice["reason"], "command rate limit reached (60 per minute): 3 lines not run, wait 1s",
        "{notice}"
    );
    c.wait_output("p-55", T).await;
    let text = c
        .wait_output("[termcell] command rate limit reached", T)
        .await;
    assert!(text.contains("3 lines not run"), "{text:?}");

    // A second later the budget has one press again: the next command runs alone, with
    // nothing of the refused lines before it.
    drain_for(&mut c, Duration::from_millis(1500)).await;
    c.run("echo after-$((6*7))", "after-42").await;
    let text = String::from_utf8_lossy(&c.output).to_string();
    for n in 6..=8 {
        assert!(
            !text.contains(&format!("p-$(({n}*11))")),
            "refused line {n} reached the shell: {text:?}"
        );
    }
    assert!(c.closed.is_none());
}

#[tokio::test]
async fn a_typed_line_whose_enter_is_refused_is_erased_not_joined_with_the_next() {
    let server = Server::start(&["--commands-per-minute", "60", "--command-burst", "1"]);
    let (mut c, _) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    c.run("echo first-$((1+1))", "first-2").await;
    // Typed key by key: the bytes reach the shell before the refused Enter.
    for key in "echo typed".chars() {
        c.send_text(&key.to_string()).await;
    }
    c.send_text("\r").await;
    c.wait_control("notice", None, T).await;
    drain_for(&mut c, Duration::from_millis(1500)).await;
    c.run("echo next-$((3+3))", "next-6").await;
    let text = String::from_utf8_lossy(&c.output).to_string();
    assert!(
        !text.contains("typedecho") && !text.contains("typed next"),
        "the refused line was joined with the next: {text:?}"
    );
}

#[tokio::test]
async fn a_closed_page_waits_the_short_grace_and_a_reload_resumes_within_it() {
    let server = Server::start(&["--closed-page-grace", "3", "--resume-grace", "300"]);

    // A reload: the page closes with `page-closed`, the new page resumes at once.
    let (mut a, id) = Client::session(&server).await;
    a.run("echo before-$((2*2))", "before-4").await;
    a.close(1000, "page-closed").await;
    let mut b = resume(&server, &id).await;
    assert_eq!(b.wait_hello().await, id, "a reload resumes the session");
    b.wait_output("before-4", T).await;

    // A closed tab: gone after the short grace, not the full one.
    let closed = Instant::now();
    b.close(1000, "page-closed").await;
    assert!(
        wait_gone(&id, Duration::from_secs(20)).await,
        "the closed page's container is removed after the short grace"
    );
    let gone_after = closed.elapsed();
    assert!(
        gone_after >= Duration::from_millis(2500),
        "not before the short grace: {gone_after:?}"
    );
    server.expect_one_end(&id, "grace_expired").await;

    // A network drop (no close frame) keeps the full grace.
    let (mut c, dropped_id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    c.reset();
    // Time must pass here: the point is what has not happened after the short grace.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut d = resume(&server, &dropped_id).await;
    assert_eq!(
        d.wait_hello().await,
        dropped_id,
        "a dropped session outlives the short grace"
    );
}

#[tokio::test]
async fn closed_tabs_give_their_places_back_and_a_refusal_names_its_cause() {
    let server = Server::start(&[
        "--max-sessions-per-ip",
        "2",
        "--closed-page-grace",
        "2",
        "--resume-grace",
        "300",
    ]);
    let (mut a, _) = Client::session(&server).await;
    let (mut b, _) = Client::session(&server).await;
    a.close(1000, "page-closed").await;
    b.close(1000, "page-closed").await;

    // At once, both places are still held: the refusal says why and for how long.
    let mut third = Client::connect(&server).await;
    third.auth(json!({"apiKey": KEY})).await;
    expect_close(
        &mut third,
        "error",
        4003,
        "2 sessions are open from your address; closed tabs count for 2s, lost connections for 300s",
    )
    .await;

    // Within the short grace (and far within the resume grace) a new tab gets a session.
    let opened = eventually(Duration::from_secs(15), async || {
        let mut c = Client::connect(&server).await;
        c.auth(json!({"apiKey": KEY})).await;
        // Either hello (a session) or a close (still refused).
        while c.next(T).await.is_some() {
            if c.controls.iter().any(|v| v["type"] == "hello") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        opened,
        "a sixth tab opens once the closed ones' grace is over"
    );
}

#[tokio::test]
async fn a_client_that_names_itself_gets_a_warning_once_as_a_control_message() {
    let server = Server::start(&["--idle-timeout", "4", "--warn-before", "2"]);
    let mut c = Client::connect(&server).await;
    c.auth(json!({"apiKey": KEY, "client": "it-page"})).await;
    c.wait_hello().await;
    let warning = c.wait_control("warning", None, T).await;
    assert_eq!(warning["reason"], "Session will end due to inactivity");
    let text = expect_idle_end(&mut c).await;
    assert!(
        !text.contains("[termcell] Session will end"),
        "no warning line in the terminal of a client that shows the control: {text:?}"
    );
}

/// The `?v=` a page URL is linked with in index.html.
fn linked_version(html: &str, file: &str) -> String {
    let from = html
        .find(&format!("/{file}?v="))
        .unwrap_or_else(|| panic!("index.html links /{file} with its hash: {html}"));
    html[from + file.len() + 4..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

#[tokio::test]
async fn page_assets_are_compressed_cacheable_and_answer_head() {
    let server = Server::start(&[]);
    let http = http();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut request = http.get(server.http(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };

    // The page links its script and stylesheet by content hash: immutable for a year.
    let index = get("/", &[]).await.unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["cache-control"], "no-cache");
    let index_tag = index.headers()["etag"].to_str().unwrap().to_owned();
    let html = index.text().await.unwrap();
    let version = linked_version(&html, "app.js");
    assert_eq!(version.len(), 16, "{html}");

    let plain = get("/app.js", &[]).await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain_len = plain.bytes().await.unwrap().len();

    let packed = get(
        &format!("/app.js?v={version}"),
        &[("Accept-Encoding", "gzip, br")],
    )
    .await
    .unwrap();
    assert_eq!(packed.status(), 200);
    let headers = packed.headers().clone();
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["vary"], "Accept-Encoding");
    assert_eq!(headers["content-type"], "text/javascript");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let tag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(tag, format!("W/\"{version}\""));
    let body = packed.bytes().await.unwrap();
    assert!(
        body.len() * 3 < plain_len && body.starts_with(&[0x1f, 0x8b]),
        "gzip: {} bytes of {plain_len}",
        body.len()
    );
    println!("app.js: {plain_len} bytes, {} gzipped", body.len());

    // A second load revalidates: 304, no body.
    let again = get("/app.js", &[("If-None-Match", tag.as_str())])
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], tag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());
    let index_again = get("/", &[("If-None-Match", index_tag.as_str())])
        .await
        .unwrap();
    assert_eq!(index_again.status(), 304);
    // An old version is only revalidated, never kept for a year.
    let old = get("/app.js?v=0000000000000000", &[]).await.unwrap();
    assert_eq!(old.headers()["cache-control"], "no-cache");

    // HEAD is GET's answer without the body.
    for path in ["/", "/app.js", "/app.css", "/favicon.svg"] {
        let head = http.head(server.http(path)).send().await.unwrap();
        let full = get(path, &[]).await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
        for name in ["content-type", "content-length", "etag", "cache-control"] {
            assert_eq!(
                head.headers().get(name),
                full.headers().get(name),
                "{name} of {path}"
            );
        }
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} has no body"
        );
    }
    let missing = http.head(server.http("/missing.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
