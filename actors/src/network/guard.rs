//! The NetworkGuard: owns the restricted network of one deployment. `RestrictedNet::install`
//! sets it up before the first session (the Docker bridge, the firewall table, the
//! resolver on the bridge gateway); the `NetworkGuard` actor then reads the firewall's
//! drops once a second and the resolver's refusals as they happen, counts them, and audits
//! each (session, destination) at most once a minute; `RestrictedNet::remove` takes it all
//! down at shutdown.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::allow::Port;
use super::nft::{Denied, DenyKind, Firewall, Ipv4Net, NftError, DENIED_WINDOW};
use super::resolver::{
    upstreams_from_resolv_conf, Grant, Grants, QueryOutcome, QueryResult, Resolver, ResolverConfig,
};
use super::RestrictedNetwork;
use crate::audit::AuditEvent;
use crate::docker::{DockerEngine, DockerError, NetworkInfo, NetworkSpec};
use crate::Shared;

/// How often the firewall's drop sets are read.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// A guard that has not finished a check of the firewall for this long (it failed, or an
/// `nft` call hangs) no longer vouches for it: the network counts as not enforced, so /ready
/// fails and new sessions are refused until it checks again.
const STALE_AFTER: Duration = Duration::from_secs(30);
/// Outcomes waiting for the guard; beyond this they are counted by the resolver only.
const OUTCOME_QUEUE: usize = 4096;
/// Refused names remembered for the once-a-minute audit.
const MAX_REMEMBERED_REFUSALS: usize = 16_384;
/// The most often the network's endpoints are looked up to map addresses to sessions.
const LEARN_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("the restricted network's resolver: {0}")]
    Resolver(String),
    #[error(
        "--network restricted: no DNS upstream (set --dns-upstream, or give /etc/resolv.conf a nameserver)"
    )]
    NoUpstream,
}

/// The Docker network's name of a deployment.
pub fn network_name(deployment: &str) -> String {
    format!("termcell-{deployment}")
}

/// The bridge interface of a deployment: `tc-` and 12 hex digits of a hash of its name
/// (interface names hold 15 characters; deployment names can be longer).
pub fn bridge_name(deployment: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(deployment.as_bytes());
    format!("tc-{}", &hex::encode(digest)[..12])
}

/// What the resolver granted, with when each grant runs out: to tell a wrong port from an
/// unknown address, and to put the grants back into a table deleted from outside. Bounded
/// like the kernel set: entries go a drop window after they run out.
#[derive(Default)]
struct GrantLedger(Mutex<HashMap<(Ipv4Addr, Port), Instant>>);

impl GrantLedger {
    /// Records a grant as nft applies it: the new lifetime replaces the old one.
    fn add(&self, addrs: &[Ipv4Addr], ports: &[Port], lifetime: Duration) {
        let until = Instant::now() + lifetime;
        let mut map = self.0.lock();
        for addr in addrs {
            for port in ports {
                map.insert((*addr, *port), until);
            }
        }
    }

    /// Granted on some port now or within the last drop window (a drop is read up to a
    /// second late).
    fn recently(&self, addr: Ipv4Addr) -> bool {
        let now = Instant::now();
        self.0
            .lock()
            .iter()
            .any(|((a, _), until)| *a == addr && *until + DENIED_WINDOW > now)
    }

    /// The least time left of the grants of every (address, port) pair, when each is
    /// granted with at least `at_least` left; `None` when one needs a new grant.
    fn covering(&self, addrs: &[Ipv4Addr], ports: &[Port], at_least: Duration) -> Option<Duration> {
        let now = Instant::now();
        let map = self.0.lock();
        let mut least: Option<Duration> = None;
        for addr in addrs {
            for port in ports {
                let left = map.get(&(*addr, *port))?.checked_duration_since(now)?;
                if left < at_least || left < Duration::from_secs(1) {
                    return None;
                }
                least = Some(least.map_or(left, |l| l.min(left)));
            }
        }
        least
    }

    /// The grants still running, with the time each has left.
    fn live(&self) -> Vec<(Ipv4Addr, Port, Duration)> {
        let now = Instant::now();
        self.0
            .lock()
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|((addr, port), until)| (*addr, *port, *until - now))
            .collect()
    }

    fn forget_old(&self) {
        let now = Instant::now();
        self.0
            .lock()
            .retain(|_, until| *until + DENIED_WINDOW > now);
    }
}

