//! Unit tests of the audit log: line format, credential scrubbing, rotation, retention,
//! the size cap and aggregated rejections, on files in a temporary directory.

use super::files::is_rotated_name;
use super::*;
use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::SystemTime;
use tempfile::TempDir;

fn config(dir: &TempDir) -> AuditConfig {
    AuditConfig {
        enabled: true,
        path: dir.path().join("audit.log"),
        max_file_bytes: None,
        rotate_daily: false,
        retention_days: 365,
        max_total_bytes: None,
        repeat_window: Duration::from_secs(3600),
    }
}

fn lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn set_age(path: &Path, days: u64) {
    let when = SystemTime::now() - Duration::from_secs(days * 24 * 60 * 60);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[actix_rt::test]
async fn events_are_json_lines_with_time_event_session_client_and_fields() {
    let dir = TempDir::new().unwrap();
    let cfg = config(&dir);
    let audit = Audit::start(cfg.clone()).unwrap();
    let id = Uuid::new_v4();
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));

    let before = Utc::now();
    let ended = AuditEvent::new("session.ended")
        .session(id)
        .client(ip)
        .field("cause", "idle_timeout")
        .field("duration_ms", 1234u64);
    let recorded_at = Utc::now();
    // Written after a delay, the line still carries the time the event was recorded.
    tokio::time::sleep(Duration::from_millis(30)).await;
    audit.record(ended);
    audit.record(AuditEvent::new("server.start").field("version", "0.1.0"));
    audit.flush().await;

    let text = fs::read_to_string(&cfg.path).unwrap();
    assert!(text.ends_with('\n'));
    let got = lines(&cfg.path);
    assert_eq!(got.len(), 2);

    let ended = got[0].as_object().unwrap();
    assert_eq!(ended["event"], "session.ended");
    assert_eq!(ended["session_id"], id.to_string());
    assert_eq!(ended["client"], "203.0.113.9");
    assert_eq!(ended["cause"], "idle_timeout");
    assert_eq!(ended["duration_ms"], 1234);
    assert_eq!(ended.len(), 6);
    let time = ended["time"].as_str().unwrap();
    assert_eq!(time.len(), "2026-01-01T00:00:00.000Z".len(), "{time}");
    assert!(time.ends_with('Z'));
    let time = DateTime::parse_from_rfc3339(time).unwrap();
    let ms = chrono::Duration::milliseconds(1);
    assert!(time >= before - ms && time <= recorded_at, "{time}");

    let start = got[1].as_object().unwrap();
    assert_eq!(start["event"], "server.start");
    assert_eq!(start["version"], "0.1.0");
    assert!(!start.contains_key("session_id") && !start.contains_key("client"));
    assert_eq!(audit.write_errors(), 0);
}

#[actix_rt::test]
async fn credentials_and_reserved_keys_never_reach_the_file() {
    let dir = TempDir::new().unwrap();
    let cfg = config(&dir);
    let audit = Audit::start(cfg.clone()).unwrap();
    audit.record(
        AuditEvent::new("env.rejected")
            .field("apiKey", "app.key:SECRET1")
            .field("ACCESS_TOKEN", "SECRET2")
            .field("token", "SECRET3")
            .field("event", "forged")
            .field(
                "env",
                serde_json::json!({"PS1": "$ ", "password": "SECRET4",
                    "nested": [{"api_key": "SECRET5", "ok": 1}]}),
            )
            .field("names", ["LD_PRELOAD"]),
    );
    audit.flush().await;

    let text = fs::read_to_string(&cfg.path).unwrap();
    assert!(!text.contains("SECRET"), "{text}");
    let line = &lines(&cfg.path)[0];
    assert_eq!(line["event"], "env.rejected");
    assert_eq!(
        line["env"],
        serde_json::json!({"PS1": "$ ", "nested": [{"ok": 1}]})
    );
    assert_eq!(line["names"], serde_json::json!(["LD_PRELOAD"]));
}

