//! The sandboxes' DNS server. It answers A queries only for names the egress allowlist
//! allows, forwards those to the real upstream resolver, and hands every address it is about
//! to answer to the firewall (the [`Grants`] sink) before the client sees it: a container can
//! only connect to what this server told it, and only after the firewall knows.
//!
//! AAAA for an allowed name is answered empty (IPv6 is off on the restricted network, so
//! clients fall back to A at once); every other query type is refused; names outside the
//! allowlist are NXDOMAIN and never leave the host. Addresses that would let a sandbox reach
//! the host, its network or the cloud metadata service (DNS rebinding) are never granted.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hickory_proto::op::{Edns, Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::xfer::Protocol;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig as UpstreamConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use parking_lot::Mutex;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use super::allow::{normalize, EgressAllow, Port};

#[cfg(test)]
mod tests;

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the firewall may take to install a grant before the query fails; a hung sink
/// must not pin in-flight slots forever.
const GRANT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest UDP payload this server advertises over EDNS (the DNS flag day 2020 value,
/// which avoids IP fragmentation).
const EDNS_MAX_PAYLOAD: u16 = 1232;

/// How often the per-source rate limiter forgets sources that have gone quiet, which keeps its
/// memory bounded by the number of recently active sources.
const LIMITER_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Ranges never granted, whatever the upstream answers: loopback, unspecified/"this network",
/// RFC 1918, CGNAT, link-local (the cloud metadata service), multicast, reserved and broadcast.
/// 198.18.0.0/15 is deliberately absent: it is ordinary, routable-for-our-purposes space.
const NEVER_GRANTED: [(Ipv4Addr, u8); 9] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// What the resolver listens on, asks, allows and how hard it may be pushed.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// Addresses to serve on, UDP and TCP each (port 0 picks a free port).
    pub listen: Vec<SocketAddr>,
    /// The upstream resolvers allowed queries are forwarded to.
    pub upstream: Vec<SocketAddr>,
    /// Which names may be resolved, and on which ports their addresses are granted.
    pub allow: Arc<EgressAllow>,
    /// The shortest lifetime a grant gets, however short the record's TTL.
    pub ttl_min: Duration,
    /// The longest TTL sent to a client.
    pub ttl_max: Duration,
    /// Extra ranges never granted (the bridge subnet), as (network, prefix length).
    pub never: Vec<(Ipv4Addr, u8)>,
    /// Sustained queries per second one source may send.
    pub per_source_per_sec: u32,
    /// Queries one source may send in a burst.
    pub per_source_burst: u32,
    /// Queries one source may have unanswered at once.
    pub in_flight_per_source: usize,
    /// Queries all sources together may have unanswered at once.
    pub in_flight_total: usize,
    /// How long the upstream has to answer before the client gets SERVFAIL.
    pub upstream_timeout: Duration,
}

impl ResolverConfig {
    /// A configuration with the default TTL clamp (30 s grant minimum, 300 s TTL maximum),
    /// abuse bounds (20/s, burst 40, 8 in flight per source, 256 overall) and a 2 s upstream
    /// timeout.
    pub fn new(
        listen: Vec<SocketAddr>,
        upstream: Vec<SocketAddr>,
        allow: Arc<EgressAllow>,
    ) -> Self {
        ResolverConfig {
            listen,
            upstream,
            allow,
            ttl_min: Duration::from_secs(30),
            ttl_max: Duration::from_secs(300),
            never: Vec::new(),
            per_source_per_sec: 20,
            per_source_burst: 40,
            in_flight_per_source: 8,
            in_flight_total: 256,
            upstream_timeout: Duration::from_secs(2),
        }
    }
}

/// Addresses the firewall is asked to open for one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The container that asked.
    pub source: IpAddr,
    /// The name it asked for (normalized).
    pub name: String,
    /// The addresses it is about to be told.
    pub addrs: Vec<Ipv4Addr>,
    /// The ports the allowlist gives that name.
    pub ports: Vec<Port>,
    /// How long the addresses stay open.
    pub lifetime: Duration,
}