/// The resolver's sink: grants go to the firewall before the answer is sent; outcomes go
/// to the guard through a bounded queue that never blocks a lookup.
struct FirewallGrants {
    firewall: Arc<Firewall>,
    granted: Arc<GrantLedger>,
    outcomes: mpsc::Sender<QueryOutcome>,
}

impl Grants for FirewallGrants {
    fn grant(&self, grant: Grant) -> BoxFuture<'static, Result<Duration, String>> {
        // Most answers repeat the last one: while every pair still has at least half the
        // lifetime left, the grant stands and the answer's TTLs are cut to what is left,
        // with no `nft` call.
        if let Some(left) = self
            .granted
            .covering(&grant.addrs, &grant.ports, grant.lifetime / 2)
        {
            return Box::pin(std::future::ready(Ok(left)));
        }
        let firewall = self.firewall.clone();
        let granted = self.granted.clone();
        Box::pin(async move {
            firewall
                .grant(&grant.addrs, &grant.ports, grant.lifetime)
                .await
                .map_err(|e| e.to_string())?;
            granted.add(&grant.addrs, &grant.ports, grant.lifetime);
            Ok(grant.lifetime)
        })
    }

    fn outcome(&self, outcome: &QueryOutcome) {
        let _ = self.outcomes.try_send(outcome.clone());
    }
}

/// The restricted network of one deployment, installed.
pub struct RestrictedNet {
    pub info: NetworkInfo,
    pub firewall: Arc<Firewall>,
    pub config: RestrictedNetwork,
    pub resolver_addr: SocketAddr,
    resolver: Mutex<Option<Resolver>>,
    granted: Arc<GrantLedger>,
    outcomes: Mutex<Option<mpsc::Receiver<QueryOutcome>>>,
    /// The table is in the kernel as installed (false while it is gone and cannot be put
    /// back: /ready fails and new sessions are refused).
    enforced: AtomicBool,
    /// When the guard last finished a check of the firewall.
    last_check: Mutex<Instant>,
}

/// What a check of the table found.
#[derive(Debug, PartialEq, Eq)]
pub enum TableCheck {
    /// The table is there.
    Present,
    /// It had been deleted from outside and is back, with this many grants.
    Restored { grants: usize },
    /// It is gone and could not be put back, or could not be looked at.
    Failed(String),
}

impl RestrictedNet {
    /// Creates (or reuses) the bridge, installs the firewall table (replacing a leftover
    /// one) and starts the resolver on the gateway. Nothing is left half-installed: on an
    /// error the table is removed again.
    pub async fn install(
        engine: &DockerEngine,
        nft: PathBuf,
        deployment: &str,
        config: RestrictedNetwork,
    ) -> Result<RestrictedNet, NetworkError> {
        let mut config = config;
        if config.upstream.is_empty() {
            let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            config.upstream = upstreams_from_resolv_conf(&resolv);
        }
        if config.upstream.is_empty() {
            return Err(NetworkError::NoUpstream);
        }
        let spec = NetworkSpec {
            name: network_name(deployment),
            bridge: bridge_name(deployment),
            deployment: deployment.to_string(),
        };
        let info = engine.ensure_network(&spec).await?;
        let firewall = Arc::new(Firewall::new(
            nft,
            deployment,
            &info.bridge,
            info.gateway,
            info.subnet,
        ));
        firewall.install().await?;
        let granted = Arc::new(GrantLedger::default());
        let (tx, rx) = mpsc::channel(OUTCOME_QUEUE);
        let mut resolver_config = ResolverConfig::new(
            vec![SocketAddr::new(IpAddr::V4(info.gateway), 53)],
            config.upstream.clone(),
            Arc::new(config.allow.clone()),
        );
        resolver_config.ttl_min = config.ttl_min;
        resolver_config.ttl_max = config.ttl_max;
        resolver_config.never = vec![(info.subnet.addr, info.subnet.prefix)];
        let sink = Arc::new(FirewallGrants {
            firewall: firewall.clone(),
            granted: granted.clone(),
            outcomes: tx,
        });
        let resolver = match Resolver::start(resolver_config, sink).await {
            Ok(r) => r,
            Err(e) => {
                let _ = firewall.remove().await;
                return Err(NetworkError::Resolver(e.to_string()));
            }
        };
        let resolver_addr = resolver
            .local_addrs()
            .first()
            .copied()
            .unwrap_or(SocketAddr::new(IpAddr::V4(info.gateway), 53));
        Ok(RestrictedNet {
            info,
            firewall,
            config,
            resolver_addr,
            resolver: Mutex::new(Some(resolver)),
            granted,
            outcomes: Mutex::new(Some(rx)),
            enforced: AtomicBool::new(true),
            last_check: Mutex::new(Instant::now()),
        })
    }