#[actix_rt::test]
async fn flush_waits_for_every_prior_event() {
    let dir = TempDir::new().unwrap();
    let cfg = config(&dir);
    let audit = Audit::start(cfg.clone()).unwrap();
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let audit = audit.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    audit.record(AuditEvent::new("admin.kill").field("n", t * 1000 + i));
                }
            })
        })
        .collect();
    senders.into_iter().for_each(|t| t.join().unwrap());
    audit.flush().await;
    assert_eq!(lines(&cfg.path).len(), 1000);
}

#[actix_rt::test]
async fn size_rotation_keeps_every_line_exactly_once() {
    let dir = TempDir::new().unwrap();
    let cfg = AuditConfig {
        max_file_bytes: Some(400),
        ..config(&dir)
    };
    let audit = Audit::start(cfg.clone()).unwrap();
    for seq in 0..40 {
        audit.record(AuditEvent::new("container.created").field("seq", seq));
    }
    audit.flush().await;

    let names = file_names(dir.path());
    assert!(names.len() > 2, "{names:?}");
    assert!(names.contains("audit.log"));
    let mut seqs = Vec::new();
    for name in &names {
        assert!(
            name == "audit.log" || is_rotated_name(name, "audit", ".log"),
            "{name}"
        );
        let path = dir.path().join(name);
        assert!(fs::metadata(&path).unwrap().len() <= 400, "{name}");
        seqs.extend(lines(&path).iter().map(|l| l["seq"].as_u64().unwrap()));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..40).collect::<Vec<u64>>());
}

#[actix_rt::test]
async fn a_live_file_from_an_earlier_day_is_rotated_at_the_first_event() {
    let dir = TempDir::new().unwrap();
    let cfg = AuditConfig {
        rotate_daily: true,
        ..config(&dir)
    };
    fs::write(&cfg.path, "{\"event\":\"server.stop\"}\n").unwrap();
    set_age(&cfg.path, 2);

    let audit = Audit::start(cfg.clone()).unwrap();
    audit.record(AuditEvent::new("server.start"));
    audit.record(AuditEvent::new("session.created"));
    audit.flush().await;

    let names = file_names(dir.path());
    assert_eq!(names.len(), 2, "{names:?}");
    let rotated = names.iter().find(|n| *n != "audit.log").unwrap();
    assert!(is_rotated_name(rotated, "audit", ".log"), "{rotated}");
    assert_eq!(lines(&dir.path().join(rotated))[0]["event"], "server.stop");
    let live = lines(&cfg.path);
    assert_eq!(live.len(), 2);
    assert_eq!(live[0]["event"], "server.start");
}

#[actix_rt::test]
async fn retention_deletes_old_rotated_files_at_start_and_at_rotation() {
    let dir = TempDir::new().unwrap();
    let cfg = AuditConfig {
        max_file_bytes: Some(200),
        retention_days: 30,
        ..config(&dir)
    };
    let path = |name: &str| dir.path().join(name);
    for (name, age) in [
        ("audit.log", 400),
        ("audit-20240101T000000Z.log", 400),
        ("audit-20240101T000000Z-1.log", 31),
        ("audit-20260101T000000Z.log", 29),
        ("audit-notes.log", 400),
        ("other-20240101T000000Z.log", 400),
    ] {
        fs::write(path(name), "{}\n").unwrap();
        set_age(&path(name), age);
    }

    let audit = Audit::start(cfg.clone()).unwrap();
    let expected: BTreeSet<String> = [
        "audit.log",
        "audit-20260101T000000Z.log",
        "audit-notes.log",
        "other-20240101T000000Z.log",
    ]
    .map(String::from)
    .into();
    assert_eq!(file_names(dir.path()), expected);

    // A file that expires while the server runs goes at the next rotation.
    set_age(&path("audit-20260101T000000Z.log"), 31);
    for seq in 0..4 {
        audit.record(AuditEvent::new("admin.drain").field("seq", seq));
    }
    audit.flush().await;
    let names = file_names(dir.path());
    assert!(!names.contains("audit-20260101T000000Z.log"), "{names:?}");
    assert!(names.contains("audit.log") && names.contains("audit-notes.log"));
    assert!(
        names
            .iter()
            .filter(|n| is_rotated_name(n, "audit", ".log"))
            .count()
            >= 1
    );
}

