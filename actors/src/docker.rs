//! The engine boundary and the Docker adapter. `Engine` is everything termcell asks of a
//! container engine and `DockerEngine` the handle every actor holds; `Bollard`, the one real
//! `Engine`, is the only code that talks to Docker. bollard serves every call except the
//! TTY stream, which is read raw from an HTTP upgrade on the engine's socket (bollard's
//! attach decoder misreads TTY bytes 0, 1, 2 as frame headers).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use bollard::models::HostConfig;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, EventMessage,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, ContainerArchiveInfoOptionsBuilder, CreateContainerOptionsBuilder,
    EventsOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    ResizeContainerTTYOptionsBuilder,
};
use bollard::Docker;
use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cgroup::{pids_limit_hits, Cgroup, CGROUP_ROOT};
use crate::profile::{labels, DETACH_KEYS};

#[cfg(test)]
pub(crate) mod fake;
mod network;
#[cfg(test)]
mod tests;

pub use network::{NetworkInfo, NetworkSpec};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("no Docker engine answers at {endpoint}: {source}. Start the engine (`dockerd`, or `systemctl start docker`) or point DOCKER_HOST at a running one")]
    Unreachable {
        endpoint: String,
        source: bollard::errors::Error,
    },
    #[error("unsupported DOCKER_HOST {0:?}: use unix:///path/to/docker.sock or tcp://host:port")]
    BadHost(String),
    #[error("Docker engine error: {0}")]
    Api(#[from] bollard::errors::Error),
    #[error("Docker socket I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("attach to container {id} failed: {detail}")]
    Attach { id: String, detail: String },
    #[error("attach to container {id} refused: the engine answered {status}: {message}")]
    AttachRefused {
        id: String,
        status: u16,
        message: String,
    },
    #[error("image build of {tag} failed: {detail}")]
    Build { tag: String, detail: String },
    #[error("network {name}: {detail}")]
    Network { name: String, detail: String },
    /// A failpoint's `return` (test builds only).
    #[error("injected fault at docker::{0}")]
    Injected(&'static str),
}

impl DockerError {
    /// The engine's HTTP status, when it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            DockerError::Api(bollard::errors::Error::DockerResponseServerError {
                status_code,
                ..
            }) => Some(*status_code),
            DockerError::AttachRefused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The engine did not answer at all (not running, restarting, socket gone): the
    /// request may succeed later, unlike one the engine refused.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DockerError::Unreachable { .. } | DockerError::Io(_) => true,
            DockerError::Api(e) => !matches!(
                e,
                bollard::errors::Error::DockerResponseServerError { .. }
                    | bollard::errors::Error::JsonDataError { .. }
                    | bollard::errors::Error::JsonSerdeError { .. }
            ),
            _ => false,
        }
    }
}

/// An engine call's failpoint: `return` fails the call, `panic` panics in it.
macro_rules! engine_failpoint {
    ($call:literal) => {
        fail::fail_point!(concat!("docker::", $call), |_| Err(DockerError::Injected(
            $call
        )))
    };
}

#[derive(Debug, Clone)]
enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A container's TTY, raw bytes both ways.
pub struct RawTty {
    pub reader: Box<dyn AsyncRead + Unpin + Send>,
    pub writer: Box<dyn AsyncWrite + Unpin + Send>,
    /// Output bytes that arrived with the upgrade response.
    pub initial: Bytes,
}

/// What `docker info` says about the protections this host can enforce.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HostSecurity {
    pub server_version: String,
    pub api_version: String,
    pub seccomp: bool,
    pub apparmor: bool,
    pub userns_remap: bool,
    pub cgroup_version: String,
    pub runc_version: String,
    /// The OCI runtimes the engine can run containers with, by name.
    pub runtimes: std::collections::BTreeMap<String, crate::runtime::RuntimeEntry>,
}

/// A container lifecycle event of one of our containers.
#[derive(Debug, Clone)]
pub struct ContainerEvent {
    pub container_id: String,
    pub action: String,
    pub session: Option<String>,
    pub exit_code: Option<i64>,
}