    /// Whether the firewall table is in place as installed, as the guard found it within
    /// the last `STALE_AFTER`.
    pub fn enforced(&self) -> bool {
        self.enforced.load(Ordering::Relaxed) && !self.guard_stale()
    }

    /// The guard has not finished a check for `STALE_AFTER`.
    fn guard_stale(&self) -> bool {
        self.last_check.lock().elapsed() >= STALE_AFTER
    }

    /// The guard finished a check of the firewall.
    fn checked(&self) {
        *self.last_check.lock() = Instant::now();
    }

    /// Puts the table back, with the grants still running, when something outside termcell
    /// deleted it (`nft flush ruleset`, a reload of the host's firewall).
    pub async fn check_table(&self) -> TableCheck {
        let check = match self.firewall.exists().await {
            Ok(true) => TableCheck::Present,
            Ok(false) => {
                let grants = self.granted.live();
                match self.firewall.install_with(&grants).await {
                    Ok(()) => TableCheck::Restored {
                        grants: grants.len(),
                    },
                    Err(e) => TableCheck::Failed(e.to_string()),
                }
            }
            Err(e) => TableCheck::Failed(e.to_string()),
        };
        self.enforced
            .store(!matches!(check, TableCheck::Failed(_)), Ordering::Relaxed);
        check
    }

    /// Stops the resolver, deletes the table and removes the Docker network (after the
    /// sessions' containers are gone: a network with endpoints cannot be removed).
    pub async fn remove(&self, engine: &DockerEngine) -> Result<(), NetworkError> {
        let resolver = self.resolver.lock().take();
        if let Some(resolver) = resolver {
            resolver.shutdown().await;
        }
        self.firewall.remove().await?;
        engine.remove_network(&self.info.name).await?;
        Ok(())
    }

    /// The facts /ready and the start-up report show.
    pub fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": "restricted",
            "enforced": self.enforced(),
            "guard_stale": self.guard_stale(),
            "allow": self.config.allow.describe(),
            "network": self.info.name,
            "bridge": self.info.bridge,
            "subnet": self.info.subnet.to_string(),
            "gateway": self.info.gateway.to_string(),
            "resolver": self.resolver_addr.to_string(),
            "upstream": self.config.upstream.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "table": format!("inet {}", self.firewall.table),
            "ttl_min_seconds": self.config.ttl_min.as_secs(),
            "ttl_max_seconds": self.config.ttl_max.as_secs(),
        })
    }
}

/// Reads drops and refusals, counts and audits them.
pub struct NetworkGuard {
    net: Arc<RestrictedNet>,
    shared: Arc<Shared>,
    /// Drop-set entries already reported, with the packets counted so far.
    seen: HashMap<(Ipv4Addr, Ipv4Addr, String, u16, bool), u64>,
    /// Named counters as last read.
    counters: HashMap<String, u64>,
    /// Refused lookups audited in the last window, by (source, name).
    refusals: HashMap<(IpAddr, String), Instant>,
    /// Sessions by their container's address on the bridge.
    sessions: HashMap<Ipv4Addr, Uuid>,
    /// When the sessions were last looked up.
    learned_at: Option<Instant>,
    polling: bool,
    /// The table is gone and could not be put back (logged once per episode).
    table_failing: bool,
}

impl NetworkGuard {
    pub fn new(net: Arc<RestrictedNet>, shared: Arc<Shared>) -> NetworkGuard {
        NetworkGuard {
            net,
            shared,
            seen: HashMap::new(),
            counters: HashMap::new(),
            refusals: HashMap::new(),
            sessions: HashMap::new(),
            learned_at: None,
            polling: false,
            table_failing: false,
        }
    }