/// How one query ended, for metrics and audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryResult {
    /// An allowed name, answered (possibly empty).
    Allowed,
    /// A name outside the allowlist: NXDOMAIN.
    NotAllowed,
    /// A query type (or class, or opcode) this server does not answer: REFUSED.
    Refused,
    /// The source exceeded its rate or in-flight bound: REFUSED.
    RateLimited,
    /// The upstream or the grant sink failed: SERVFAIL.
    Failed,
    /// Not a single well-formed question: FORMERR.
    Malformed,
}

impl QueryResult {
    /// The label value this outcome has in metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            QueryResult::Allowed => "allowed",
            QueryResult::NotAllowed => "not_allowed",
            QueryResult::Refused => "refused",
            QueryResult::RateLimited => "rate_limited",
            QueryResult::Failed => "failed",
            QueryResult::Malformed => "malformed",
        }
    }
}

/// One query's outcome, reported to [`Grants::outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOutcome {
    pub source: IpAddr,
    pub name: String,
    pub qtype: String,
    pub result: QueryResult,
    /// From the query's arrival to its answer (upstream and firewall included).
    pub elapsed: std::time::Duration,
}

/// Where answers become firewall rules, and where outcomes are counted.
pub trait Grants: Send + Sync + 'static {
    /// Allows `addrs` on `ports` for at least `lifetime`, or for what is left of an earlier
    /// grant that still covers them, and says for how long they are open: the answer's TTLs
    /// are cut to that, so no client caches an address past its grant. The answer is sent
    /// only after this resolves. Err → SERVFAIL.
    fn grant(&self, grant: Grant) -> BoxFuture<'static, Result<Duration, String>>;
    /// Every query's outcome, for metrics and audit (called once per query, never blocks).
    fn outcome(&self, outcome: &QueryOutcome);
}

/// Why the resolver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error("no upstream resolver configured")]
    NoUpstream,
    #[error("no address to listen on")]
    NoListen,
}

/// The running DNS server.
pub struct Resolver {
    server: ServerFuture<Handler>,
    local_addrs: Vec<SocketAddr>,
    sweeper: JoinHandle<()>,
}

impl Resolver {
    /// Binds UDP and TCP on every listen address and starts answering, on the caller's tokio
    /// runtime.
    pub async fn start(
        config: ResolverConfig,
        grants: Arc<dyn Grants>,
    ) -> Result<Resolver, ResolverError> {
        if config.upstream.is_empty() {
            return Err(ResolverError::NoUpstream);
        }
        if config.listen.is_empty() {
            return Err(ResolverError::NoListen);
        }
        let shared = Arc::new(Shared::new(&config, grants));
        let mut server = ServerFuture::new(Handler {
            shared: shared.clone(),
        });
        let mut local_addrs = Vec::with_capacity(config.listen.len());
        for addr in &config.listen {
            let (udp, tcp) = bind_pair(*addr).await?;
            local_addrs.push(udp.local_addr().map_err(|source| ResolverError::Bind {
                addr: *addr,
                proto: "udp",
                source,
            })?);
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE_TIMEOUT);
        }
        let sweeper = tokio::spawn(sweep_limiter(shared));
        Ok(Resolver {
            server,
            local_addrs,
            sweeper,
        })
    }

    /// The bound UDP addresses; TCP listens on the same ports.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local_addrs.clone()
    }

    /// Stops listening and waits for the listeners to finish.
    pub async fn shutdown(mut self) {
        self.sweeper.abort();
        if let Err(e) = self.server.shutdown_gracefully().await {
            log::warn!("dns resolver shutdown: {e}");
        }
    }
}

/// The `nameserver` lines of a resolv.conf, as port-53 addresses: the default upstream.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            let addr = words.next()?;
            let addr = addr.split('%').next()?;
            addr.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// Binds UDP on `addr`, then TCP on the port UDP got.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), ResolverError> {
    let bind_err = |proto| {
        move |source| ResolverError::Bind {
            addr,
            proto,
            source,
        }
    };
    // With port 0 the UDP port is the kernel's choice, and the same TCP port may already be
    // taken (by any outgoing connection's ephemeral port): pick again a few times.
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut attempt = 1;
    loop {
        let udp = UdpSocket::bind(addr).await.map_err(bind_err("udp"))?;
        let bound = udp.local_addr().map_err(bind_err("udp"))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < attempts => {
                attempt += 1;
            }
            Err(e) => return Err(bind_err("tcp")(e)),
        }
    }
}