/// What every engine call returns: a boxed future, so that `Engine` is object safe.
pub type EngineFuture<'a, T> = BoxFuture<'a, Result<T, DockerError>>;

/// Everything termcell asks of a container engine. `Bollard` (below) is the real one;
/// a fake (`docker/fake.rs`) serves unit tests of actor logic, never integration tests.
pub trait Engine: Send + Sync + 'static {
    fn ping(&self) -> EngineFuture<'_, ()>;

    fn host_security(&self) -> EngineFuture<'_, HostSecurity>;

    fn image_exists<'a>(&'a self, image: &'a str) -> EngineFuture<'a, bool>;

    /// Builds an image from an in-memory tar context (Dockerfile at its root).
    fn build_image<'a>(&'a self, tag: &'a str, context_tar: Vec<u8>) -> EngineFuture<'a, ()>;

    /// Creates a container; returns its id.
    fn create<'a>(&'a self, name: &'a str, body: ContainerCreateBody) -> EngineFuture<'a, String>;

    /// Attaches to a created container's TTY, raw bytes both ways. Call before start, or
    /// the shell's first prompt is lost.
    fn attach_raw<'a>(&'a self, id: &'a str) -> EngineFuture<'a, RawTty>;

    fn start<'a>(&'a self, id: &'a str) -> EngineFuture<'a, ()>;

    /// Resizes the TTY of a started container.
    fn resize<'a>(&'a self, id: &'a str, cols: u16, rows: u16) -> EngineFuture<'a, ()>;

    /// Force-removes a container and its anonymous volumes; a container that is already
    /// gone counts as removed.
    fn remove<'a>(&'a self, id: &'a str) -> EngineFuture<'a, ()>;

    /// True when the (created, not necessarily started) container's filesystem has `path`.
    fn path_exists<'a>(&'a self, id: &'a str, path: &'a str) -> EngineFuture<'a, bool>;

    fn inspect<'a>(&'a self, id: &'a str) -> EngineFuture<'a, ContainerInspectResponse>;

    /// Our containers: those labelled managed-by termcell, narrowed by extra label filters
    /// (`key=value`).
    fn list_managed<'a>(
        &'a self,
        extra_labels: &'a [String],
    ) -> EngineFuture<'a, Vec<ContainerSummary>>;

    /// How often the container's processes hit its pids limit (fork bombs); `None` where
    /// the engine cannot tell.
    fn pids_limit_hits(&self, id: &str) -> Option<u64>;

    /// The started container's cgroup, for reading its usage; `None` where the engine
    /// runs it out of this host's sight.
    fn cgroup(&self, id: &str) -> Option<Cgroup>;

    /// Container events (die, oom, destroy, kill) of the given deployment's containers.
    fn events(&self, deployment: &str) -> BoxStream<'static, Result<ContainerEvent, DockerError>>;

    /// The bridge network of `spec`: the one with its name and our labels if it exists
    /// with the settings asked for, otherwise created (engines before 25 allow two networks
    /// of one name, so a lookup by name and labels comes first).
    fn ensure_network<'a>(&'a self, spec: &'a NetworkSpec) -> EngineFuture<'a, NetworkInfo>;

    /// Removes a network; one that is already gone counts as removed.
    fn remove_network<'a>(&'a self, name: &'a str) -> EngineFuture<'a, ()>;

    /// The IPv4 address of each container on a network, by container name.
    fn network_addresses<'a>(
        &'a self,
        name: &'a str,
    ) -> EngineFuture<'a, Vec<(String, std::net::Ipv4Addr)>>;
}

/// The handle every actor uses to reach the engine: cheap to clone, and it derefs to the
/// `Engine` behind it.
#[derive(Clone)]
pub struct DockerEngine(Arc<dyn Engine>);

impl std::ops::Deref for DockerEngine {
    type Target = dyn Engine;

    fn deref(&self) -> &dyn Engine {
        &*self.0
    }
}

impl DockerEngine {
    pub fn new(engine: Arc<dyn Engine>) -> DockerEngine {
        DockerEngine(engine)
    }