    fn deny(&self, kind: DenyKind, packets: u64) {
        self.shared
            .metrics
            .egress_denied
            .with_label_values(&[kind.as_str()])
            .inc_by(packets);
    }

    fn session_of(&self, ip: IpAddr) -> Option<Uuid> {
        match ip {
            IpAddr::V4(v4) => self.sessions.get(&v4).copied(),
            IpAddr::V6(_) => None,
        }
    }

    fn audit(&self, kind: DenyKind, source: IpAddr, event: AuditEvent) {
        let mut event = event
            .field("kind", kind.as_str())
            .field("source", source.to_string());
        if let Some(session) = self.session_of(source) {
            event = event.session(session);
        }
        self.shared.audit.record(event);
    }

    /// New drops from one read of the sets: counted by their packets, audited once per
    /// entry (one entry per source and destination per minute).
    fn drops(&mut self, entries: Vec<Denied>, counters: HashMap<String, u64>) {
        let subnet: Ipv4Net = self.net.info.subnet;
        let mut present = HashSet::new();
        for entry in entries {
            let key = entry.key();
            present.insert(key.clone());
            let kind = entry.kind(subnet, self.net.granted.recently(entry.destination));
            match self.seen.get(&key).copied() {
                Some(counted) => {
                    if entry.packets > counted {
                        self.deny(kind, entry.packets - counted);
                        self.seen.insert(key, entry.packets);
                    }
                }
                None => {
                    self.deny(kind, entry.packets.max(1));
                    self.seen.insert(key, entry.packets.max(1));
                    self.audit(
                        kind,
                        IpAddr::V4(entry.source),
                        AuditEvent::new("security.egress_denied")
                            .field("destination", entry.destination.to_string())
                            .field("port", entry.port)
                            .field("proto", &entry.proto),
                    );
                }
            }
        }
        self.seen.retain(|key, _| present.contains(key));
        for (name, kind) in [("ipv6", DenyKind::Ipv6), ("unrecorded", DenyKind::Address)] {
            let now = counters.get(name).copied().unwrap_or(0);
            let before = self.counters.get(name).copied().unwrap_or(0);
            if now > before {
                self.deny(kind, now - before);
                if kind == DenyKind::Ipv6 {
                    self.shared.audit.record(
                        AuditEvent::new("security.egress_denied")
                            .field("kind", kind.as_str())
                            .field("packets", now - before),
                    );
                }
            }
        }
        self.counters = counters;
    }

    fn lookup(&mut self, outcome: QueryOutcome) {
        self.shared
            .metrics
            .dns_queries
            .with_label_values(&[outcome.result.as_str()])
            .inc();
        if outcome.result == QueryResult::Allowed {
            self.shared
                .metrics
                .dns_lookup_seconds
                .observe(outcome.elapsed.as_secs_f64());
        }
        let refused = matches!(
            outcome.result,
            QueryResult::NotAllowed | QueryResult::Refused | QueryResult::RateLimited
        );
        if !refused {
            return;
        }
        self.deny(DenyKind::Name, 1);
        if !self.will_audit(&outcome) {
            return;
        }
        self.refusals
            .insert((outcome.source, outcome.name.clone()), Instant::now());
        self.audit(
            DenyKind::Name,
            outcome.source,
            AuditEvent::new("security.egress_denied")
                .client_text("destination", &outcome.name)
                .field("qtype", &outcome.qtype)
                .field("result", outcome.result.as_str()),
        );
    }

    /// Whether to look up the network's endpoints before reporting a drop or refusal from
    /// `ip`: its session is not known yet, or a line is about to be audited and the map may
    /// be stale (an ended session's address can be handed to a new one). At most one lookup
    /// per `LEARN_EVERY`.
    fn should_learn(&self, ip: IpAddr, about_to_audit: bool) -> bool {
        let unknown = match ip {
            IpAddr::V4(v4) => !self.sessions.contains_key(&v4),
            IpAddr::V6(_) => false,
        };
        (unknown || about_to_audit) && self.learned_at.is_none_or(|at| at.elapsed() >= LEARN_EVERY)
    }