/// Periodically forgets rate-limit state of sources that have gone quiet.
async fn sweep_limiter(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(LIMITER_SWEEP_EVERY);
    loop {
        tick.tick().await;
        shared.limiter.retain_recent();
        shared.limiter.shrink_to_fit();
    }
}

/// Whether `addr` lies in `net`/`prefix`.
fn in_cidr(addr: Ipv4Addr, (net, prefix): (Ipv4Addr, u8)) -> bool {
    let prefix = u32::from(prefix.min(32));
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(addr) & mask == u32::from(net) & mask
}

/// Whether `addr` must never be granted: a built-in range or one of `extra`.
fn never_granted(addr: Ipv4Addr, extra: &[(Ipv4Addr, u8)]) -> bool {
    NEVER_GRANTED
        .iter()
        .chain(extra)
        .any(|cidr| in_cidr(addr, *cidr))
}

/// The hickory resolver that forwards to `upstream`: no cache (a changed record is seen as soon
/// as the upstream serves it), no search list, no hosts file, CNAMEs kept in the answer, UDP
/// with TCP on truncation.
fn upstream_resolver(upstream: &[SocketAddr], timeout: Duration) -> TokioResolver {
    let mut config = UpstreamConfig::new();
    for addr in upstream {
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            let mut server = NameServerConfig::new(*addr, protocol);
            server.trust_negative_responses = true;
            config.add_name_server(server);
        }
    }
    let mut builder =
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
    let opts = builder.options_mut();
    opts.cache_size = 0;
    opts.ndots = 0;
    opts.preserve_intermediates = true;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.timeout = timeout;
    opts.attempts = 1;
    builder.build()
}

/// What every query handler shares.
struct Shared {
    allow: Arc<EgressAllow>,
    upstream: TokioResolver,
    grants: Arc<dyn Grants>,
    ttl_min: Duration,
    ttl_max: Duration,
    never: Vec<(Ipv4Addr, u8)>,
    upstream_timeout: Duration,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    in_flight: Mutex<InFlight>,
    in_flight_per_source: usize,
    in_flight_total: usize,
}

/// Unanswered queries, per source and in total.
#[derive(Default)]
struct InFlight {
    per_source: HashMap<IpAddr, usize>,
    total: usize,
}

impl Shared {
    fn new(config: &ResolverConfig, grants: Arc<dyn Grants>) -> Self {
        let per_sec = NonZeroU32::new(config.per_source_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.per_source_burst).unwrap_or(per_sec);
        Shared {
            allow: config.allow.clone(),
            upstream: upstream_resolver(&config.upstream, config.upstream_timeout),
            grants,
            ttl_min: config.ttl_min,
            ttl_max: config.ttl_max,
            never: config.never.clone(),
            upstream_timeout: config.upstream_timeout,
            limiter: RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
            in_flight: Mutex::new(InFlight::default()),
            in_flight_per_source: config.in_flight_per_source,
            in_flight_total: config.in_flight_total,
        }
    }

    /// Takes one in-flight slot for `source`, or None when it or everyone is at the cap.
    fn enter(self: &Arc<Self>, source: IpAddr) -> Option<InFlightSlot> {
        let mut in_flight = self.in_flight.lock();
        let mine = in_flight.per_source.get(&source).copied().unwrap_or(0);
        if mine >= self.in_flight_per_source || in_flight.total >= self.in_flight_total {
            return None;
        }
        in_flight.per_source.insert(source, mine + 1);
        in_flight.total += 1;
        Some(InFlightSlot {
            shared: self.clone(),
            source,
        })
    }

    fn leave(&self, source: IpAddr) {
        let mut in_flight = self.in_flight.lock();
        in_flight.total = in_flight.total.saturating_sub(1);
        if let Some(count) = in_flight.per_source.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                in_flight.per_source.remove(&source);
            }
        }
    }
}

/// One query's claim on the in-flight caps, released when the query is answered.
struct InFlightSlot {
    shared: Arc<Shared>,
    source: IpAddr,
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        self.shared.leave(self.source);
    }
}