    /// Connects with the local defaults (DOCKER_HOST or the default socket) and negotiates
    /// the API version with the engine.
    pub async fn connect() -> Result<DockerEngine, DockerError> {
        Ok(DockerEngine::new(Arc::new(Bollard::connect().await?)))
    }

    /// Creates a container, runs it to completion and returns its exit code and its TTY
    /// output (at most `max_output` bytes kept); the container is removed in every case.
    pub async fn run_to_completion(
        &self,
        name: &str,
        body: ContainerCreateBody,
        timeout: Duration,
        max_output: usize,
    ) -> Result<(i64, Vec<u8>), DockerError> {
        let id = self.create(name, body).await?;
        let result = async {
            let tty = self.attach_raw(&id).await?;
            self.start(&id).await?;
            let mut output = tty.initial.to_vec();
            let mut reader = tty.reader.take(max_output as u64);
            tokio::time::timeout(timeout, reader.read_to_end(&mut output))
                .await
                .map_err(|_| DockerError::Attach {
                    id: id.clone(),
                    detail: format!("did not finish within {} s", timeout.as_secs()),
                })??;
            // The stream ends when the process exits; the exit code may lag a moment.
            for _ in 0..50 {
                if let Some(state) = self.inspect(&id).await?.state {
                    if state.running != Some(true) {
                        return Ok((state.exit_code.unwrap_or(-1), output));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok((-1, output))
        }
        .await;
        let _ = self.remove(&id).await;
        result
    }
}

/// The real engine: Docker through bollard, and the raw attach on its socket.
struct Bollard {
    docker: Docker,
    endpoint: Endpoint,
    api_version: String,
    /// Each started container's cgroup, found from its init process; dropped when the
    /// container is removed.
    cgroups: parking_lot::Mutex<HashMap<String, Cgroup>>,
}

impl Bollard {
    async fn connect() -> Result<Bollard, DockerError> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_default();
        let (docker, endpoint) = if host.is_empty() || host.starts_with("unix://") {
            let path = if host.is_empty() {
                "/var/run/docker.sock".to_string()
            } else {
                host.trim_start_matches("unix://").to_string()
            };
            let endpoint = Endpoint::Unix(PathBuf::from(&path));
            let docker = Docker::connect_with_unix(
                &format!("unix://{path}"),
                120,
                bollard::API_DEFAULT_VERSION,
            )
            .map_err(|source| DockerError::Unreachable {
                endpoint: endpoint.to_string(),
                source,
            })?;
            (docker, endpoint)
        } else if let Some(addr) = host.strip_prefix("tcp://") {
            let docker = Docker::connect_with_http(
                &format!("http://{addr}"),
                120,
                bollard::API_DEFAULT_VERSION,
            )?;
            (docker, Endpoint::Tcp(addr.to_string()))
        } else {
            return Err(DockerError::BadHost(host));
        };
        let docker =
            docker
                .negotiate_version()
                .await
                .map_err(|source| DockerError::Unreachable {
                    endpoint: endpoint.to_string(),
                    source,
                })?;
        let v = docker.client_version();
        let api_version = format!("{}.{}", v.major_version, v.minor_version);
        Ok(Bollard {
            docker,
            endpoint,
            api_version,
            cgroups: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// Finds and keeps the cgroup of a started container, from its init process
    /// (`State.Pid`). Only for an engine on this host; a cgroup that does not name the
    /// container (the engine sees other pids than we do) is not kept.
    async fn remember_cgroup(&self, id: &str) {
        if !matches!(self.endpoint, Endpoint::Unix(_)) {
            return;
        }
        let inspect = match self.docker.inspect_container(id, None).await {
            Ok(inspect) => inspect,
            Err(e) => {
                log::debug!("no cgroup for {id}: inspect failed: {e}");
                return;
            }
        };
        let full_id = inspect.id.unwrap_or_else(|| id.to_string());
        let Some(pid) = inspect.state.and_then(|s| s.pid).filter(|&p| p > 0) else {
            log::debug!("no cgroup for {id}: no init pid");
            return;
        };
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|text| Cgroup::from_proc(&text, Path::new(CGROUP_ROOT)))
            .filter(|cgroup| cgroup.names(&full_id));
        match cgroup {
            Some(cgroup) => {
                self.cgroups.lock().insert(id.to_string(), cgroup);
            }
            None => log::debug!("no cgroup for {id}: pid {pid} is not in its cgroup"),
        }
    }
}

impl Engine for Bollard {
    fn ping(&self) -> EngineFuture<'_, ()> {
        Box::pin(async move {
            self.docker.ping().await?;
            Ok(())
        })
    }

    fn host_security(&self) -> EngineFuture<'_, HostSecurity> {
        Box::pin(async move {
            let info = self.docker.info().await?;
            let opts = info.security_options.unwrap_or_default();
            let has = |name: &str| opts.iter().any(|o| o.contains(&format!("name={name}")));
            Ok(HostSecurity {
                server_version: info.server_version.unwrap_or_default(),
                api_version: self.api_version.clone(),
                seccomp: has("seccomp"),
                apparmor: has("apparmor"),
                userns_remap: has("userns"),
                cgroup_version: info
                    .cgroup_version
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                runc_version: info.runc_commit.and_then(|c| c.id).unwrap_or_default(),
                runtimes: info
                    .runtimes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, r)| {
                        let entry = crate::runtime::RuntimeEntry {
                            path: r.path.unwrap_or_default(),
                            args: r.runtime_args.unwrap_or_default(),
                        };
                        (name, entry)
                    })
                    .collect(),
            })
        })
    }

