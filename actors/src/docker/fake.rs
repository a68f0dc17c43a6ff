//! A fake `Engine` for unit tests of actor logic only; integration tests use the real engine.
//! It records every call, hands out in-memory TTYs on which a test plays the shell, and
//! fails the calls it is told to fail. Tests wait on what it records, never on the clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    ContainerSummary,
};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{broadcast, watch};

use super::{
    ContainerEvent, DockerEngine, DockerError, Engine, EngineFuture, HostSecurity, NetworkInfo,
    NetworkSpec, RawTty,
};
use crate::profile::labels;
use crate::testing::within;

/// Bytes each direction of a fake TTY buffers before a writer waits.
const TTY_BUFFER: usize = 64 * 1024;

/// A call the engine got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Create { name: String },
    Attach(String),
    Start(String),
    Resize { id: String, cols: u16, rows: u16 },
    Remove(String),
}

/// The calls a test can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Attach,
    Start,
    Inspect,
}

struct Container {
    labels: HashMap<String, String>,
    created: i64,
    state: ContainerState,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    failing: HashSet<Op>,
    /// `start` is recorded, then waits while this is set.
    holding_start: bool,
    /// Containers the engine has (removed ones are gone).
    containers: BTreeMap<String, Container>,
    /// Attached TTYs whose shell side no test has taken yet.
    shells: Vec<Shell>,
    pids_hits: Option<u64>,
    /// The cgroup every container has (a directory of files a test writes).
    cgroup: Option<crate::cgroup::Cgroup>,
    next_id: u64,
}

pub struct FakeEngine {
    state: watch::Sender<State>,
    events: broadcast::Sender<ContainerEvent>,
}

/// The shell's side of one container's TTY: it reads what the session wrote and writes the
/// output the session reads. Ending it (`FakeEngine::exit`, `kill`, `vanish`) ends the stream.
pub struct Shell {
    pub container_id: String,
    io: DuplexStream,
}

impl Shell {
    /// Reads exactly `expected.len()` bytes of input and checks them.
    pub async fn expect_input(&mut self, expected: &[u8]) {
        let mut got = vec![0; expected.len()];
        within("input on the TTY", self.io.read_exact(&mut got))
            .await
            .expect("the TTY is open");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    pub async fn output(&mut self, data: &[u8]) {
        within("the TTY to take output", self.io.write_all(data))
            .await
            .expect("the TTY is open");
    }
}

fn engine_error(status_code: u16, message: String) -> DockerError {
    DockerError::Api(bollard::errors::Error::DockerResponseServerError {
        status_code,
        message,
    })
}

fn no_such_container(id: &str) -> DockerError {
    engine_error(404, format!("No such container: {id}"))
}

impl FakeEngine {
    pub fn new() -> Arc<FakeEngine> {
        Arc::new(FakeEngine {
            state: watch::Sender::new(State::default()),
            events: broadcast::channel(64).0,
        })
    }

    /// The handle actors hold, reaching this fake.
    pub fn handle(self: &Arc<Self>) -> DockerEngine {
        DockerEngine::new(self.clone())
    }

    /// Makes every later call of `op` fail as an engine error (status 500).
    pub fn fail(&self, op: Op) {
        self.state.send_modify(|s| {
            s.failing.insert(op);
        });
    }

    /// `start` waits (after it is recorded) until `release_start`.
    pub fn hold_start(&self) {
        self.state.send_modify(|s| s.holding_start = true);
    }

    pub fn release_start(&self) {
        self.state.send_modify(|s| s.holding_start = false);
    }

    pub fn set_pids_hits(&self, hits: u64) {
        self.state.send_modify(|s| s.pids_hits = Some(hits));
    }

    /// Every container's cgroup from now on (a test's directory of v2 files).
    pub fn set_cgroup(&self, cgroup: crate::cgroup::Cgroup) {
        self.state.send_modify(|s| s.cgroup = Some(cgroup));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.borrow().calls.clone()
    }

    /// How often `remove` was called for `id`.
    pub fn removals(&self, id: &str) -> usize {
        self.state
            .borrow()
            .calls
            .iter()
            .filter(|c| matches!(c, Call::Remove(r) if r == id))
            .count()
    }