#[actix_rt::test]
async fn disabled_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let cfg = AuditConfig {
        enabled: false,
        path: dir.path().join("sub").join("audit.log"),
        ..config(&dir)
    };
    for audit in [Audit::start(cfg).unwrap(), Audit::disabled()] {
        assert!(!audit.is_enabled());
        audit.record(AuditEvent::new("server.start"));
        audit.flush().await;
        assert_eq!(audit.write_errors(), 0);
    }
    assert!(file_names(dir.path()).is_empty());
}

#[actix_rt::test]
async fn start_creates_the_directory_and_fails_on_a_bad_path() {
    let dir = TempDir::new().unwrap();
    let cfg = AuditConfig {
        path: dir.path().join("a").join("b").join("audit.jsonl"),
        ..config(&dir)
    };
    Audit::start(cfg.clone()).unwrap();
    assert!(cfg.path.is_file());

    fs::write(dir.path().join("plain"), "").unwrap();
    let bad = AuditConfig {
        path: dir.path().join("plain").join("audit.log"),
        ..config(&dir)
    };
    assert!(Audit::start(bad).is_err());
}

#[actix_rt::test]
async fn a_failed_write_is_counted_and_the_file_is_opened_again() {
    let dir = TempDir::new().unwrap();
    let cfg = config(&dir);
    let audit = Audit::start(cfg.clone()).unwrap();
    audit.record(AuditEvent::new("server.start"));
    audit.flush().await;

    // Replace the live file by a directory: opening it for appending fails.
    fs::remove_file(&cfg.path).unwrap();
    fs::create_dir(&cfg.path).unwrap();
    let sink = audit.sink.clone().unwrap();
    sink.send(Fail).await.unwrap();
    audit.record(AuditEvent::new("admin.kill"));
    audit.flush().await;
    assert_eq!(audit.write_errors(), 1);

    fs::remove_dir(&cfg.path).unwrap();
    audit.record(AuditEvent::new("server.stop"));
    audit.flush().await;
    let got = lines(&cfg.path);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["event"], "server.stop");
}

#[actix_rt::test]
async fn write_errors_are_counted_without_panicking() {
    let cfg = AuditConfig {
        path: PathBuf::from("/dev/full"),
        max_file_bytes: None,
        rotate_daily: false,
        retention_days: 0,
        enabled: true,
        ..AuditConfig::default()
    };
    let audit = Audit::start(cfg).unwrap();
    audit.record(AuditEvent::new("server.start"));
    audit.record(AuditEvent::new("server.stop"));
    audit.flush().await;
    assert_eq!(audit.write_errors(), 2);
}

/// Drops the sink's open file as a failed write does.
#[derive(Message)]
#[rtype(result = "()")]
struct Fail;

impl Handler<Fail> for AuditSink {
    type Result = ();

    fn handle(&mut self, _: Fail, _: &mut Self::Context) {
        self.live = None;
    }
}

#[test]
fn rotated_names_are_recognised_exactly() {
    let live = Path::new("/var/log/termcell/audit.log");
    let when = DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        rotated_path(live, when),
        Path::new("/var/log/termcell/audit-20260304T050607Z.log")
    );
    assert_eq!(
        rotated_path(Path::new("audit"), when),
        Path::new("audit-20260304T050607Z")
    );
    assert!(is_rotated_name(
        "audit-20260304T050607Z.log",
        "audit",
        ".log"
    ));
    assert!(is_rotated_name(
        "audit-20260304T050607Z-12.log",
        "audit",
        ".log"
    ));
    assert!(is_rotated_name("audit-20260304T050607Z", "audit", ""));
    for other in [
        "audit.log",
        "audit-2026030T050607Z.log",
        "audit-20260304X050607Z.log",
        "audit-20260304T050607Z-.log",
        "audit-20260304T050607Z-x.log",
        "audit-20260304T050607Z.log.gz",
        "audits-20260304T050607Z.log",
    ] {
        assert!(!is_rotated_name(other, "audit", ".log"), "{other}");
    }
}