    /// Whether a lookup's outcome will be audited (a refusal not audited for this source
    /// and name in the last window).
    fn will_audit(&self, outcome: &QueryOutcome) -> bool {
        let refused = matches!(
            outcome.result,
            QueryResult::NotAllowed | QueryResult::Refused | QueryResult::RateLimited
        );
        refused
            && self.refusals.len() < MAX_REMEMBERED_REFUSALS
            && self
                .refusals
                .get(&(outcome.source, outcome.name.clone()))
                .is_none_or(|at| at.elapsed() >= DENIED_WINDOW)
    }

    /// The sessions on the bridge by address, from the engine (container names carry the
    /// session id).
    fn learn_sessions(
        &mut self,
    ) -> impl std::future::Future<Output = Option<HashMap<Ipv4Addr, Uuid>>> {
        self.learned_at = Some(Instant::now());
        let engine = self.shared.engine.clone();
        let name = self.net.info.name.clone();
        let prefix = format!("termcell-{}-", self.shared.settings.deployment);
        async move {
            let lookup = engine.network_addresses(&name);
            let found = tokio::time::timeout(Duration::from_secs(2), lookup)
                .await
                .ok()?
                .ok()?;
            Some(
                found
                    .into_iter()
                    .filter_map(|(container, ip)| {
                        let id = container.trim_start_matches('/').strip_prefix(&prefix)?;
                        Some((ip, Uuid::parse_str(id).ok()?))
                    })
                    .collect(),
            )
        }
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.polling {
            return;
        }
        self.polling = true;
        let net = self.net.clone();
        ctx.spawn(
            async move {
                let denied = net.firewall.denied().await;
                // A read that fails may mean the table was deleted from outside: put it back.
                let table = match &denied {
                    Ok(_) => None,
                    Err(_) => Some(net.check_table().await),
                };
                let counters = net.firewall.counters().await;
                (denied, counters, table)
            }
            .into_actor(self)
            .then(|(denied, counters, table), act, _| {
                let learn = match &denied {
                    Ok(entries) => entries.iter().any(|d| {
                        act.should_learn(IpAddr::V4(d.source), !act.seen.contains_key(&d.key()))
                    }),
                    Err(_) => false,
                };
                let learning = learn.then(|| act.learn_sessions());
                async move {
                    let sessions = match learning {
                        Some(fut) => fut.await,
                        None => None,
                    };
                    (denied, counters, table, sessions)
                }
                .into_actor(act)
            })
            .map(|(denied, counters, table, sessions), act, _| {
                act.polling = false;
                // A check that fails is contained: the guard polls again, and once it has
                // not finished one for `STALE_AFTER` the network counts as not enforced.
                crate::fault::contain("network::poll", || {
                    fail::fail_point!("network::poll");
                    if let Some(sessions) = sessions {
                        act.sessions = sessions;
                    }
                    if let Some(table) = table {
                        act.table_checked(table);
                    }
                    match (denied, counters) {
                        (Ok(denied), Ok(counters)) => act.drops(denied, counters),
                        (Err(e), _) | (_, Err(e)) => {
                            if act.net.enforced() {
                                log::warn!(
                                    "restricted network: cannot read the firewall's drops: {e}"
                                )
                            }
                        }
                    }
                    let now = Instant::now();
                    act.refusals
                        .retain(|_, at| now.duration_since(*at) < DENIED_WINDOW);
                    act.net.granted.forget_old();
                    act.net.checked();
                });
            }),
        );
    }

    /// Reports a check of the table: a restore is counted, audited and logged; a table that
    /// cannot be put back is logged once until it is back.
    fn table_checked(&mut self, check: TableCheck) {
        let table = format!("inet {}", self.net.firewall.table);
        match check {
            TableCheck::Present => self.table_failing = false,
            TableCheck::Restored { grants } => {
                self.table_failing = false;
                self.shared.metrics.firewall_restores.inc();
                log::warn!(
                    "restricted network: firewall table {table} was deleted from outside termcell; restored with {grants} grant(s)"
                );
                self.shared.audit.record(
                    AuditEvent::new("security.firewall_restored")
                        .field("table", &table)
                        .field("grants", grants),
                );
            }
            TableCheck::Failed(e) => {
                if !self.table_failing {
                    log::error!(
                        "restricted network: firewall table {table} is gone and cannot be restored ({e}); new sessions are refused until it is back"
                    );
                }
                self.table_failing = true;
            }
        }
    }
}