    /// Waits until the calls so far satisfy `done`.
    pub async fn wait_for_calls(&self, mut done: impl FnMut(&[Call]) -> bool) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| done(&s.calls)).await;
    }

    /// Waits for the next attached TTY and takes its shell side.
    pub async fn shell(&self) -> Shell {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| !s.shells.is_empty()).await;
        let mut shell = None;
        self.state.send_modify(|s| shell = Some(s.shells.remove(0)));
        shell.expect("waited for one")
    }

    /// The shell exits with `code`: the container stops, then its TTY stream ends.
    pub fn exit(&self, shell: Shell, code: i64) {
        self.stop(shell, code, false);
    }

    /// The container's init is killed (exit 137), out of memory or not.
    pub fn kill(&self, shell: Shell, oom: bool) {
        self.stop(shell, 137, oom);
    }

    /// The container is removed from outside: its TTY stream ends and inspect answers 404.
    pub fn vanish(&self, shell: Shell) {
        self.state.send_modify(|s| {
            s.containers.remove(&shell.container_id);
        });
    }

    fn stop(&self, shell: Shell, code: i64, oom: bool) {
        self.state.send_modify(|s| {
            if let Some(c) = s.containers.get_mut(&shell.container_id) {
                c.state = ContainerState {
                    status: Some(ContainerStateStatusEnum::EXITED),
                    running: Some(false),
                    exit_code: Some(code),
                    oom_killed: Some(oom),
                    ..ContainerState::default()
                };
            }
        });
        // Dropping the shell side ends the stream only after the state is set, as with
        // a real engine, where the exit code is known when the stream closes.
        drop(shell);
    }

    /// A container the engine has without any session having created it (an orphan).
    pub fn add_container(&self, labels: HashMap<String, String>, created: i64) -> String {
        self.insert(Container {
            labels,
            created,
            state: running(),
        })
    }

    /// Adds a container under a new id; returns the id.
    fn insert(&self, container: Container) -> String {
        let mut id = String::new();
        self.state.send_modify(|s| {
            s.next_id += 1;
            id = format!("fake-container-{}", s.next_id);
            s.containers.insert(id.clone(), container);
        });
        id
    }

    /// Sends a container event to every `events` stream.
    pub fn emit(&self, event: ContainerEvent) {
        let _ = self.events.send(event);
    }

    /// Records the call; fails it if told to.
    fn record(&self, call: Call, op: Option<Op>) -> Result<(), DockerError> {
        let mut failing = false;
        self.state.send_modify(|s| {
            failing = op.is_some_and(|op| s.failing.contains(&op));
            s.calls.push(call);
        });
        if failing {
            return Err(engine_error(500, "the fake engine was told to fail".into()));
        }
        Ok(())
    }
}

fn running() -> ContainerState {
    ContainerState {
        status: Some(ContainerStateStatusEnum::RUNNING),
        running: Some(true),
        ..ContainerState::default()
    }
}

