//! Start-up and shutdown: connect to Docker, make sure the image is there, report the
//! host's protections, start the singleton actors and the listeners, and on SIGTERM or
//! SIGINT drain every session, remove every container and flush the audit log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, App, HttpServer};
use termcell_actors::audit::{Audit, AuditEvent};
use termcell_actors::credentials::FingerprintKey;
use termcell_actors::docker::{DockerEngine, DockerError, HostSecurity};
use termcell_actors::metrics::Metrics;
use termcell_actors::monitor::{seccomp, Monitor, MonitorActor};
use termcell_actors::network::guard::{NetworkError, NetworkGuard, RestrictedNet};
use termcell_actors::network::nft;
use termcell_actors::pool::{Pool, Shutdown as PoolShutdown};
use termcell_actors::profile::{labels, ContainerSpec, SecurityProfile};
use termcell_actors::ratelimit::RateLimiter;
use termcell_actors::recording::Recordings;
use termcell_actors::registry::{reap_previous_runs, Drain, Registry};
use termcell_actors::runtime::{self, Runtime, RuntimeError};
use termcell_actors::session::EndCause;
use termcell_actors::{SessionSettings, Shared};

use crate::config::Config;
use crate::connections::{self, ConnectionGate};
use crate::image::ImageError;
use crate::routes::ReadyCache;
use crate::state::{AppState, State};
use crate::{admin, image, protections, routes};