impl Actor for NetworkGuard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(rx) = self.net.outcomes.lock().take() {
            ctx.add_stream(tokio_stream_of(rx));
        }
        ctx.run_interval(POLL_EVERY, |act, ctx| act.poll(ctx));
    }
}

fn tokio_stream_of(
    mut rx: mpsc::Receiver<QueryOutcome>,
) -> impl futures_util::Stream<Item = QueryOutcome> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl StreamHandler<QueryOutcome> for NetworkGuard {
    fn handle(&mut self, outcome: QueryOutcome, ctx: &mut Context<Self>) {
        // A failure loses the audit of one lookup, not the guard.
        crate::fault::contain("network::outcome", || {
            fail::fail_point!("network::outcome");
            self.outcome(outcome, ctx)
        });
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl NetworkGuard {
    fn outcome(&mut self, outcome: QueryOutcome, ctx: &mut Context<Self>) {
        if !self.should_learn(outcome.source, self.will_audit(&outcome)) {
            self.lookup(outcome);
            return;
        }
        // Learn whose address this is before auditing it. Outcomes behind it wait, so their
        // order holds.
        let learning = self.learn_sessions();
        ctx.wait(learning.into_actor(self).map(move |sessions, act, _| {
            if let Some(sessions) = sessions {
                act.sessions = sessions;
            }
            act.lookup(outcome);
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_and_differ_per_deployment() {
        let a = bridge_name("production.eu-west-1.example");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("tc-"));
        assert_ne!(a, bridge_name("production.eu-west-1.example2"));
        assert_eq!(network_name("prod"), "termcell-prod");
    }

    #[test]
    fn grants_are_remembered_for_a_drop_window() {
        let g = GrantLedger::default();
        let a = Ipv4Addr::new(198, 18, 0, 2);
        assert!(!g.recently(a));
        g.add(&[a], &[Port::tcp(443)], Duration::from_secs(1));
        assert!(g.recently(a));
        g.forget_old();
        assert!(g.recently(a));
        assert!(!g.recently(Ipv4Addr::new(198, 18, 0, 3)));
    }

    #[test]
    fn a_grant_with_half_its_lifetime_left_covers_a_repeated_answer() {
        let g = GrantLedger::default();
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3));
        let https = [Port::tcp(443)];
        assert_eq!(g.covering(&[a], &https, Duration::from_secs(30)), None);
        g.add(&[a], &https, Duration::from_secs(60));
        let left = g.covering(&[a], &https, Duration::from_secs(30)).unwrap();
        assert!(left > Duration::from_secs(55) && left <= Duration::from_secs(60));
        // Every pair must be covered: another address or port needs a grant.
        assert_eq!(g.covering(&[a, b], &https, Duration::from_secs(30)), None);
        assert_eq!(
            g.covering(&[a], &[Port::tcp(443), Port::udp(443)], Duration::ZERO),
            None
        );
        // Less than half left: a new grant.
        g.add(&[b], &https, Duration::from_secs(20));
        assert_eq!(g.covering(&[b], &https, Duration::from_secs(30)), None);
        // Under a second left is never reused.
        g.add(&[b], &https, Duration::from_millis(500));
        assert_eq!(g.covering(&[b], &https, Duration::ZERO), None);
    }

    #[test]
    fn the_ledger_lists_running_grants_with_their_time_left() {
        let g = GrantLedger::default();
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3));
        g.add(
            &[a],
            &[Port::tcp(443), Port::udp(123)],
            Duration::from_secs(60),
        );
        g.add(&[b], &[Port::tcp(443)], Duration::ZERO);
        // A new answer's lifetime replaces the old one, as nft's add-delete-add does.
        g.add(&[a], &[Port::udp(123)], Duration::from_secs(10));
        let mut live = g.live();
        live.sort();
        assert_eq!(live.len(), 2, "{live:?}");
        assert_eq!((live[0].0, live[0].1), (a, Port::tcp(443)));
        assert!(live[0].2 > Duration::from_secs(50));
        assert_eq!((live[1].0, live[1].1), (a, Port::udp(123)));
        assert!(live[1].2 <= Duration::from_secs(10));
        // A run-out grant still tells a wrong port from an unknown address for a window.
        assert!(g.recently(b));
    }
}