fn rejection(kind: &str, client: IpAddr) -> AuditEvent {
    AuditEvent::new("ratelimit.rejected")
        .client(client)
        .field("kind", kind)
}

#[actix_rt::test]
async fn rejections_are_written_once_per_key_then_counted_into_one_line() {
    let dir = TempDir::new().unwrap();
    let cfg = config(&dir);
    let audit = Audit::start(cfg.clone()).unwrap();
    let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    for _ in 0..3000 {
        audit.rejected(rejection("connections", a));
    }
    audit.rejected(rejection("connections", b));
    audit.rejected(rejection("origin", a));
    audit.flush().await;
    let got = lines(&cfg.path);
    let summary = |client: &str, kind: &str| {
        got.iter()
            .filter(|l| l["client"] == client && l["kind"] == kind)
            .map(|l| l["repeated"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    assert_eq!(summary("192.0.2.1", "connections"), vec![0, 2999]);
    assert_eq!(summary("192.0.2.2", "connections"), vec![0]);
    assert_eq!(summary("192.0.2.1", "origin"), vec![0]);
    assert_eq!(got.len(), 4);
    // The window closed: the next one is written in full again.
    audit.rejected(rejection("connections", a));
    audit.flush().await;
    let last = lines(&cfg.path).pop().unwrap();
    assert_eq!(
        (last["client"].as_str(), last.get("repeated")),
        (Some("192.0.2.1"), None)
    );
}

#[actix_rt::test]
async fn more_addresses_than_keys_are_counted_in_one_line_per_kind() {
    let dir = TempDir::new().unwrap();
    let cfg = config(&dir);
    let audit = Audit::start(cfg.clone()).unwrap();
    let n = repeats::MAX_KEYS as u32 + 500;
    for i in 0..n {
        audit.rejected(rejection(
            "origin",
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
        ));
    }
    audit.flush().await;
    let got = lines(&cfg.path);
    assert_eq!(got.len(), repeats::MAX_KEYS + 1);
    let overflow = got.last().unwrap();
    assert_eq!(overflow["repeated"], 500);
    assert!(overflow.get("client").is_none());
}

#[test]
fn client_text_is_cut_at_a_character_and_marked() {
    let long = "é".repeat(1000);
    let ev = AuditEvent::new("origin.rejected").client_text("origin", &long);
    let line: Value = serde_json::from_slice(&ev.to_line().unwrap()).unwrap();
    let cut = line["origin"].as_str().unwrap();
    assert!(cut.len() <= MAX_CLIENT_TEXT && cut.len() >= MAX_CLIENT_TEXT - 1);
    assert_eq!(line["origin_bytes"], 2000);
    let short = AuditEvent::new("origin.rejected").client_text("origin", "https://a.example");
    let line: Value = serde_json::from_slice(&short.to_line().unwrap()).unwrap();
    assert_eq!(line["origin"], "https://a.example");
    assert!(line.get("origin_bytes").is_none());
}

#[actix_rt::test]
async fn the_directory_cap_deletes_the_oldest_rotated_files_and_is_reported() {
    let dir = TempDir::new().unwrap();
    let cfg = AuditConfig {
        max_file_bytes: Some(1000),
        max_total_bytes: Some(4000),
        ..config(&dir)
    };
    let audit = Audit::start(cfg.clone()).unwrap();
    assert_eq!(audit.size_cap(), (Some(4000), false));
    for i in 0..200 {
        audit.record(AuditEvent::new("session.created").field("n", i));
    }
    audit.flush().await;
    let total: u64 = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total <= 4000, "{total} bytes in the directory");
    assert_eq!(audit.size_cap(), (Some(4000), true));
    // The newest events survive; the oldest went with their files.
    let mut ns: Vec<u64> = file_names(dir.path())
        .iter()
        .flat_map(|name| lines(&dir.path().join(name)))
        .map(|l| l["n"].as_u64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(*ns.last().unwrap(), 199);
    assert!(ns[0] > 0);
}