    fn image_exists<'a>(&'a self, image: &'a str) -> EngineFuture<'a, bool> {
        Box::pin(async move {
            match self.docker.inspect_image(image).await {
                Ok(_) => Ok(true),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn build_image<'a>(&'a self, tag: &'a str, context_tar: Vec<u8>) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            let options = BuildImageOptionsBuilder::default()
                .dockerfile("Dockerfile")
                .t(tag)
                .rm(true)
                .forcerm(true)
                .build();
            let mut stream = self.docker.build_image(
                options,
                None,
                Some(bollard::body_full(Bytes::from(context_tar))),
            );
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| DockerError::Build {
                    tag: tag.to_string(),
                    detail: e.to_string(),
                })?;
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    return Err(DockerError::Build {
                        tag: tag.to_string(),
                        detail,
                    });
                }
            }
            if self.image_exists(tag).await? {
                Ok(())
            } else {
                Err(DockerError::Build {
                    tag: tag.to_string(),
                    detail: "the engine reported no error but the image is missing".into(),
                })
            }
        })
    }

    fn create<'a>(&'a self, name: &'a str, body: ContainerCreateBody) -> EngineFuture<'a, String> {
        Box::pin(async move {
            engine_failpoint!("create");
            let options = CreateContainerOptionsBuilder::default().name(name).build();
            let created = self.docker.create_container(Some(options), body).await?;
            Ok(created.id)
        })
    }

    /// A raw HTTP upgrade on the engine's socket (bollard's attach decoder is unsafe for
    /// TTY bytes).
    fn attach_raw<'a>(&'a self, id: &'a str) -> EngineFuture<'a, RawTty> {
        Box::pin(async move {
            engine_failpoint!("attach");
            let mut stream: Box<dyn Io> = match &self.endpoint {
                Endpoint::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
                Endpoint::Tcp(addr) => Box::new(tokio::net::TcpStream::connect(addr).await?),
            };
            let request = format!(
                "POST /v{ver}/containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1&detachKeys={keys} HTTP/1.1\r\n\
                 Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n",
                ver = self.api_version,
                keys = percent_encode(DETACH_KEYS),
            );
            stream.write_all(request.as_bytes()).await?;
            let initial = tokio::time::timeout(Duration::from_secs(30), read_upgrade(&mut stream))
                .await
                .map_err(|_| DockerError::Attach {
                    id: id.to_string(),
                    detail: "no answer from the engine within 30 s".into(),
                })?
                .map_err(|e| e.into_docker(id))?;
            let (reader, writer) = tokio::io::split(stream);
            Ok(RawTty {
                reader: Box::new(reader),
                writer: Box::new(writer),
                initial,
            })
        })
    }

    fn start<'a>(&'a self, id: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            engine_failpoint!("start");
            self.docker.start_container(id, None).await?;
            self.remember_cgroup(id).await;
            Ok(())
        })
    }

    /// Retries briefly while the engine says the container is not running yet (a resize
    /// right after start can race it).
    fn resize<'a>(&'a self, id: &'a str, cols: u16, rows: u16) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            engine_failpoint!("resize");
            let options = ResizeContainerTTYOptionsBuilder::default()
                .w(cols as i32)
                .h(rows as i32)
                .build();
            let mut attempt = 0;
            loop {
                match self.docker.resize_container_tty(id, options.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(e) if attempt < 5 => {
                        log::debug!("resize of {id} failed (attempt {attempt}): {e}");
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        })
    }

    fn path_exists<'a>(&'a self, id: &'a str, path: &'a str) -> EngineFuture<'a, bool> {
        Box::pin(async move {
            let options = ContainerArchiveInfoOptionsBuilder::default()
                .path(path)
                .build();
            match self
                .docker
                .get_container_archive_info(id, Some(options))
                .await
            {
                Ok(_) => Ok(true),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            engine_failpoint!("remove");
            let options = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            self.cgroups.lock().remove(id);
            match self.docker.remove_container(id, Some(options)).await {
                Ok(()) => Ok(()),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(()),
                // 409: removal already in progress.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn inspect<'a>(&'a self, id: &'a str) -> EngineFuture<'a, ContainerInspectResponse> {
        Box::pin(async move {
            engine_failpoint!("inspect");
            Ok(self.docker.inspect_container(id, None).await?)
        })
    }

    fn list_managed<'a>(
        &'a self,
        extra_labels: &'a [String],
    ) -> EngineFuture<'a, Vec<ContainerSummary>> {
        Box::pin(async move {
            let mut label_filters = vec![format!(
                "{}={}",
                labels::MANAGED_BY,
                labels::MANAGED_BY_VALUE
            )];
            label_filters.extend(extra_labels.iter().cloned());
            let filters = HashMap::from([("label".to_string(), label_filters)]);
            let options = ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build();
            Ok(self.docker.list_containers(Some(options)).await?)
        })
    }

    /// Read from the container's cgroup, found at start; `None` where it was not found
    /// (the engine on another host, or a cgroup layout without a pids controller).
    fn pids_limit_hits(&self, id: &str) -> Option<u64> {
        let path = self.cgroups.lock().get(id)?.pids_events()?;
        pids_limit_hits(&std::fs::read_to_string(path).ok()?)
    }

    fn cgroup(&self, id: &str) -> Option<Cgroup> {
        self.cgroups.lock().get(id).cloned()
    }

    fn events(&self, deployment: &str) -> BoxStream<'static, Result<ContainerEvent, DockerError>> {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("{}={}", labels::DEPLOYMENT, deployment)],
            ),
            (
                "event".to_string(),
                vec![
                    "die".to_string(),
                    "oom".to_string(),
                    "destroy".to_string(),
                    "kill".to_string(),
                ],
            ),
        ]);
        let options = EventsOptionsBuilder::default().filters(&filters).build();
        self.docker
            .events(Some(options))
            .map(|item| {
                engine_failpoint!("events");
                item.map(to_event).map_err(DockerError::from)
            })
            .boxed()
    }

    fn ensure_network<'a>(&'a self, spec: &'a NetworkSpec) -> EngineFuture<'a, NetworkInfo> {
        Box::pin(network::ensure(&self.docker, spec))
    }

    fn remove_network<'a>(&'a self, name: &'a str) -> EngineFuture<'a, ()> {
        Box::pin(network::remove(&self.docker, name))
    }

    fn network_addresses<'a>(
        &'a self,
        name: &'a str,
    ) -> EngineFuture<'a, Vec<(String, std::net::Ipv4Addr)>> {
        Box::pin(network::addresses(&self.docker, name))
    }
}

