use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tempfile::TempDir;
use uuid::Uuid;

use super::files::{apply_retention, file_name, session_of};
use super::*;
use crate::metrics::Metrics;
use crate::screen::Size;

fn recordings(dir: &TempDir, tweak: impl FnOnce(&mut RecordingConfig)) -> Recordings {
    let mut cfg = RecordingConfig::new(dir.path().join("rec"));
    tweak(&mut cfg);
    Recordings::start(cfg, &Metrics::new()).expect("the recording directory is usable")
}

fn begin(recordings: &Recordings, id: Uuid) -> Recorder {
    recordings
        .begin(RecordingHeader {
            session_id: id,
            started: Utc::now(),
            size: Size { cols: 80, rows: 24 },
            image: "img:1",
            client: IpAddr::from([10, 0, 0, 7]),
        })
        .expect("recording is on")
}

fn lines(recordings: &Recordings, id: Uuid) -> Vec<Value> {
    recordings.flush(Duration::from_secs(5));
    let text = std::fs::read_to_string(recordings.path(id).unwrap()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

fn output_text(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_recording_is_asciicast_v2_with_output_resizes_and_no_input_by_default() {
    let dir = TempDir::new().unwrap();
    let recs = recordings(&dir, |_| {});
    let id = Uuid::new_v4();
    let mut rec = begin(&recs, id);
    rec.output(b"hello ");
    rec.input(b"secret-typed\r");
    rec.resize(Size {
        cols: 120,
        rows: 40,
    });
    rec.output("wörld\r\n".as_bytes());
    let summary = rec.finish();
    assert_eq!(summary.file, format!("{id}.cast"));
    assert_eq!(summary.truncated, None);

    let all = lines(&recs, id);
    let header = &all[0];
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 80);
    assert_eq!(header["height"], 24);
    assert_eq!(header["session_id"], id.to_string());
    assert_eq!(header["image"], "img:1");
    assert_eq!(header["client_address"], "10.0.0.7");
    let events = &all[1..];
    assert_eq!(output_text(events), "hello wörld\r\n");
    assert!(events.iter().any(|e| e[1] == "r" && e[2] == "120x40"));
    assert!(events.iter().all(|e| e[1] != "i"));
    let times: Vec<f64> = events.iter().map(|e| e[0].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let file_len = std::fs::metadata(recs.path(id).unwrap()).unwrap().len();
    let header_len = serde_json::to_vec(header).unwrap().len() as u64 + 1;
    assert_eq!(
        summary.bytes + header_len,
        file_len,
        "the summary counts the events"
    );
}

#[test]
fn input_is_recorded_only_when_asked() {
    let dir = TempDir::new().unwrap();
    let recs = recordings(&dir, |c| c.input = true);
    let id = Uuid::new_v4();
    let mut rec = begin(&recs, id);
    rec.input(b"ls\r");
    drop(rec);
    let events = lines(&recs, id);
    assert!(events.iter().any(|e| e[1] == "i" && e[2] == "ls\r"));
}

#[test]
fn characters_split_across_chunks_are_whole_and_invalid_bytes_replaced() {
    let mut carry = Vec::new();
    let euro = "€".as_bytes();
    assert_eq!(utf8_text(&mut carry, &euro[..1]), "");
    assert_eq!(utf8_text(&mut carry, &euro[1..]), "€");
    assert!(carry.is_empty());
    assert_eq!(utf8_text(&mut carry, b"a\xffb"), "a\u{FFFD}b");
    assert_eq!(utf8_text(&mut carry, b"x\xe2\x82"), "x");
    assert_eq!(carry, b"\xe2\x82");
}

#[test]
fn the_size_cap_truncates_with_a_marker_and_bounds_the_file() {
    let dir = TempDir::new().unwrap();
    let recs = recordings(&dir, |c| c.max_bytes = 8192);
    let id = Uuid::new_v4();
    let mut rec = begin(&recs, id);
    let chunk = vec![b'x'; 1000];
    for _ in 0..100 {
        rec.output(&chunk);
    }
    assert_eq!(rec.truncated(), Some("size_cap"));
    let summary = rec.finish();
    assert_eq!(summary.truncated, Some("size_cap"));
    let events = lines(&recs, id);
    let len = std::fs::metadata(recs.path(id).unwrap()).unwrap().len();
    assert!(len < 8192 + 1024, "the file stays near its cap: {len}");
    let last = events.last().unwrap();
    assert_eq!(last[1], "m");
    assert!(last[2].as_str().unwrap().contains(TRUNCATED_MARKER));
    let file = recs.find(id).unwrap();
    assert!(file.truncated && !file.recording);
}

#[test]
fn a_backlog_over_the_buffer_truncates_instead_of_growing() {
    let dir = TempDir::new().unwrap();
    let recs = recordings(&dir, |c| c.buffer_bytes = 64);
    let id = Uuid::new_v4();
    let mut rec = begin(&recs, id);
    rec.output(&[b'y'; 500]);
    assert_eq!(rec.truncated(), Some("backlog"));
    rec.output(b"after");
    drop(rec);
    let events = lines(&recs, id);
    assert!(!output_text(&events).contains("after"));
    assert!(recs.find(id).unwrap().truncated);
}

#[test]
fn a_live_recording_cannot_be_deleted_a_finished_one_can() {
    let dir = TempDir::new().unwrap();
    let recs = recordings(&dir, |_| {});
    let id = Uuid::new_v4();
    let rec = begin(&recs, id);
    recs.flush(Duration::from_secs(5));
    assert!(recs.find(id).unwrap().recording);
    assert!(matches!(
        recs.delete(id),
        Err(RecordingsError::StillRecording)
    ));
    drop(rec);
    recs.flush(Duration::from_secs(5));
    assert_eq!(recs.list().unwrap().len(), 1);
    recs.delete(id).unwrap();
    assert!(matches!(recs.find(id), Err(RecordingsError::NotFound)));
    assert!(matches!(recs.delete(id), Err(RecordingsError::NotFound)));
}

#[test]
fn off_recordings_answer_off() {
    let recs = Recordings::disabled(&Metrics::new());
    assert!(!recs.is_enabled());
    assert!(matches!(recs.list(), Err(RecordingsError::Off)));
    assert!(matches!(recs.path(Uuid::nil()), Err(RecordingsError::Off)));
}

#[test]
fn only_session_file_names_count() {
    let id = Uuid::new_v4();
    assert_eq!(session_of(&file_name(id)), Some(id));
    assert_eq!(session_of("audit.log"), None);
    assert_eq!(session_of("../x.cast"), None);
    assert_eq!(session_of(&format!("{}.cast", id.simple())), None);
}

#[test]
fn retention_deletes_the_oldest_finished_recordings_over_the_cap_and_nothing_else() {
    let dir = TempDir::new().unwrap();
    let mut cfg = RecordingConfig::new(dir.path().to_path_buf());
    cfg.max_total_bytes = Some(2500);
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        std::fs::write(dir.path().join(file_name(*id)), vec![b'a'; 1000]).unwrap();
        // Distinct modification times, oldest first.
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(dir.path().join("notes.txt"), vec![b'n'; 5000]).unwrap();
    // The oldest is still being written: never deleted.
    let live: HashSet<Uuid> = [ids[0]].into();
    assert_eq!(apply_retention(&cfg, &live), 2);
    let left: HashSet<Uuid> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter_map(|e| session_of(e.file_name().to_str()?))
        .collect();
    assert_eq!(left, [ids[0], ids[3]].into());
    assert!(dir.path().join("notes.txt").exists());
}

#[test]
fn a_new_directory_is_private_and_an_unwritable_one_fails_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let recs = recordings(&dir, |_| {});
    let mode = std::fs::metadata(&recs.config().unwrap().dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o750);
    // A file where the directory should be.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    assert!(Recordings::start(RecordingConfig::new(file), &Metrics::new()).is_err());
}
