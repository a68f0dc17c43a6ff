//! Support for unit tests of actor logic: a `Shared` around the fake engine with a real
//! audit log in a temporary directory, and recorder actors that play a client or the
//! registry. Every wait is on a message or a recorded call, bounded by `within`.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use bytes::Bytes;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::audit::{Audit, AuditConfig};
use crate::budget::Credit;
use crate::credentials::{Fingerprint, FingerprintKey};
use crate::docker::fake::FakeEngine;
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::registry::Unregister;
use crate::session::{ClientHandle, EndCause, Input, SessionActor, SessionRequest, ToClient};
use crate::{SessionSettings, Shared};

/// How long a test waits for anything before it fails.
const WAIT: Duration = Duration::from_secs(5);

/// Awaits `fut`, failing the test with `what` when it takes longer than `WAIT`.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Sends `msg` to `addr` and awaits the answer, bounded by `within`.
pub async fn ask<A, M>(addr: &Addr<A>, msg: M) -> M::Result
where
    A: Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    within("an actor's answer", addr.send(msg))
        .await
        .expect("the actor is alive")
}

/// An actor that forwards every message it gets to a channel.
pub struct Recorder<M>(mpsc::UnboundedSender<M>);

impl<M: 'static> Actor for Recorder<M> {
    type Context = Context<Self>;
}

impl<M: Message<Result = ()> + 'static> Handler<M> for Recorder<M> {
    type Result = ();

    fn handle(&mut self, msg: M, _: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

/// Starts a recorder; returns its address and what it receives.
pub fn recorder<M: Message<Result = ()> + Send + 'static>(
) -> (Addr<Recorder<M>>, mpsc::UnboundedReceiver<M>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Recorder(tx).start(), rx)
}

/// A test client: a socket as the session sees it, and what the session told it.
pub struct Client {
    pub handle: ClientHandle,
    rx: mpsc::UnboundedReceiver<ToClient>,
}

impl Client {
    pub fn new(conn_id: u64) -> Client {
        let (addr, rx) = recorder();
        Client {
            handle: ClientHandle {
                conn_id,
                recipient: addr.recipient(),
                ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, conn_id as u8)),
            },
            rx,
        }
    }

    pub async fn next(&mut self) -> ToClient {
        within("a message to the client", self.rx.recv())
            .await
            .expect("the recorder lives as long as the client")
    }

    pub async fn expect_connected(&mut self, session: Uuid) {
        match self.next().await {
            ToClient::Connected { session_id } => assert_eq!(session_id, session),
            other => panic!("expected Connected, got {other:?}"),
        }
    }

    /// Takes output until `expected` has arrived (the session may split or join chunks).
    pub async fn expect_output(&mut self, expected: &[u8]) {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            match self.next().await {
                ToClient::Output(data) => got.extend_from_slice(&data),
                other => panic!("expected output {expected:?}, got {other:?}"),
            }
        }
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    /// Takes the snapshot a resumed client is drawn first and returns the screen it shows
    /// on a terminal of `cols` × `rows`, one line per row.
    pub async fn expect_redraw(&mut self, cols: u16, rows: u16) -> String {
        match self.next().await {
            ToClient::Output(data) => {
                assert!(
                    data.starts_with(b"\x1bc"),
                    "a snapshot starts by clearing the terminal: {data:?}"
                );
                let mut terminal =
                    vt100::Parser::new(rows.try_into().unwrap(), cols.try_into().unwrap(), 0);
                terminal.process(&data);
                terminal.screen().contents()
            }
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }

    /// Takes output, notices and warnings until the session ends; returns them and the cause.
    pub async fn until_end(&mut self) -> (Vec<ToClient>, EndCause) {
        let mut before = Vec::new();
        loop {
            match self.next().await {
                ToClient::Ended(cause) => return (before, cause),
                msg @ (ToClient::Output(_) | ToClient::Notice(_) | ToClient::Warning { .. }) => {
                    before.push(msg)
                }
                other => panic!("expected the end, got {other:?}"),
            }
        }
    }

    pub async fn expect_end(&mut self) -> EndCause {
        self.until_end().await.1
    }
}

