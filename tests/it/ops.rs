//! Operations: the admin API, /metrics, /health and /ready, the audit log, the reapers
//! (at start and periodic), SIGTERM shutdown, and surviving a Docker engine restart.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::*;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One admin request; `token` None sends no Authorization header.
async fn admin(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = http().request(method, server.admin_url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("admin request")
}

async fn admin_json(server: &Server, method: Method, path: &str) -> (StatusCode, Value) {
    let resp = admin(server, method, path, Some(ADMIN_TOKEN)).await;
    let status = resp.status();
    let body = resp.text().await.unwrap();
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("admin {path} answered non-JSON ({e}): {body:?}"));
    (status, value)
}

async fn get(url: String) -> (StatusCode, String) {
    let resp = http().get(url).send().await.expect("GET");
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

/// A session opened with this apiKey; returns the client (after hello) and the id.
async fn session_with_key(server: &Server, key: &str) -> (Client, String) {
    let mut c = Client::connect(server).await;
    c.auth(json!({ "apiKey": key })).await;
    let id = c.wait_hello().await;
    (c, id)
}

/// A credential that appears nowhere else, so finding it in a file means a leak.
fn unique_key() -> String {
    format!("app.key:ops-secret-{}", uuid::Uuid::new_v4().simple())
}

/// Waits until `check` holds, polling; false when `within` passes first.
async fn eventually<F: FnMut() -> bool>(within: Duration, mut check: F) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `disconnected` control and the close that followed it must carry this code.
async fn expect_end(c: &mut Client, code: u16) -> (u16, String) {
    let close = c
        .wait_close(T)
        .await
        .unwrap_or_else(|| panic!("a close frame with {code}, got none"));
    let control = c
        .controls
        .iter()
        .find(|v| v["payload"] == "disconnected" || v["payload"] == "error")
        .unwrap_or_else(|| panic!("a status control before close {close:?}: {:?}", c.controls));
    assert_eq!(control["code"], code, "control before the close: {control}");
    assert_eq!(close.0, code, "close code (reason {:?})", close.1);
    assert_eq!(
        control["reason"], close.1,
        "control and close carry the same reason"
    );
    close
}

fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

/// Exactly one `session.ended` for `id`, with `cause`, shows up in the audit log.
async fn assert_one_end(server: &Server, id: &str, cause: &str) {
    assert!(
        eventually(T, || {
            let lines = server.audit_lines();
            let ended = session_events(&lines, "session.ended", id);
            ended.len() == 1 && ended[0]["cause"] == cause
        })
        .await,
        "one session.ended {cause}: {:?}",
        server.audit_lines()
    );
}

fn session_events<'a>(lines: &'a [Value], event: &str, id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["event"] == event && l["session_id"] == id)
        .collect()
}

// ---------------------------------------------------------------------------------------
// A small Prometheus text-format parser.

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|e| format!("value {s:?}: {e}")),
    }
}

/// Parses `{k="v",...}` (escapes `\\`, `\"`, `\n`); returns the labels and the rest.
type Labels = Vec<(String, String)>;

fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = s.strip_prefix('{').expect("called on '{'");
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let key = rest[..eq].trim();
        if !is_metric_name(key) || key.contains(':') {
            return Err(format!("bad label name {key:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Every non-comment line is `name{labels} value [timestamp]` with a float value; HELP and
/// TYPE lines are well formed, and every sample belongs to a family with a TYPE.
fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let parts: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match parts.as_slice() {
                ["HELP", name, ..] if !is_metric_name(name) => {
                    return Err(at("bad HELP name".into()));
                }
                ["HELP", _, ..] => {}
                ["TYPE", name, kind] => {
                    if !is_metric_name(name) {
                        return Err(at("bad TYPE name".into()));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"]
                        .contains(&kind.trim())
                    {
                        return Err(at("unknown TYPE".into()));
                    }
                    if types
                        .insert(name.to_string(), kind.trim().to_string())
                        .is_some()
                    {
                        return Err(at("TYPE given twice".into()));
                    }
                }
                ["TYPE", ..] | ["HELP", ..] => return Err(at("malformed HELP/TYPE".into())),
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let value = match fields.as_slice() {
            [value] => parse_value(value).map_err(at)?,
            [value, ts] => {
                ts.parse::<i64>()
                    .map_err(|e| at(format!("timestamp: {e}")))?;
                parse_value(value).map_err(at)?
            }
            _ => return Err(at("expected `value [timestamp]`".into())),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        if !types.contains_key(family) {
            return Err(at(format!("sample of {family} before its TYPE")));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(samples)
}

/// The value of the sample with this name and exactly these labels.
fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
}

async fn scrape(server: &Server) -> Vec<Sample> {
    let resp = http().get(server.http("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "/metrics answers 200");
    let ctype = resp.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ctype.starts_with("text/plain"), "content type {ctype}");
    let text = resp.text().await.unwrap();
    parse_prometheus(&text).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}"))
}

#[test]
fn prometheus_parser_rejects_malformed_text() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n";
    let samples = parse_prometheus(good).unwrap();
    assert_eq!(
        metric(&samples, "a_total", &[("x", "1"), ("y", "q\"")]),
        Some(3.0)
    );
    assert_eq!(metric(&samples, "h_count", &[]), Some(2.0));
    for bad in [
        "# TYPE a counter\na one\n",
        "# TYPE a counter\na{x=1} 1\n",
        "b 1\n",
        "# TYPE a nonsense\na 1\n",
        "# TYPE a counter\na 1 2 3\n",
        "# TYPE\n",
        "# HELP\n",
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Admin API.

#[tokio::test]
async fn admin_api_needs_the_token_on_every_endpoint() {
    let server = Server::start(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let show = format!("/admin/sessions/{id}");
    let endpoints = [
        (Method::GET, "/admin/sessions"),
        (Method::GET, show.as_str()),
        (Method::DELETE, show.as_str()),
        (Method::POST, "/admin/drain"),
        (Method::GET, "/admin/status"),
    ];
    let same_length_wrong = "x".repeat(ADMIN_TOKEN.len());
    for (method, path) in &endpoints {
        for token in [None, Some("wrong-token"), Some(same_length_wrong.as_str())] {
            let resp = admin(&server, method.clone(), path, token).await;
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with token {token:?}"
            );
            assert_eq!(
                resp.headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer"),
                "{method} {path}: 401 names the scheme"
            );
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"].is_string(), "{method} {path}: {body}");
        }
    }
    // A token in another scheme is not accepted either.
    let resp = http()
        .get(server.admin_url("/admin/status"))
        .header("Authorization", format!("Basic {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // None of the refused calls did anything: the session lives, nothing drains.
    c.run("echo alive-$((3+4))", "alive-7").await;
    let (status, body) = admin_json(&server, Method::GET, "/admin/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["capacity"]["draining"], false, "{body}");
    assert_eq!(body["capacity"]["active"], 1, "{body}");
    assert_eq!(body["deployment"], server.deployment.as_str());
    assert!(
        body["instance"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    // Unknown admin paths need the token too, then 404.
    let resp = admin(&server, Method::GET, "/admin/nothing", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = admin(&server, Method::GET, "/admin/nothing", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_lists_inspects_and_kills_sessions() {
    let server = Server::start(&[]);
    let key_a = unique_key();
    let key_b = unique_key();
    let (mut a, id_a) = session_with_key(&server, &key_a).await;
    let (mut b, id_b) = session_with_key(&server, &key_b).await;
    a.wait_output("$ ", T).await;
    b.wait_output("$ ", T).await;
    a.run("echo listed-$((5*5))", "listed-25").await;
    // B drops without a close: detached, waiting for a resume.
    b.reset();

    let detached = |body: &Value| {
        body["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["id"] == id_b.as_str() && s["state"] == "detached")
    };
    let deadline = Instant::now() + T;
    let list = loop {
        let (status, body) = admin_json(&server, Method::GET, "/admin/sessions").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if detached(&body) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "B never showed as detached: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let text = list.to_string();
    assert!(
        !text.contains(&key_a) && !text.contains(&key_b) && !text.contains("ops-secret"),
        "the listing never carries credentials: {text}"
    );
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{list}");
    let by_id = |id: &str| {
        sessions
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed: {list}"))
            .clone()
    };
    let (sa, sb) = (by_id(&id_a), by_id(&id_b));
    assert_eq!(sa["state"], "attached", "{sa}");
    assert_eq!(sb["state"], "detached", "{sb}");
    for (s, id) in [(&sa, &id_a), (&sb, &id_b)] {
        chrono::DateTime::parse_from_rfc3339(s["created"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("created is RFC 3339 ({e}): {s}"));
        assert_eq!(s["client_address"], "127.0.0.1", "{s}");
        assert_eq!(
            s["container_id"].as_str(),
            container_of(id).as_deref(),
            "the listed container is the session's: {s}"
        );
        assert_eq!(s["image"], "termcell-sandbox:latest", "{s}");
        assert!(s["bytes_out"].as_u64().unwrap() > 0, "output counted: {s}");
        let fp = s["credential_fingerprint"].as_str().unwrap();
        assert!(
            fp.len() == 8 && fp.chars().all(|c| c.is_ascii_hexdigit()),
            "fingerprint is 8 hex characters: {fp:?}"
        );
        for field in ["last_input", "bytes_in"] {
            assert!(s.get(field).is_some(), "{field} listed: {s}");
        }
    }
    assert_ne!(
        sa["credential_fingerprint"], sb["credential_fingerprint"],
        "different keys, different fingerprints"
    );
    assert!(
        sa["bytes_in"].as_u64().unwrap() >= "echo listed-$((5*5))\r".len() as u64,
        "{sa}"
    );
    chrono::DateTime::parse_from_rfc3339(sa["last_input"].as_str().expect("A typed"))
        .expect("last_input is RFC 3339");

    // One session by id.
    let (status, one) = admin_json(&server, Method::GET, &format!("/admin/sessions/{id_a}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], id_a.as_str());
    assert_eq!(one["container_id"], sa["container_id"]);
    assert!(!one.to_string().contains(&key_a));

    // Malformed and unknown ids.
    let long = "a".repeat(1000);
    for method in [Method::GET, Method::DELETE] {
        for bad in ["..%2f..%2fetc", long.as_str(), "not-a-uuid"] {
            let (status, body) =
                admin_json(&server, method.clone(), &format!("/admin/sessions/{bad}")).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{method} of id {bad:.40}: {body}"
            );
        }
        let unknown = uuid::Uuid::new_v4();
        let (status, body) = admin_json(
            &server,
            method.clone(),
            &format!("/admin/sessions/{unknown}"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} unknown id: {body}");
    }

    // Kill A: the client is told 4004, the container goes, the session is gone.
    let container_a = container_of(&id_a).unwrap();
    let (status, body) =
        admin_json(&server, Method::DELETE, &format!("/admin/sessions/{id_a}")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, reason) = expect_end(&mut a, 4004).await;
    assert_eq!(reason, "Session terminated by administrator");
    assert!(
        wait_gone(&id_a, T),
        "the killed session's container is removed"
    );
    assert!(
        containers_with_label(&format!("termcell.session={id_a}")).is_empty()
            && !docker_ps_all().contains(&container_a),
        "container {container_a} is gone"
    );
    let path = format!("/admin/sessions/{id_a}");
    let deadline = Instant::now() + T;
    loop {
        let (status, _) = admin_json(&server, Method::GET, &path).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(Instant::now() < deadline, "killed session still listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = admin_json(&server, Method::DELETE, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a second kill finds nothing");
    // B is untouched by A's kill.
    let (status, body) = admin_json(&server, Method::GET, &format!("/admin/sessions/{id_b}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        eventually(T, || !events(&server.audit_lines(), "admin.kill")
            .is_empty())
        .await,
        "the kill is audited"
    );
}

fn docker_ps_all() -> String {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn drain_warns_ends_sessions_and_refuses_new_ones() {
    let server = Server::start(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let (status, body) = admin_json(&server, Method::POST, "/admin/drain?warn=3").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["draining"], true, "{body}");
    assert_eq!(body["sessions"], 1, "{body}");
    let warning = c
        .wait_control("warning", None, Duration::from_secs(10))
        .await;
    assert!(warning["reason"].is_string(), "{warning}");
    assert!(
        warning["secondsLeft"].as_u64().is_some_and(|s| s <= 3),
        "{warning}"
    );
    // While draining: no new sessions, not ready.
    let mut late = Client::connect(&server).await;
    late.auth(json!({"apiKey": "app.key:secret"})).await;
    let (code, reason) = expect_end(&mut late, 1001).await;
    assert_eq!(code, 1001, "{reason}");
    assert!(
        !late.controls.iter().any(|v| v["type"] == "hello"),
        "no session while draining"
    );
    let (status, ready) = get(server.http("/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let (_, st) = admin_json(&server, Method::GET, "/admin/status").await;
    assert_eq!(st["capacity"]["draining"], true, "{st}");
    // After the warning the live session ends with 1001.
    let (_, reason) = expect_end(&mut c, 1001).await;
    assert_eq!(reason, "Server shutting down");
    assert!(wait_gone(&id, T), "drained session container removed");
    assert!(server.wait_no_containers(T), "nothing left after the drain");
    let lines = server.audit_lines();
    assert_eq!(events(&lines, "admin.drain").len(), 1);
    let ended = session_events(&lines, "session.ended", &id);
    assert!(
        eventually(T, || session_events(
            &server.audit_lines(),
            "session.ended",
            &id
        )
        .len()
            == 1)
        .await,
        "one session.ended: {ended:?}"
    );
}

#[test]
fn admin_on_all_interfaces_without_token_refuses_to_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_termcell"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0"])
        .env_remove("TERMCELL_ADMIN_TOKEN")
        .env_remove("TERMCELL_ADMIN_TOKEN_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("admin-listen") && stderr.contains("TERMCELL_ADMIN_TOKEN"),
        "the message names the setting: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Metrics and probes.

#[tokio::test]
async fn metrics_health_and_ready() {
    let server = Server::start(&[]);
    let (status, health) = get(server.http("/health")).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let (status, ready) = get(server.http("/ready")).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["docker"], true, "{ready}");
    let protections = ready["protections"].as_array().expect("protections list");
    assert!(!protections.is_empty(), "{ready}");
    assert!(protections.iter().all(|p| p["name"].is_string()), "{ready}");

    let before = scrape(&server).await;
    assert_eq!(
        metric(&before, "termcell_sessions_started_total", &[]),
        Some(0.0)
    );
    assert_eq!(metric(&before, "termcell_sessions_active", &[]), Some(0.0));
    assert!(before.iter().all(|s| s.name.starts_with("termcell_")));

    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let typed = "echo metric-$((2+2))";
    c.run(typed, "metric-4").await;
    let during = scrape(&server).await;
    assert_eq!(
        metric(&during, "termcell_sessions_started_total", &[]),
        Some(1.0)
    );
    assert_eq!(metric(&during, "termcell_sessions_active", &[]), Some(1.0));
    assert_eq!(
        metric(&during, "termcell_container_create_seconds_count", &[]),
        Some(1.0),
        "one container created"
    );
    assert!(
        metric(&during, "termcell_container_create_seconds_sum", &[]).unwrap() > 0.0,
        "create time observed"
    );
    let bytes_in = metric(&during, "termcell_bytes_in_total", &[]).unwrap();
    assert!(bytes_in >= (typed.len() + 1) as f64, "bytes in {bytes_in}");
    let bytes_out = metric(&during, "termcell_bytes_out_total", &[]).unwrap();
    assert!(bytes_out > typed.len() as f64, "bytes out {bytes_out}");

    c.send_text("exit\r").await;
    expect_end(&mut c, 4000).await;
    let deadline = Instant::now() + T;
    loop {
        let after = scrape(&server).await;
        let ended = metric(
            &after,
            "termcell_sessions_total",
            &[("cause", "shell_exited")],
        );
        if ended == Some(1.0) {
            assert_eq!(metric(&after, "termcell_sessions_active", &[]), Some(0.0));
            assert_eq!(
                metric(&after, "termcell_sessions_started_total", &[]),
                Some(1.0)
            );
            assert!(metric(&after, "termcell_bytes_in_total", &[]).unwrap() >= bytes_in);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sessions_total{{cause=shell_exited}} never reached 1: {ended:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Audit log.

/// Reads the raw audit file: every line JSON with an RFC 3339 `time` and an `event`.
fn checked_audit(server: &Server) -> (String, Vec<Value>) {
    let raw = std::fs::read_to_string(server.audit_path()).expect("audit file");
    let mut lines = Vec::new();
    for line in raw.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let time = v["time"]
            .as_str()
            .unwrap_or_else(|| panic!("no time: {line}"));
        chrono::DateTime::parse_from_rfc3339(time)
            .unwrap_or_else(|e| panic!("time is not RFC 3339 ({e}): {line}"));
        assert!(v["event"].is_string(), "no event: {line}");
        lines.push(v);
    }
    (raw, lines)
}

#[tokio::test]
async fn audit_log_records_each_end_once_with_its_cause() {
    let mut server = Server::start(&["--resume-grace", "1", "--shutdown-timeout", "5"]);
    let key = unique_key();
    let exited = async {
        let (mut c, id) = session_with_key(&server, &key).await;
        c.wait_output("$ ", T).await;
        c.send_text("exit\r").await;
        expect_end(&mut c, 4000).await;
        id
    };
    let closed = async {
        let (mut c, id) = session_with_key(&server, &key).await;
        c.wait_output("$ ", T).await;
        c.close(1000, "user-closed-x").await;
        // A real client waits for the answer; dropping at once may reset the socket first.
        let _ = c.wait_close(T).await;
        id
    };
    let killed = async {
        let (mut c, id) = session_with_key(&server, &key).await;
        c.wait_output("$ ", T).await;
        let (status, _) =
            admin_json(&server, Method::DELETE, &format!("/admin/sessions/{id}")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        expect_end(&mut c, 4004).await;
        id
    };
    let dropped = async {
        let (mut c, id) = session_with_key(&server, &key).await;
        c.wait_output("$ ", T).await;
        c.reset();
        id
    };
    let (exited, closed, killed, dropped) = tokio::join!(exited, closed, killed, dropped);
    let ids = [&exited, &closed, &killed, &dropped];
    assert!(
        eventually(T, || {
            let lines = server.audit_lines();
            ids.iter()
                .all(|id| !session_events(&lines, "session.ended", id).is_empty())
        })
        .await,
        "every session ended: {:?}",
        server.audit_lines()
    );
    for id in ids {
        assert!(wait_gone(id, T), "container of {id} removed");
    }
    // The last one is live when the server stops.
    let (mut live, live_id) = session_with_key(&server, &key).await;
    live.wait_output("$ ", T).await;
    server.signal("TERM");
    expect_end(&mut live, 1001).await;
    assert_eq!(server.wait_exit(T), Some(0), "clean exit");

    let (raw, lines) = checked_audit(&server);
    assert!(
        !raw.contains(&key) && !raw.contains(key.split(':').nth(1).unwrap()),
        "no credential text in the audit log"
    );
    assert!(!server.log().contains(key.split(':').nth(1).unwrap()));
    assert_eq!(lines.first().unwrap()["event"], "server.start", "{raw}");
    assert_eq!(lines.last().unwrap()["event"], "server.stop", "{raw}");
    assert_eq!(events(&lines, "server.start").len(), 1);
    assert_eq!(events(&lines, "server.stop").len(), 1);
    let expected = [
        (&exited, "shell_exited"),
        (&closed, "client_closed"),
        (&killed, "admin_kill"),
        (&dropped, "grace_expired"),
        (&live_id, "shutdown"),
    ];
    for (id, cause) in expected {
        let ended = session_events(&lines, "session.ended", id);
        assert_eq!(ended.len(), 1, "one session.ended for {cause}: {ended:?}");
        assert_eq!(ended[0]["cause"], cause, "{}", ended[0]);
        assert_eq!(session_events(&lines, "session.created", id).len(), 1);
        let created = session_events(&lines, "container.created", id);
        let removed = session_events(&lines, "container.removed", id);
        assert_eq!(created.len(), 1, "{cause}: container.created {created:?}");
        assert_eq!(removed.len(), 1, "{cause}: container.removed {removed:?}");
        assert_eq!(created[0]["container_id"], removed[0]["container_id"]);
    }
    assert_eq!(events(&lines, "session.ended").len(), 5, "{raw}");
    assert!(server.containers().is_empty(), "nothing left behind");
}

#[tokio::test]
async fn idle_timeout_ends_and_is_audited() {
    let server = Server::start(&["--idle-timeout", "2", "--warn-before", "1"]);
    let (mut c, id) = Client::session(&server).await;
    let warning = c.wait_control("warning", None, T).await;
    assert!(warning["secondsLeft"].as_u64().is_some(), "{warning}");
    let (_, reason) = expect_end(&mut c, 1000).await;
    assert!(reason.contains("inactiv"), "{reason}");
    assert!(wait_gone(&id, T));
    assert_one_end(&server, &id, "idle_timeout").await;
}

#[tokio::test]
async fn audit_logging_false_writes_no_file() {
    let mut server = Server::start_with(&[], &[("AUDIT_LOGGING", "false")]);
    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    c.send_text("exit\r").await;
    expect_end(&mut c, 4000).await;
    server.signal("TERM");
    assert_eq!(server.wait_exit(T), Some(0));
    assert!(
        !server.audit_path().exists(),
        "no audit file with AUDIT_LOGGING=false"
    );
}

// ---------------------------------------------------------------------------------------
// Shutdown, restart, reapers.

#[tokio::test]
async fn sigterm_ends_sessions_removes_containers_and_exits_0() {
    let mut server = Server::start(&["--shutdown-timeout", "5"]);
    let (mut a, id_a) = Client::session(&server).await;
    let (mut b, id_b) = Client::session(&server).await;
    a.wait_output("$ ", T).await;
    b.wait_output("$ ", T).await;
    assert_eq!(server.containers().len(), 2);
    let signalled = Instant::now();
    server.signal("TERM");
    let (ra, rb) = tokio::join!(expect_end(&mut a, 1001), expect_end(&mut b, 1001));
    assert_eq!(ra.1, "Server shutting down");
    assert_eq!(rb.1, "Server shutting down");
    let code = server.wait_exit(Duration::from_secs(20));
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "exit code; log:\n{}", server.log());
    assert!(
        took < Duration::from_secs(6),
        "exited within the 5 s shutdown timeout (took {took:?})"
    );
    assert!(server.containers().is_empty(), "no container left");
    let (_, lines) = checked_audit(&server);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "server.stop", "{last}");
    assert_eq!(last["sessions_ended"], 2, "{last}");
    for id in [&id_a, &id_b] {
        let ended = session_events(&lines, "session.ended", id);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0]["cause"], "shutdown");
    }
    println!("shutdown with 2 sessions took {took:?}");
}

#[tokio::test]
async fn restart_after_kill_9_removes_the_orphans() {
    let mut first = Server::start(&[]);
    let (_a, _) = Client::session(&first).await;
    let (_b, _) = Client::session(&first).await;
    let orphans = first.containers();
    assert_eq!(orphans.len(), 2);
    first.signal("KILL");
    // Taken out so that dropping `first` later does not kill anything; its containers stay.
    let mut child = first.child.take().unwrap();
    child.wait().unwrap();
    assert_eq!(
        first.containers().len(),
        2,
        "kill -9 leaves the containers behind"
    );
    let dir = std::env::temp_dir().join(format!("termcell-{}-second", first.deployment));
    std::fs::create_dir_all(&dir).unwrap();
    let second = Server::start_in(&first.deployment, &dir, &[], &[]);
    // The sweep runs before the listeners open.
    let left: Vec<_> = second
        .containers()
        .into_iter()
        .filter(|c| orphans.contains(c))
        .collect();
    assert!(left.is_empty(), "orphans removed at start: {left:?}");
    assert!(
        second.log().contains("removed 2 container(s)"),
        "{}",
        second.log()
    );
    let (mut c, _) = Client::session(&second).await;
    c.run("echo second-$((1+1))", "second-2").await;
}

#[tokio::test]
async fn periodic_reaper_removes_unowned_containers_only() {
    let server = Server::start(&["--reap-interval", "1"]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let (_, status) = admin_json(&server, Method::GET, "/admin/status").await;
    let instance = status["instance"].as_str().expect("instance").to_string();
    let out = Command::new("docker")
        .args([
            "run",
            "-d",
            "--network",
            "none",
            "--label",
            "termcell.managed-by=termcell",
            "--label",
            &format!("termcell.deployment={}", server.deployment),
            "--label",
            &format!("termcell.instance={instance}"),
            "--label",
            &format!("termcell.session={}", uuid::Uuid::new_v4()),
            "termcell-sandbox:latest",
            "sleep",
            "300",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let orphan = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(15), || !docker_ps_all()
            .contains(&orphan))
        .await,
        "the reaper removes the unowned container"
    );
    println!("orphan reaped after {:?}", started.elapsed());
    assert!(
        eventually(T, || server
            .audit_lines()
            .iter()
            .any(|l| l["event"] == "container.removed"
                && l["container_id"] == orphan.as_str()
                && l["reason"] == "orphaned"))
        .await,
        "the reaping is audited"
    );
    // The live session's container survived several sweeps.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(container_of(&id).is_some());
    c.run("echo owned-$((2+5))", "owned-7").await;
}

#[tokio::test]
async fn container_removed_from_outside_ends_the_session() {
    let server = Server::start(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let container = container_of(&id).unwrap();
    let status = Command::new("docker")
        .args(["rm", "-f", &container])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let (_, reason) = expect_end(&mut c, 1011).await;
    assert!(!reason.is_empty(), "1011 says why");
    assert_one_end(&server, &id, "container_died").await;
}

// ---------------------------------------------------------------------------------------
// Docker engine restart (disruptive: run alone with `-- --ignored engine_restart`).

fn docker_up() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn dockerd_running() -> bool {
    Command::new("pidof")
        .arg("dockerd")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn start_dockerd() {
    // The API socket closes before the old daemon has stopped its containers and exited; a
    // new one started meanwhile finds its pid file and quits.
    let deadline = Instant::now() + Duration::from_secs(60);
    while dockerd_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    // As scripts/setup.sh does, in its own session so the test's process group is not its.
    let _ = Command::new("sh")
        .args([
            "-c",
            "setsid nohup dockerd >/var/log/termcell-dockerd.log 2>&1 < /dev/null &",
        ])
        .status();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !docker_up() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Brings dockerd back whatever happens to the test.
struct DockerdGuard;

impl Drop for DockerdGuard {
    fn drop(&mut self) {
        if !docker_up() {
            start_dockerd();
        }
    }
}

#[tokio::test]
#[ignore = "stops the Docker engine: run alone with `-- --ignored engine_restart`"]
async fn engine_restart_is_survived() {
    let mut server = Server::start(&["--reap-interval", "2"]);
    let (mut c, _) = Client::session(&server).await;
    c.run("echo before-$((1+1))", "before-2").await;

    let _guard = DockerdGuard;
    let pid = String::from_utf8(
        Command::new("pidof")
            .arg("dockerd")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert!(!pid.is_empty(), "dockerd runs");
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(
        eventually(Duration::from_secs(60), || !docker_up()).await,
        "dockerd stopped"
    );

    let (status, ready) = get(server.http("/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["docker"], false, "{ready}");
    let mut refused = Client::connect(&server).await;
    refused.auth(json!({"apiKey": "app.key:secret"})).await;
    let close = refused.wait_close(T).await.expect("a close frame");
    assert!(
        [1011, 1013, 4009].contains(&close.0) && !close.1.is_empty(),
        "a clean refusal with a reason: {close:?}"
    );
    let control = refused
        .controls
        .iter()
        .find(|v| v["payload"] == "error" || v["payload"] == "disconnected")
        .expect("a status control before the close");
    assert_eq!(control["code"], close.0);
    assert!(
        server.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the server is still running; log:\n{}",
        server.log()
    );

    start_dockerd();
    assert!(docker_up(), "dockerd is back");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(server.http("/ready")).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "/ready never came back: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (mut again, again_id) = Client::session(&server).await;
    again.run("echo after-$((2+2))", "after-4").await;
    // The Docker events stream reconnected: an OOM kill is audited again.
    again
        .send_text("awk 'BEGIN { s = \"x\"; while (1) s = s s }'; echo hog-rc=$?\r")
        .await;
    again
        .wait_output("hog-rc=137", Duration::from_secs(60))
        .await;
    server
        .wait_audit("security.oom", Some(&again_id), Duration::from_secs(20))
        .await;
    assert!(server.child.as_mut().unwrap().try_wait().unwrap().is_none());
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