/// Why a command could not start or run; `main` prints it and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(
        "cannot open the audit log {path}: {source} (set --audit-log, or AUDIT_LOGGING=false)"
    )]
    Audit {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use the recording directory {path}: {source} (set --record-dir)")]
    Recording {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}{what}: {source}")]
    Listen {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("running the probe failed: {0}")]
    Probe(DockerError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Lock(#[from] crate::deployment_lock::LockError),
    #[error("--syscall-audit: cannot read the kernel log: {0}")]
    KernelLog(std::io::Error),
}

impl From<nft::NftError> for StartError {
    fn from(e: nft::NftError) -> StartError {
        StartError::Network(e.into())
    }
}

/// `--network restricted`: the bridge, the firewall table and the resolver for
/// `deployment`, and the profile pointed at them. `nft` is what the preflight found.
async fn install_network(
    engine: &DockerEngine,
    config: &Config,
    nft: Option<PathBuf>,
    deployment: &str,
    profile: &mut SecurityProfile,
) -> Result<Option<Arc<RestrictedNet>>, StartError> {
    let (Some(restricted), Some(nft)) = (&config.restricted, nft) else {
        return Ok(None);
    };
    let net = RestrictedNet::install(engine, nft, deployment, restricted.clone()).await?;
    profile.network_mode = net.info.name.clone();
    profile.dns = vec![net.info.gateway.to_string()];
    log::info!(
        "restricted network {} on {} ({}): egress only to {}; resolver {}; firewall table inet {}",
        net.info.name,
        net.info.bridge,
        net.info.subnet,
        net.config.allow.describe().join(", "),
        net.resolver_addr,
        net.firewall.table,
    );
    Ok(Some(Arc::new(net)))
}

/// Before anything else: restricted mode can be enforced here (root, `nft`, nf_tables),
/// or the server does not start.
async fn network_preflight(config: &Config) -> Result<Option<PathBuf>, StartError> {
    match config.restricted {
        Some(_) => Ok(Some(nft::preflight().await?)),
        None => Ok(None),
    }
}

/// The profile as this host can apply it: AppArmor only where it is enforced and loaded;
/// and the runtime it names, as the engine lists it for the network mode in use.
fn effective_profile(
    config: &Config,
    host: &HostSecurity,
) -> Result<(SecurityProfile, Runtime), StartError> {
    let mut profile = config.session.profile.clone();
    if let Some(name) = &profile.apparmor_profile {
        if !protections::apparmor_profile_usable(host, name) {
            profile.apparmor_profile = None;
        }
    }
    let runtime = runtime::check(&profile.runtime, &host.runtimes, &profile.network_mode)?;
    profile.user_space_kernel = runtime.user_space_kernel;
    Ok((profile, runtime))
}

pub async fn build_image(config: Config) -> Result<(), StartError> {
    let engine = DockerEngine::connect().await?;
    image::build_sandbox(
        &engine,
        &config.session.image,
        &config.busybox,
        config.sandbox_programs.as_deref(),
    )
    .await?;
    println!("built {}", config.session.image);
    Ok(())
}

/// `termcell verify`: the exit code of the checks, or why they could not run.
pub async fn verify(config: Config, probe: Option<PathBuf>) -> Result<i32, StartError> {
    let nft = network_preflight(&config).await?;
    let engine = DockerEngine::connect().await?;
    let host = engine.host_security().await?;
    let (mut profile, runtime) = effective_profile(&config, &host)?;
    println!("{}", runtime.describe());
    // A network of its own, so that a server of the same deployment keeps its rules.
    let deployment = format!("verify-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let network = install_network(&engine, &config, nft, &deployment, &mut profile).await?;
    for p in protections::report(&host, &profile, &runtime, network.as_deref()) {
        if !p.enforced {
            println!("NOTE {}: not enforced on this host: {}", p.name, p.detail);
        }
    }
    let result = crate::verify::run(&engine, config, probe, profile, network.as_deref()).await;
    if let Some(net) = network {
        if let Err(e) = net.remove(&engine).await {
            println!("NOTE restricted network of the check not removed: {e}");
        }
    }
    result
}

/// Starts one sandbox of the session profile on its network and removes it: gVisor's
/// networking does not start on every host (it refuses a network namespace it takes for
/// the root one), and a server whose every session would fail must not start.
async fn check_runtime_network(
    engine: &DockerEngine,
    settings: &SessionSettings,
) -> Result<(), StartError> {
    let name = format!("termcell-check-{}", uuid::Uuid::new_v4().simple());
    let spec = ContainerSpec {
        image: &settings.image,
        entrypoint: None,
        cmd: settings.cmd.clone(),
        env: Vec::new(),
        labels: HashMap::from([
            (
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            ),
            (labels::DEPLOYMENT.to_string(), settings.deployment.clone()),
            (labels::INSTANCE.to_string(), settings.instance.clone()),
            (labels::SESSION.to_string(), name.clone()),
        ]),
        cols: 80,
        rows: 24,
    };
    let id = engine
        .create(&name, settings.profile.create_body(&spec))
        .await?;
    let started = engine.start(&id).await;
    let _ = engine.remove(&id).await;
    started.map_err(|e| {
        StartError::Runtime(RuntimeError::NetworkFailed {
            name: settings.profile.runtime.clone(),
            network: settings.profile.network_mode.clone(),
            detail: e.to_string(),
        })
    })
}

/// The warm pool, on an arbiter of its own, when it is asked for and the image has the
/// entry program (a pool sandbox waits in it for the session's environment).
fn start_pool(shared: &Arc<Shared>) {
    let size = shared.settings.pool_size;
    if size == 0 {
        log::info!("warm pool off (--pool-size 0): every session starts its own sandbox");
    } else if shared.monitor.audits_calls() {
        // A pool sandbox would carry an audit id no session knows yet.
        log::warn!(
            "warm pool off: --syscall-audit tags each sandbox for its session when it is created"
        );
    } else if shared.settings.profile.entry.is_none() {
        log::warn!(
            "warm pool off: image {} has no {} (rebuild the default image, or add the program to yours)",
            shared.settings.image,
            image::programs::ENTRY.path
        );
    } else {
        let pool_shared = shared.clone();
        let pool =
            Pool::start_in_arbiter(&Arbiter::new().handle(), move |_| Pool::new(pool_shared));
        shared.pool.set(pool);
    }
}

/// Removes every container of this server instance (the last step of a shutdown).
async fn remove_instance_containers(
    engine: &DockerEngine,
    deployment: &str,
    instance: &str,
) -> usize {
    let filter = [
        format!("{}={deployment}", labels::DEPLOYMENT),
        format!("{}={instance}", labels::INSTANCE),
    ];
    let mut removed = 0;
    if let Ok(containers) = engine.list_managed(&filter).await {
        for id in containers.into_iter().filter_map(|c| c.id) {
            if engine.remove(&id).await.is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

pub async fn serve(config: Config) -> Result<(), StartError> {
    // Before anything touches the deployment's containers; held until the process exits.
    let lock = crate::deployment_lock::DeploymentLock::acquire(
        &config.lock_dir,
        &config.session.deployment,
    )?;
    log::info!("deployment lock {}", lock.path().display());
    let nft = network_preflight(&config).await?;
    let engine = DockerEngine::connect().await?;
    let host = engine.host_security().await?;
    let built = image::ensure_sandbox(
        &engine,
        &config.session.image,
        config.default_image,
        &config.busybox,
        config.sandbox_programs.as_deref(),
    )
    .await?;
    if built {
        log::info!("built the sandbox image {}", config.session.image);
    }
    let labels = HashMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (
            labels::DEPLOYMENT.to_string(),
            config.session.deployment.clone(),
        ),
        (
            labels::INSTANCE.to_string(),
            config.session.instance.clone(),
        ),
    ]);
    let sandbox = image::examine(
        &engine,
        &config.session.image,
        &config.session.profile,
        labels,
    )
    .await?;
    if config
        .session
        .cmd
        .as_ref()
        .and_then(|c| c.first())
        .map(String::as_str)
        == Some(image::programs::RSH.path)
    {
        image::require_restricted_shell(&config.session.image, &sandbox)?;
    }
    let mut settings = config.session.clone();
    let (profile, runtime) = effective_profile(&config, &host)?;
    settings.profile = profile;
    // With the entry program in the image, the session's environment (its credentials)
    // reaches the shell over the TTY instead of the container's config.
    if let (true, Some(shell)) = (sandbox.entry, sandbox.shell(settings.cmd.as_deref())) {
        settings.profile.entry = Some(image::programs::ENTRY.path.to_string());
        settings.cmd = Some(shell);
    }
    log::info!(
        "Docker {} (API {}), image {}, deployment {}",
        host.server_version,
        host.api_version,
        settings.image,
        settings.deployment
    );

    let audit = Audit::start(config.audit.clone()).map_err(|source| StartError::Audit {
        path: config.audit.path.clone(),
        source,
    })?;
    match reap_previous_runs(
        &engine,
        &settings.deployment,
        &settings.instance,
        config.reap_older_than,
    )
    .await
    {
        Ok(0) => log::info!("no container left by an earlier run of this deployment"),
        Ok(n) => log::warn!(
            "removed {n} container(s) left by an earlier run of deployment {}",
            settings.deployment
        ),
        Err(e) => log::warn!("could not sweep containers of earlier runs: {e}"),
    }
    let deployment = settings.deployment.clone();
    let network =
        install_network(&engine, &config, nft, &deployment, &mut settings.profile).await?;
    if runtime.user_space_kernel && settings.profile.network_mode != "none" {
        if let Err(e) = check_runtime_network(&engine, &settings).await {
            if let Some(net) = network {
                let _ = net.remove(&engine).await;
            }
            return Err(e);
        }
    }
    for p in protections::report(&host, &settings.profile, &runtime, network.as_deref()) {
        if p.enforced {
            log::info!("protection {}: enforced ({})", p.name, p.detail);
        } else {
            log::warn!("protection {}: NOT enforced: {}", p.name, p.detail);
        }
    }
    audit.record(
        AuditEvent::new("server.start")
            .field("instance", &settings.instance)
            .field("deployment", &settings.deployment)
            .field("image", &settings.image)
            .field("network", &settings.profile.network_mode)
            .field("runtime", &runtime.name),
    );

    let monitor = Monitor::new(!settings.profile.killed_syscalls.is_empty());
    let metrics = Metrics::new();
    let recordings = match &config.recording {
        Some(cfg) => {
            let recordings = Recordings::start(cfg.clone(), &metrics).map_err(|source| {
                StartError::Recording {
                    path: cfg.dir.clone(),
                    source,
                }
            })?;
            log::info!(
                "recording sessions to {} (input {})",
                cfg.dir.display(),
                if cfg.input { "too" } else { "not recorded" }
            );
            recordings
        }
        None => Recordings::disabled(&metrics),
    };
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        settings,
        audit: audit.clone(),
        metrics,
        pool: Default::default(),
        monitor,
        recordings,
    });
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
    let registry = Registry::new(
        shared.clone(),
        arbiters.iter().map(|a| a.handle()).collect(),
    )
    .start();
    if let Some(net) = &network {
        let (net, shared) = (net.clone(), shared.clone());
        NetworkGuard::start_in_arbiter(&Arbiter::new().handle(), move |_| {
            NetworkGuard::new(net, shared)
        });
    }
    // One sampler for every session's resource use, on its own thread.
    let (monitor_shared, monitor_config) = (shared.clone(), config.monitor.clone());
    let monitor = MonitorActor::start_in_arbiter(&Arbiter::new().handle(), move |_| {
        MonitorActor::new(monitor_shared, monitor_config)
    });
    if !shared.settings.profile.killed_syscalls.is_empty() && seccomp::host_visibility().is_ok() {
        seccomp::watch_kernel_log(monitor).map_err(StartError::KernelLog)?;
    }
    let limits = shared.settings.limits.clone();
    let limiter =
        RateLimiter::start_in_arbiter(&Arbiter::new().handle(), move |_| RateLimiter::new(limits));

    let total_connections =
        connections::total_cap(config.max_connections, shared.settings.max_sessions);
    log::info!(
        "connections: at most {} per client address, {total_connections} in total",
        config.max_connections_per_ip
    );
    let gate = ConnectionGate::new(
        config.max_connections_per_ip,
        total_connections,
        config.trusted_proxies.clone(),
    );
    let state: AppState = Arc::new(State {
        config: config.clone(),
        shared: shared.clone(),
        registry: registry.clone(),
        limiter,
        fingerprint_key: FingerprintKey::random(),
        host_security: host,
        runtime: runtime.clone(),
        connections: gate.clone(),
        ready: ReadyCache::default(),
        network: network.clone(),
    });

    // The page's files are compressed once, before the first user asks for them.
    crate::web_assets::prepare();
    let public_state = state.clone();
    let user_timeout = config.client_timeout;
    let gate_shared = shared.clone();
    let public = match HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(public_state.clone()))
            .configure(routes::configure)
    })
    // A client that stops reading stalls its WebSocket actor for good (actix-web stops
    // polling it); the kernel then drops the connection once sent data has gone
    // unacknowledged, or the window has stayed shut, this long.
    .on_connect(move |conn, data| {
        let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        let sock = socket2::SockRef::from(tcp);
        let _ = sock.set_tcp_user_timeout(Some(user_timeout));
        let Ok(peer) = tcp.peer_addr() else {
            return;
        };
        match gate.admit(peer.ip()) {
            // Lives as long as the connection.
            Ok(guard) => {
                data.insert(guard);
            }
            Err(over) => {
                // Answered and shut at once: the dispatcher sees the end of the stream and
                // drops the socket, so the descriptor is held for microseconds.
                let _ = sock.send(&over.response());
                let _ = sock.shutdown(std::net::Shutdown::Both);
                gate_shared.metrics.reject(over.kind());
                gate_shared
                    .audit
                    .rejected(AuditEvent::rejection(over.kind()).client(peer.ip()));
            }
        }
    })
    // Idle keep-alive sockets and slow request heads are closed quickly; WebSockets are
    // not idle (heartbeats).
    .keep_alive(Duration::from_secs(5))
    // No linger once a response ends: after a WebSocket close handshake the connection is
    // shut at once (the client waits for the server to close first, RFC 6455 7.1.1).
    // actix-http's linger reads until the client closes or the timeout passes, and its
    // deadline comes from a clock updated every 500 ms: 1 s lingers 0.5-1 s, and a timeout
    // under 500 ms is often already past when armed, so its timer never wakes the
    // connection again and it stays open until the client gives up.
    .client_disconnect_timeout(Duration::ZERO)
    .client_request_timeout(Duration::from_secs(5))
    .workers(threads)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(config.listen)
    {
        Ok(server) => server,
        Err(source) => {
            return Err(StartError::Listen {
                addr: config.listen,
                what: "",
                source,
            })
        }
    };
    for addr in public.addrs() {
        eprintln!("termcell listening on http://{addr}");
    }
    let public = public.run();
    let public_handle = public.handle();
    actix_rt::spawn(public);

    let mut admin_handle = None;
    match (config.admin_listen, &config.admin_token) {
        (Some(listen), Some(_)) => {
            let admin_state = state.clone();
            match HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(admin_state.clone()))
                    .configure(admin::configure)
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .bind(listen)
            {
                Ok(server) => {
                    for addr in server.addrs() {
                        eprintln!("termcell admin API listening on http://{addr}");
                    }
                    let server = server.run();
                    admin_handle = Some(server.handle());
                    actix_rt::spawn(server);
                }
                Err(source) => {
                    return Err(StartError::Listen {
                        addr: listen,
                        what: " (admin)",
                        source,
                    })
                }
            }
        }
        (Some(_), None) => log::warn!(
            "admin API disabled: set TERMCELL_ADMIN_TOKEN or --admin-token-file to enable it"
        ),
        (None, _) => {}
    }
    // Only once the listeners are bound: a start that fails before leaves no sandbox.
    start_pool(&shared);

    wait_for_signal().await;
    log::info!("shutting down: draining sessions");
    let deadline = config.shutdown_timeout;
    let shutdown = async {
        public_handle.pause().await;
        if let Some(h) = &admin_handle {
            h.pause().await;
        }
        let live = registry
            .send(Drain {
                warn: Duration::ZERO,
                cause: EndCause::Shutdown,
                deadline,
            })
            .await
            .unwrap_or(0);
        // Give the bridges a moment to flush their close frames; the pool stops making
        // sandboxes meanwhile (none may appear after the sweep below).
        let pool = shared.pool.addr().map(|pool| pool.send(PoolShutdown));
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(pool) = pool {
            let _ = pool.await;
        }
        let removed = remove_instance_containers(
            &engine,
            &shared.settings.deployment,
            &shared.settings.instance,
        )
        .await;
        if let Some(net) = &network {
            match net.remove(&engine).await {
                Ok(()) => log::info!("restricted network {} and its rules removed", net.info.name),
                Err(e) => log::warn!(
                    "restricted network {} not fully removed: {e}",
                    net.info.name
                ),
            }
        }
        audit.record(
            AuditEvent::new("server.stop")
                .field("sessions_ended", live)
                .field("containers_removed", removed),
        );
        audit.flush().await;
        // The recordings of the sessions just ended are written before the process exits.
        let recordings = shared.recordings.clone();
        let _ = tokio::task::spawn_blocking(move || recordings.flush(Duration::from_secs(5))).await;
    };
    if tokio::time::timeout(deadline + Duration::from_secs(10), shutdown)
        .await
        .is_err()
    {
        log::error!("shutdown did not finish in time; exiting anyway");
    }
    public_handle.stop(false).await;
    if let Some(h) = admin_handle {
        h.stop(false).await;
    }
    for arbiter in arbiters {
        arbiter.stop();
    }
    log::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