/// What a query is answered with.
struct Reply {
    code: ResponseCode,
    answers: Vec<Record>,
    result: QueryResult,
}

impl Reply {
    fn empty(code: ResponseCode, result: QueryResult) -> Self {
        Reply {
            code,
            answers: Vec::new(),
            result,
        }
    }
}

/// The hickory request handler: every query is its own task (hickory spawns one per UDP
/// message), so a slow upstream delays only the queries waiting on it.
struct Handler {
    shared: Arc<Shared>,
}

impl RequestHandler for Handler {
    fn handle_request<'life0, 'life1, 'async_trait, R>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.answer(request, response_handle))
    }
}

impl Handler {
    /// Decides, reports and sends the answer to one request.
    async fn answer<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let source = request.src().ip();
        let (name, qtype) = match request.request_info() {
            Ok(info) => (
                normalize(&info.query.name().to_string()),
                info.query.query_type().to_string(),
            ),
            Err(_) => (String::new(), String::new()),
        };
        let arrived = std::time::Instant::now();
        let reply = self.bounded(request, source, &name).await;
        self.shared.grants.outcome(&QueryOutcome {
            source,
            name,
            qtype,
            result: reply.result,
            elapsed: arrived.elapsed(),
        });
        send(request, &mut response, reply).await
    }

    /// Applies the abuse bounds (rate, then in-flight caps) before anything else, so even
    /// malformed floods are limited; the slot is held until the reply is decided.
    async fn bounded(&self, request: &Request, source: IpAddr, name: &str) -> Reply {
        if self.shared.limiter.check_key(&source).is_err() {
            return Reply::empty(ResponseCode::Refused, QueryResult::RateLimited);
        }
        let Some(_slot) = self.shared.enter(source) else {
            return Reply::empty(ResponseCode::Refused, QueryResult::RateLimited);
        };
        self.decide(request, source, name).await
    }

    /// The policy: one IN question of type A or AAAA, for an allowed name. Other types are
    /// refused whatever the name (reverse lookups included); names outside the allowlist are
    /// NXDOMAIN; AAAA is answered empty; A is forwarded.
    async fn decide(&self, request: &Request, source: IpAddr, name: &str) -> Reply {
        let Ok(info) = request.request_info() else {
            return Reply::empty(ResponseCode::FormErr, QueryResult::Malformed);
        };
        if info.header.op_code() != OpCode::Query
            || info.header.message_type() != MessageType::Query
        {
            return Reply::empty(ResponseCode::Refused, QueryResult::Refused);
        }
        let qtype = info.query.query_type();
        if info.query.query_class() != DNSClass::IN
            || !matches!(qtype, RecordType::A | RecordType::AAAA)
        {
            return Reply::empty(ResponseCode::Refused, QueryResult::Refused);
        }
        let ports = self.shared.allow.ports_for(name);
        if ports.is_empty() {
            return Reply::empty(ResponseCode::NXDomain, QueryResult::NotAllowed);
        }
        if qtype == RecordType::AAAA {
            return Reply::empty(ResponseCode::NoError, QueryResult::Allowed);
        }
        let qname = Name::from(info.query.name().clone());
        self.forward(source, name, qname, ports).await
    }

    /// Asks the upstream for `qname`'s A records, strips what must never be granted, clamps
    /// the TTLs, and has the firewall open the addresses before the reply goes out.
    async fn forward(&self, source: IpAddr, name: &str, qname: Name, ports: Vec<Port>) -> Reply {
        let shared = &self.shared;
        let lookup = tokio::time::timeout(
            shared.upstream_timeout,
            shared.upstream.lookup(qname, RecordType::A),
        )
        .await;
        let records = match lookup {
            Ok(Ok(lookup)) => lookup.records().to_vec(),
            Ok(Err(e)) => return upstream_error(name, &e),
            Err(_) => {
                log::warn!("dns: upstream timed out for {name}");
                return Reply::empty(ResponseCode::ServFail, QueryResult::Failed);
            }
        };
        let (answers, addrs) = self.filter_answers(name, records);
        if addrs.is_empty() {
            return Reply {
                code: ResponseCode::NoError,
                answers,
                result: QueryResult::Allowed,
            };
        }
        let grant = Grant {
            source,
            name: name.to_string(),
            addrs,
            ports,
            lifetime: self.grant_lifetime(&answers),
        };
        let mut answers = answers;
        match tokio::time::timeout(GRANT_TIMEOUT, shared.grants.grant(grant)).await {
            Ok(Ok(open_for)) => {
                let open_for = u32::try_from(open_for.as_secs()).unwrap_or(u32::MAX);
                for record in &mut answers {
                    record.set_ttl(record.ttl().min(open_for));
                }
            }
            Ok(Err(e)) => {
                log::warn!("dns: grant for {name} failed: {e}");
                return Reply::empty(ResponseCode::ServFail, QueryResult::Failed);
            }
            Err(_) => {
                log::warn!("dns: grant for {name} timed out");
                return Reply::empty(ResponseCode::ServFail, QueryResult::Failed);
            }
        }
        Reply {
            code: ResponseCode::NoError,
            answers,
            result: QueryResult::Allowed,
        }
    }

    /// Keeps the CNAME chain and the grantable A records, with TTLs clamped to `ttl_max`;
    /// returns them and the addresses to grant.
    fn filter_answers(&self, name: &str, records: Vec<Record>) -> (Vec<Record>, Vec<Ipv4Addr>) {
        let ttl_max = u32::try_from(self.shared.ttl_max.as_secs()).unwrap_or(u32::MAX);
        let mut answers = Vec::with_capacity(records.len());
        let mut addrs = Vec::new();
        for mut record in records {
            match record.data() {
                RData::A(a) if never_granted(a.0, &self.shared.never) => {
                    log::warn!(
                        "dns: {name} resolved to {}, which is never granted; dropped",
                        a.0
                    );
                    continue;
                }
                RData::A(a) => addrs.push(a.0),
                RData::CNAME(_) => {}
                _ => continue,
            }
            record.set_ttl(record.ttl().min(ttl_max));
            answers.push(record);
        }
        if addrs.is_empty() && answers.iter().any(|r| r.record_type() == RecordType::CNAME) {
            log::info!("dns: {name} left no grantable address");
        }
        (answers, addrs)
    }

    /// How long the answered addresses stay open: the shortest answer TTL, at least `ttl_min`.
    fn grant_lifetime(&self, answers: &[Record]) -> Duration {
        let ttl = answers.iter().map(Record::ttl).min().unwrap_or(0);
        Duration::from_secs(u64::from(ttl)).max(self.shared.ttl_min)
    }
}