impl Engine for FakeEngine {
    fn ping(&self) -> EngineFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn host_security(&self) -> EngineFuture<'_, HostSecurity> {
        Box::pin(async { Ok(HostSecurity::default()) })
    }

    fn image_exists<'a>(&'a self, _image: &'a str) -> EngineFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }

    fn build_image<'a>(&'a self, _tag: &'a str, _context_tar: Vec<u8>) -> EngineFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn create<'a>(&'a self, name: &'a str, body: ContainerCreateBody) -> EngineFuture<'a, String> {
        Box::pin(async move {
            self.record(
                Call::Create {
                    name: name.to_string(),
                },
                Some(Op::Create),
            )?;
            Ok(self.insert(Container {
                labels: body.labels.unwrap_or_default(),
                created: chrono::Utc::now().timestamp(),
                state: ContainerState {
                    status: Some(ContainerStateStatusEnum::CREATED),
                    running: Some(false),
                    ..ContainerState::default()
                },
            }))
        })
    }

    fn attach_raw<'a>(&'a self, id: &'a str) -> EngineFuture<'a, RawTty> {
        Box::pin(async move {
            self.record(Call::Attach(id.to_string()), Some(Op::Attach))?;
            if !self.state.borrow().containers.contains_key(id) {
                return Err(no_such_container(id));
            }
            let (server, shell) = tokio::io::duplex(TTY_BUFFER);
            self.state.send_modify(|s| {
                s.shells.push(Shell {
                    container_id: id.to_string(),
                    io: shell,
                })
            });
            let (reader, writer) = tokio::io::split(server);
            Ok(RawTty {
                reader: Box::new(reader),
                writer: Box::new(writer),
                initial: Bytes::new(),
            })
        })
    }

    fn start<'a>(&'a self, id: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            self.record(Call::Start(id.to_string()), None)?;
            let mut rx = self.state.subscribe();
            let _ = rx.wait_for(|s| !s.holding_start).await;
            if self.state.borrow().failing.contains(&Op::Start) {
                return Err(engine_error(500, "the fake engine was told to fail".into()));
            }
            let mut found = false;
            self.state.send_modify(|s| {
                if let Some(c) = s.containers.get_mut(id) {
                    c.state = running();
                    found = true;
                }
            });
            if found {
                Ok(())
            } else {
                Err(no_such_container(id))
            }
        })
    }

    fn resize<'a>(&'a self, id: &'a str, cols: u16, rows: u16) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            self.record(
                Call::Resize {
                    id: id.to_string(),
                    cols,
                    rows,
                },
                None,
            )
        })
    }

    fn path_exists<'a>(&'a self, _id: &'a str, _path: &'a str) -> EngineFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }

    fn remove<'a>(&'a self, id: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            self.state.send_modify(|s| {
                s.containers.remove(id);
                s.calls.push(Call::Remove(id.to_string()));
            });
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, id: &'a str) -> EngineFuture<'a, ContainerInspectResponse> {
        Box::pin(async move {
            if self.state.borrow().failing.contains(&Op::Inspect) {
                return Err(engine_error(500, "the fake engine was told to fail".into()));
            }
            let state = self.state.borrow();
            let container = state
                .containers
                .get(id)
                .ok_or_else(|| no_such_container(id))?;
            Ok(ContainerInspectResponse {
                id: Some(id.to_string()),
                state: Some(container.state.clone()),
                ..ContainerInspectResponse::default()
            })
        })
    }

    fn list_managed<'a>(
        &'a self,
        extra_labels: &'a [String],
    ) -> EngineFuture<'a, Vec<ContainerSummary>> {
        Box::pin(async move {
            let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
            let state = self.state.borrow();
            Ok(state
                .containers
                .iter()
                .filter(|(_, c)| {
                    std::iter::once(&managed).chain(extra_labels).all(|filter| {
                        match filter.split_once('=') {
                            Some((k, v)) => c.labels.get(k).is_some_and(|l| l == v),
                            None => c.labels.contains_key(filter.as_str()),
                        }
                    })
                })
                .map(|(id, c)| ContainerSummary {
                    id: Some(id.clone()),
                    labels: Some(c.labels.clone()),
                    created: Some(c.created),
                    ..ContainerSummary::default()
                })
                .collect())
        })
    }

    fn pids_limit_hits(&self, _id: &str) -> Option<u64> {
        self.state.borrow().pids_hits
    }

    fn cgroup(&self, _id: &str) -> Option<crate::cgroup::Cgroup> {
        self.state.borrow().cgroup.clone()
    }

    fn events(&self, _deployment: &str) -> BoxStream<'static, Result<ContainerEvent, DockerError>> {
        futures_util::stream::unfold(self.events.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((Ok(event), rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }

    fn ensure_network<'a>(&'a self, spec: &'a NetworkSpec) -> EngineFuture<'a, NetworkInfo> {
        Box::pin(async move {
            Ok(NetworkInfo {
                id: format!("fake-{}", spec.name),
                name: spec.name.clone(),
                bridge: spec.bridge.clone(),
                subnet: crate::network::nft::Ipv4Net::parse("172.31.0.0/16").unwrap(),
                gateway: std::net::Ipv4Addr::new(172, 31, 0, 1),
            })
        })
    }

    fn remove_network<'a>(&'a self, _name: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn network_addresses<'a>(
        &'a self,
        _name: &'a str,
    ) -> EngineFuture<'a, Vec<(String, std::net::Ipv4Addr)>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