fn to_event(msg: EventMessage) -> ContainerEvent {
    let actor = msg.actor.unwrap_or_default();
    let attrs = actor.attributes.unwrap_or_default();
    ContainerEvent {
        container_id: actor.id.unwrap_or_default(),
        action: msg.action.unwrap_or_default(),
        session: attrs.get(labels::SESSION).cloned(),
        exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The largest response head accepted on the attach upgrade.
const MAX_HEAD: usize = 16 * 1024;
/// How much of an error response's body is kept for its message.
const MAX_ERROR_BODY: usize = 4 * 1024;
/// How long the rest of an error response's body is waited for.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(1);
/// How many header lines a response head may have.
const MAX_HEADERS: usize = 64;

/// The parts of an upgrade response head that matter here.
#[derive(Debug, PartialEq, Eq)]
struct ResponseHead {
    status: u16,
    reason: String,
    content_length: Option<usize>,
    /// The head's length in bytes, blank line included.
    len: usize,
}

/// Why the attach handshake did not give a raw stream.
#[derive(Debug, thiserror::Error)]
enum UpgradeError {
    #[error("the engine closed the connection during the attach handshake")]
    Eof,
    #[error("the engine's response head exceeds {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("malformed response head from the engine: {0}")]
    Malformed(httparse::Error),
    #[error("the engine answered {status} {reason}: {message}")]
    Refused {
        status: u16,
        reason: String,
        message: String,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl UpgradeError {
    fn into_docker(self, id: &str) -> DockerError {
        match self {
            UpgradeError::Io(e) => DockerError::Io(e),
            UpgradeError::Refused {
                status, message, ..
            } => DockerError::AttachRefused {
                id: id.to_string(),
                status,
                message,
            },
            other => DockerError::Attach {
                id: id.to_string(),
                detail: other.to_string(),
            },
        }
    }
}

/// Parses an HTTP response head at the start of `buf`: `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<ResponseHead>, UpgradeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => return Err(UpgradeError::HeadTooLarge),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(UpgradeError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(UpgradeError::Malformed(e)),
    };
    let content_length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse().ok());
    Ok(Some(ResponseHead {
        status: response.code.unwrap_or(0),
        reason: response.reason.unwrap_or("").to_string(),
        content_length,
        len,
    }))
}

/// Reads the engine's answer to the attach upgrade. On `101`, returns the bytes that came
/// after the head (the first bytes of the raw stream); otherwise the engine's status and
/// the message of its body.
async fn read_upgrade<R: AsyncRead + Unpin>(r: &mut R) -> Result<Bytes, UpgradeError> {
    let mut buf = BytesMut::with_capacity(1024);
    let head = loop {
        if let Some(head) = parse_head(&buf)? {
            break head;
        }
        buf.reserve(4096);
        if r.read_buf(&mut buf).await? == 0 {
            return Err(UpgradeError::Eof);
        }
    };
    let rest = buf.split_off(head.len).freeze();
    if head.status == 101 {
        return Ok(rest);
    }
    // The body of a refusal: up to its Content-Length, else until the engine closes the
    // connection (Docker's refusals of a hijacked attach have no Content-Length); at most
    // MAX_ERROR_BODY bytes, and what arrives within ERROR_BODY_WAIT.
    let mut body = rest.to_vec();
    let want = head
        .content_length
        .unwrap_or(MAX_ERROR_BODY)
        .min(MAX_ERROR_BODY);
    if body.len() < want {
        let mut rest_of_body = r.take((want - body.len()) as u64);
        // A body cut short still gives what it has.
        let _ = tokio::time::timeout(ERROR_BODY_WAIT, rest_of_body.read_to_end(&mut body)).await;
    }
    body.truncate(MAX_ERROR_BODY);
    Err(UpgradeError::Refused {
        status: head.status,
        reason: head.reason,
        message: error_message(&body),
    })
}

/// The engine's error message: the `message` of its JSON body, or the body as text.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}