/// Input as the bridge sends it, on no read budget.
pub fn input(data: &'static [u8]) -> Input {
    Input(Bytes::from_static(data), Credit::none())
}

/// Settings for tests: a long idle timeout and resume grace unless a test shortens them.
pub fn settings() -> SessionSettings {
    SessionSettings {
        deployment: "unit".into(),
        idle_timeout: Duration::from_secs(600),
        max_duration: Duration::from_secs(1800),
        resume_grace: Duration::from_secs(300),
        warn_before: Duration::from_millis(200),
        ..SessionSettings::default()
    }
}

/// A session actor under test, with the registry's side of it.
pub struct TestSession {
    pub id: Uuid,
    pub addr: Addr<SessionActor>,
    /// What the session tells the registry when it is gone.
    pub unregistered: mpsc::UnboundedReceiver<Unregister>,
    _registry: Addr<Recorder<Unregister>>,
}

/// The fake engine and an audit log in a temporary directory, behind one `Shared`.
pub struct World {
    pub fake: Arc<FakeEngine>,
    pub shared: Arc<Shared>,
    pub key: FingerprintKey,
    audit_path: PathBuf,
    _dir: TempDir,
}

impl World {
    /// Call inside an actix system (`#[actix_rt::test]`): the audit sink is an actor.
    pub fn new(settings: SessionSettings) -> World {
        let dir = TempDir::new().expect("a temporary directory");
        let audit_path = dir.path().join("audit.log");
        let audit = Audit::start(AuditConfig {
            enabled: true,
            path: audit_path.clone(),
            max_file_bytes: None,
            rotate_daily: false,
            retention_days: 0,
            max_total_bytes: None,
            repeat_window: Duration::from_secs(60),
        })
        .expect("the audit log opens");
        let fake = FakeEngine::new();
        let metrics = Metrics::new();
        let shared = Arc::new(Shared {
            pool: Default::default(),
            engine: fake.handle(),
            settings,
            audit,
            monitor: Monitor::default(),
            recordings: crate::recording::Recordings::disabled(&metrics),
            metrics,
        });
        World {
            fake,
            shared,
            key: FingerprintKey::random(),
            audit_path,
            _dir: dir,
        }
    }

    /// Starts a session for `client`, as the registry does.
    pub fn open(&self, client: &Client) -> TestSession {
        let (registry, unregistered) = recorder();
        let id = Uuid::new_v4();
        let addr = SessionActor::new(
            id,
            self.shared.clone(),
            registry.clone().recipient(),
            self.request(client),
            Default::default(),
        )
        .start();
        TestSession {
            id,
            addr,
            unregistered,
            _registry: registry,
        }
    }

    pub fn fingerprint(&self, api_key: &str) -> Fingerprint {
        self.key.fingerprint(Some(api_key), None)
    }

    pub fn request(&self, client: &Client) -> SessionRequest {
        SessionRequest {
            env: Vec::new(),
            api_key: Some("key-one".into()),
            access_token: None,
            fingerprint: self.fingerprint("key-one"),
            client: client.handle.clone(),
            slot: None,
            requested_at: Instant::now(),
        }
    }

    /// Every audit line recorded so far, once written.
    pub async fn audit(&self) -> Vec<Value> {
        within("the audit flush", self.shared.audit.flush()).await;
        std::fs::read_to_string(&self.audit_path)
            .expect("the audit log exists")
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }

    /// The audit lines of `event` about `session`.
    pub async fn audited(&self, event: &str, session: Uuid) -> Vec<Value> {
        self.audit()
            .await
            .into_iter()
            .filter(|l| l["event"] == event && l["session_id"] == session.to_string())
            .collect()
    }
}
