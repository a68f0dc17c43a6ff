//! What every HTTP handler and WebSocket bridge shares: the config and the handles of the
//! singleton actors. Built once, before the HTTP server starts.

use std::sync::Arc;

use actix::Addr;
use termcell_actors::credentials::FingerprintKey;
use termcell_actors::docker::HostSecurity;
use termcell_actors::network::guard::RestrictedNet;
use termcell_actors::ratelimit::RateLimiter;
use termcell_actors::registry::Registry;
use termcell_actors::runtime::Runtime;
use termcell_actors::Shared;

use crate::config::Config;
use crate::connections::ConnectionGate;
use crate::routes::ReadyCache;

pub struct State {
    pub config: Config,
    pub shared: Arc<Shared>,
    pub registry: Addr<Registry>,
    pub limiter: Addr<RateLimiter>,
    pub fingerprint_key: FingerprintKey,
    /// What `docker info` said at start about the protections this host enforces.
    pub host_security: HostSecurity,
    /// The OCI runtime sessions run under, as checked at start.
    pub runtime: Runtime,
    /// Open client connections against their caps (counted at accept).
    pub connections: ConnectionGate,
    /// What /ready last found, refreshed at most once a second.
    pub ready: ReadyCache,
    /// The restricted network, when sessions run on one.
    pub network: Option<Arc<RestrictedNet>>,
}

pub type AppState = Arc<State>;