/// The reply when the upstream answered with no records or failed.
fn upstream_error(name: &str, error: &ResolveError) -> Reply {
    if error.is_nx_domain() {
        return Reply::empty(ResponseCode::NXDomain, QueryResult::Allowed);
    }
    if error.is_no_records_found() {
        return Reply::empty(ResponseCode::NoError, QueryResult::Allowed);
    }
    log::warn!("dns: upstream failed for {name}: {error}");
    Reply::empty(ResponseCode::ServFail, QueryResult::Failed)
}

/// The EDNS record answering a client's: version 0, the smaller of its payload size and ours
/// (never below the classic 512).
fn response_edns(asked: &Edns) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(asked.max_payload().clamp(512, EDNS_MAX_PAYLOAD));
    edns.set_version(0);
    edns
}

/// Sends `reply` to the client that sent `request`.
async fn send<R: ResponseHandler>(
    request: &Request,
    response: &mut R,
    reply: Reply,
) -> ResponseInfo {
    let mut header = Header::response_from_request(request.header());
    header.set_response_code(reply.code);
    header.set_recursion_available(true);
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(asked) = request.edns() {
        builder.edns(response_edns(asked));
    }
    let message = builder.build(header, reply.answers.iter(), None, None, None);
    match response.send_response(message).await {
        Ok(info) => info,
        Err(e) => {
            log::debug!("dns: reply to {} failed: {e}", request.src());
            let mut header = Header::response_from_request(request.header());
            header.set_response_code(ResponseCode::ServFail);
            header.into()
        }
    }
}
