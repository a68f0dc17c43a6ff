//! The resolver against a scripted upstream on loopback: policy, forwarding, grants,
//! rebinding, TTLs, failures, abuse bounds and latency.

use super::*;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::serialize::binary::BinDecodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER_LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// What the scripted upstream serves, changeable while it runs.
#[derive(Default)]
struct UpstreamState {
    /// Records per lower-case name (no trailing dot); absent names are NXDOMAIN.
    zone: Mutex<HashMap<String, Vec<Record>>>,
    /// Extra delay before answering, per name.
    delay: Mutex<HashMap<String, Duration>>,
    /// When set, no query is answered.
    silent: AtomicBool,
    /// Queries received.
    queries: AtomicUsize,
}

impl UpstreamState {
    fn set(&self, name: &str, records: Vec<Record>) {
        self.zone.lock().insert(name.to_string(), records);
    }

    fn set_a(&self, name: &str, ttl: u32, addrs: &[Ipv4Addr]) {
        self.set(
            name,
            addrs.iter().map(|a| a_record(name, ttl, *a)).collect(),
        );
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

fn a_record(name: &str, ttl: u32, addr: Ipv4Addr) -> Record {
    Record::from_rdata(fqdn(name), ttl, RData::A(A(addr)))
}

fn fqdn(name: &str) -> Name {
    Name::from_str(&format!("{name}.")).unwrap()
}

struct UpstreamHandler {
    state: Arc<UpstreamState>,
}

impl RequestHandler for UpstreamHandler {
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
        Box::pin(self.serve(request, response_handle))
    }
}

impl UpstreamHandler {
    async fn serve<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        self.state.queries.fetch_add(1, Ordering::SeqCst);
        let name = normalize(&request.request_info().unwrap().query.name().to_string());
        if self.state.silent.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        let delay = self.state.delay.lock().get(&name).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let records = self.state.zone.lock().get(&name).cloned();
        let mut header = Header::response_from_request(request.header());
        header.set_response_code(match records {
            Some(_) => ResponseCode::NoError,
            None => ResponseCode::NXDomain,
        });
        let records = records.unwrap_or_default();
        let message = MessageResponseBuilder::from_message_request(request).build(
            header,
            records.iter(),
            None,
            None,
            None,
        );
        response.send_response(message).await.unwrap()
    }
}

/// Starts the scripted upstream on an ephemeral loopback port (UDP and TCP).
async fn upstream() -> (
    Arc<UpstreamState>,
    SocketAddr,
    ServerFuture<UpstreamHandler>,
) {
    let state = Arc::new(UpstreamState::default());
    let mut server = ServerFuture::new(UpstreamHandler {
        state: state.clone(),
    });
    let (udp, tcp) = bind_pair(SocketAddr::new(LOCAL, 0)).await.unwrap();
    let addr = udp.local_addr().unwrap();
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5));
    (state, addr, server)
}

/// Records every grant and outcome; fails grants on demand.
#[derive(Default)]
struct RecordingGrants {
    grants: Mutex<Vec<Grant>>,
    outcomes: Mutex<Vec<QueryOutcome>>,
    fail: AtomicBool,
    /// What the sink says the addresses are open for (default: the lifetime asked).
    open_for: Mutex<Option<Duration>>,
}

impl Grants for RecordingGrants {
    fn grant(&self, grant: Grant) -> BoxFuture<'static, Result<Duration, String>> {
        let fail = self.fail.load(Ordering::SeqCst);
        let open_for = self.open_for.lock().unwrap_or(grant.lifetime);
        if !fail {
            self.grants.lock().push(grant);
        }
        Box::pin(async move {
            if fail {
                Err("firewall unavailable".to_string())
            } else {
                Ok(open_for)
            }
        })
    }

    fn outcome(&self, outcome: &QueryOutcome) {
        self.outcomes.lock().push(outcome.clone());
    }
}

impl RecordingGrants {
    fn grants(&self) -> Vec<Grant> {
        self.grants.lock().clone()
    }

    fn results(&self) -> Vec<QueryResult> {
        self.outcomes.lock().iter().map(|o| o.result).collect()
    }
}

/// A running resolver in front of a scripted upstream.
struct Rig {
    upstream: Arc<UpstreamState>,
    upstream_server: ServerFuture<UpstreamHandler>,
    grants: Arc<RecordingGrants>,
    resolver: Resolver,
    addr: SocketAddr,
}

const ALLOW: &str = "api.example.com,api.example.com:8443,short.example.com,alias.example.com,\
                     rebind.example.com,bad.example.com,change.example.com,slow.example.com,\
                     fast.example.com";

async fn rig_with(tune: impl FnOnce(&mut ResolverConfig)) -> Rig {
    let (upstream, upstream_addr, upstream_server) = upstream().await;
    let allow = Arc::new(EgressAllow::parse_list(ALLOW).unwrap());
    let mut config =
        ResolverConfig::new(vec![SocketAddr::new(LOCAL, 0)], vec![upstream_addr], allow);
    config.ttl_min = Duration::from_secs(30);
    config.ttl_max = Duration::from_secs(300);
    tune(&mut config);
    let grants = Arc::new(RecordingGrants::default());
    let resolver = Resolver::start(config, grants.clone()).await.unwrap();
    let addr = resolver.local_addrs()[0];
    Rig {
        upstream,
        upstream_server,
        grants,
        resolver,
        addr,
    }
}

async fn rig() -> Rig {
    rig_with(|_| {}).await
}

impl Rig {
    async fn ask(&self, name: &str, rtype: RecordType) -> Message {
        query_udp(self.addr, LOCAL, name, rtype).await
    }

    async fn stop(mut self) {
        self.resolver.shutdown().await;
        self.upstream_server.shutdown_gracefully().await.unwrap();
    }
}

fn request(name: &str, rtype: RecordType) -> Message {
    let mut message = Message::new();
    message
        .set_id(rand_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(fqdn(name), rtype));
    message
}

fn rand_id() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) as u16
}

/// One query over UDP from `bind` (a loopback address), with a 5 s bound.
async fn query_udp(server: SocketAddr, bind: IpAddr, name: &str, rtype: RecordType) -> Message {
    send_udp(server, bind, &request(name, rtype).to_vec().unwrap()).await
}

async fn send_udp(server: SocketAddr, bind: IpAddr, bytes: &[u8]) -> Message {
    let socket = UdpSocket::bind(SocketAddr::new(bind, 0)).await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    Message::from_bytes(&buf[..len]).unwrap()
}

/// One query over TCP (two-byte length framing).
async fn query_tcp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let bytes = request(name, rtype).to_vec().unwrap();
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_bytes(&buf).unwrap()
}

fn addrs_of(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

#[tokio::test]
async fn answers_never_outlive_the_grant_they_rely_on() {
    let rig = rig().await;
    rig.upstream
        .set_a("api.example.com", 600, &[ip("198.18.0.1")]);
    // The firewall reuses an earlier grant with 7 s left: clients may cache no longer.
    *rig.grants.open_for.lock() = Some(Duration::from_secs(7));
    let answer = rig.ask("api.example.com", RecordType::A).await;
    assert_eq!(addrs_of(&answer), vec![ip("198.18.0.1")]);
    assert!(answer.answers().iter().all(|r| r.ttl() == 7), "{answer:?}");
    rig.stop().await;
}

#[tokio::test]
async fn allowed_a_is_answered_with_the_upstream_addresses_and_granted_first() {
    let rig = rig().await;
    rig.upstream.set_a(
        "api.example.com",
        600,
        &[ip("198.18.0.1"), ip("198.18.0.2")],
    );
    rig.upstream
        .set_a("short.example.com", 5, &[ip("198.18.0.3")]);

    let long = rig.ask("API.Example.com", RecordType::A).await;
    assert_eq!(long.response_code(), ResponseCode::NoError);
    assert_eq!(addrs_of(&long), vec![ip("198.18.0.1"), ip("198.18.0.2")]);
    assert!(
        long.answers().iter().all(|r| r.ttl() == 300),
        "TTL capped at ttl_max"
    );

    let short = rig.ask("short.example.com", RecordType::A).await;
    assert_eq!(addrs_of(&short), vec![ip("198.18.0.3")]);
    assert_eq!(
        short.answers()[0].ttl(),
        5,
        "short TTLs reach the client unchanged"
    );

    let grants = rig.grants.grants();
    assert_eq!(grants.len(), 2);
    assert_eq!(grants[0].source, LOCAL);
    assert_eq!(grants[0].name, "api.example.com");
    assert_eq!(grants[0].addrs, vec![ip("198.18.0.1"), ip("198.18.0.2")]);
    let mut ports = grants[0].ports.clone();
    ports.sort_unstable();
    assert_eq!(ports, vec![Port::tcp(443), Port::tcp(8443)]);
    assert_eq!(
        grants[0].lifetime,
        Duration::from_secs(300),
        "clamped down to ttl_max"
    );
    assert_eq!(grants[1].ports, vec![Port::tcp(443)]);
    assert_eq!(
        grants[1].lifetime,
        Duration::from_secs(30),
        "raised to ttl_min"
    );
    assert_eq!(rig.grants.results(), vec![QueryResult::Allowed; 2]);
    assert_eq!(rig.upstream.queries(), 2);
    rig.stop().await;
}

#[tokio::test]
async fn aaaa_for_an_allowed_name_is_empty_noerror_and_not_forwarded() {
    let rig = rig().await;
    rig.upstream
        .set_a("api.example.com", 60, &[ip("198.18.0.1")]);
    let answer = rig.ask("api.example.com", RecordType::AAAA).await;
    assert_eq!(answer.response_code(), ResponseCode::NoError);
    assert!(answer.answers().is_empty());
    assert_eq!(rig.upstream.queries(), 0);
    assert!(rig.grants.grants().is_empty());
    assert_eq!(rig.grants.results(), vec![QueryResult::Allowed]);
    rig.stop().await;
}

#[tokio::test]
async fn other_query_types_are_refused_and_never_forwarded() {
    let rig = rig().await;
    rig.upstream
        .set_a("api.example.com", 60, &[ip("198.18.0.1")]);
    for rtype in [
        RecordType::TXT,
        RecordType::PTR,
        RecordType::ANY,
        RecordType::MX,
        RecordType::SRV,
    ] {
        let answer = rig.ask("api.example.com", rtype).await;
        assert_eq!(answer.response_code(), ResponseCode::Refused, "{rtype}");
        assert!(answer.answers().is_empty());
    }
    assert_eq!(rig.upstream.queries(), 0);
    assert!(rig.grants.grants().is_empty());
    assert_eq!(rig.grants.results(), vec![QueryResult::Refused; 5]);
    let outcome = rig.grants.outcomes.lock()[0].clone();
    assert_eq!(
        (outcome.name.as_str(), outcome.qtype.as_str()),
        ("api.example.com", "TXT")
    );
    rig.stop().await;
}

#[tokio::test]
async fn names_outside_the_allowlist_are_nxdomain_and_never_forwarded() {
    let rig = rig().await;
    rig.upstream.set_a("evil.test", 60, &[ip("198.18.0.66")]);
    rig.upstream
        .set_a("deep.api.example.com", 60, &[ip("198.18.0.67")]);
    for name in ["evil.test", "deep.api.example.com", "example.com"] {
        let answer = rig.ask(name, RecordType::A).await;
        assert_eq!(answer.response_code(), ResponseCode::NXDomain, "{name}");
        assert!(answer.answers().is_empty());
    }
    assert_eq!(rig.upstream.queries(), 0);
    assert!(rig.grants.grants().is_empty());
    assert_eq!(rig.grants.results(), vec![QueryResult::NotAllowed; 3]);
    rig.stop().await;
}

#[tokio::test]
async fn a_cname_chain_passes_through_and_its_final_addresses_are_granted() {
    let rig = rig().await;
    let target = fqdn("edge.cdn.test");
    rig.upstream.set(
        "alias.example.com",
        vec![
            Record::from_rdata(
                fqdn("alias.example.com"),
                120,
                RData::CNAME(CNAME(target.clone())),
            ),
            Record::from_rdata(target.clone(), 60, RData::A(A(ip("198.18.0.7")))),
        ],
    );
    let answer = rig.ask("alias.example.com", RecordType::A).await;
    assert_eq!(answer.response_code(), ResponseCode::NoError);
    let cname = answer
        .answers()
        .iter()
        .find_map(|r| match r.data() {
            RData::CNAME(c) => Some(c.0.clone()),
            _ => None,
        })
        .expect("the CNAME is in the answer");
    assert_eq!(cname, target);
    assert_eq!(addrs_of(&answer), vec![ip("198.18.0.7")]);
    let grants = rig.grants.grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].name, "alias.example.com");
    assert_eq!(grants[0].addrs, vec![ip("198.18.0.7")]);
    assert_eq!(
        grants[0].lifetime,
        Duration::from_secs(60),
        "the shortest TTL in the chain"
    );
    rig.stop().await;
}

#[tokio::test]
async fn rebinding_addresses_are_stripped_and_never_granted() {
    let rig = rig_with(|c| c.never = vec![(ip("198.19.7.0"), 24)]).await;
    let bad = [
        ip("127.0.0.1"),
        ip("10.1.2.3"),
        ip("169.254.169.254"),
        ip("172.20.0.1"),
        ip("192.168.1.1"),
        ip("100.64.0.1"),
        ip("0.1.2.3"),
        ip("224.0.0.1"),
        ip("255.255.255.255"),
        ip("198.19.7.9"),
    ];
    let mut mixed = bad.to_vec();
    mixed.push(ip("198.18.0.5"));
    rig.upstream.set_a("rebind.example.com", 60, &mixed);
    rig.upstream.set_a("bad.example.com", 60, &bad);

    let answer = rig.ask("rebind.example.com", RecordType::A).await;
    assert_eq!(answer.response_code(), ResponseCode::NoError);
    assert_eq!(addrs_of(&answer), vec![ip("198.18.0.5")]);

    let all_bad = rig.ask("bad.example.com", RecordType::A).await;
    assert_eq!(all_bad.response_code(), ResponseCode::NoError);
    assert!(all_bad.answers().is_empty());

    let grants = rig.grants.grants();
    assert_eq!(
        grants.len(),
        1,
        "nothing is granted for an all-rebinding answer"
    );
    assert_eq!(grants[0].addrs, vec![ip("198.18.0.5")]);
    assert_eq!(rig.grants.results(), vec![QueryResult::Allowed; 2]);
    rig.stop().await;
}

#[tokio::test]
async fn a_changed_answer_is_seen_once_its_ttl_has_passed() {
    let rig = rig_with(|c| c.ttl_min = Duration::from_secs(1)).await;
    rig.upstream
        .set_a("change.example.com", 1, &[ip("198.18.1.1")]);
    let before = rig.ask("change.example.com", RecordType::A).await;
    assert_eq!(addrs_of(&before), vec![ip("198.18.1.1")]);
    rig.upstream
        .set_a("change.example.com", 1, &[ip("198.18.1.2")]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = rig.ask("change.example.com", RecordType::A).await;
    assert_eq!(addrs_of(&after), vec![ip("198.18.1.2")]);
    let granted: Vec<_> = rig.grants.grants().into_iter().map(|g| g.addrs).collect();
    assert_eq!(
        granted,
        vec![vec![ip("198.18.1.1")], vec![ip("198.18.1.2")]]
    );
    assert_eq!(rig.upstream.queries(), 2);
    rig.stop().await;
}

#[tokio::test]
async fn a_failing_grant_sink_means_servfail_and_no_addresses() {
    let rig = rig().await;
    rig.upstream
        .set_a("api.example.com", 60, &[ip("198.18.0.1")]);
    rig.grants.fail.store(true, Ordering::SeqCst);
    let answer = rig.ask("api.example.com", RecordType::A).await;
    assert_eq!(answer.response_code(), ResponseCode::ServFail);
    assert!(answer.answers().is_empty());
    assert_eq!(rig.grants.results(), vec![QueryResult::Failed]);
    rig.stop().await;
}

#[tokio::test]
async fn a_silent_upstream_means_servfail_within_the_timeout() {
    let rig = rig_with(|c| c.upstream_timeout = Duration::from_millis(300)).await;
    rig.upstream
        .set_a("api.example.com", 60, &[ip("198.18.0.1")]);
    rig.upstream.silent.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let answer = rig.ask("api.example.com", RecordType::A).await;
    let took = started.elapsed();
    assert_eq!(answer.response_code(), ResponseCode::ServFail);
    assert!(
        took >= Duration::from_millis(250),
        "waited for the upstream: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1000),
        "answered within the timeout: {took:?}"
    );
    assert!(rig.upstream.queries() >= 1);
    assert!(rig.grants.grants().is_empty());
    assert_eq!(rig.grants.results(), vec![QueryResult::Failed]);
    rig.stop().await;
}

#[tokio::test]
async fn an_upstream_nxdomain_for_an_allowed_name_is_passed_on() {
    let rig = rig().await;
    let answer = rig.ask("api.example.com", RecordType::A).await;
    assert_eq!(answer.response_code(), ResponseCode::NXDomain);
    assert_eq!(rig.upstream.queries(), 1);
    assert!(rig.grants.grants().is_empty());
    rig.stop().await;
}

#[tokio::test]
async fn one_sources_flood_is_limited_while_another_source_is_answered_promptly() {
    let rig = rig_with(|c| {
        c.per_source_per_sec = 5;
        c.per_source_burst = 20;
    })
    .await;
    rig.upstream
        .set_a("slow.example.com", 60, &[ip("198.18.2.1")]);
    rig.upstream
        .delay
        .lock()
        .insert("slow.example.com".into(), Duration::from_millis(1500));
    rig.upstream
        .set_a("fast.example.com", 60, &[ip("198.18.2.2")]);

    let addr = rig.addr;
    let flood: Vec<_> = (0..60)
        .map(|_| tokio::spawn(query_udp(addr, LOCAL, "slow.example.com", RecordType::A)))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let other = query_udp(addr, OTHER_LOCAL, "fast.example.com", RecordType::A).await;
    let took = started.elapsed();
    assert_eq!(other.response_code(), ResponseCode::NoError);
    assert_eq!(addrs_of(&other), vec![ip("198.18.2.2")]);
    assert!(
        took < Duration::from_millis(500),
        "the other source waited {took:?}"
    );

    let mut codes = Vec::new();
    for query in flood {
        codes.push(query.await.unwrap().response_code());
    }
    let refused = codes
        .iter()
        .filter(|c| **c == ResponseCode::Refused)
        .count();
    let answered = codes
        .iter()
        .filter(|c| **c == ResponseCode::NoError)
        .count();
    assert_eq!(refused + answered, 60);
    assert!(
        (1..=8).contains(&answered),
        "at most 8 in flight: {answered} answered"
    );
    let results = rig.grants.results();
    let limited = results
        .iter()
        .filter(|r| **r == QueryResult::RateLimited)
        .count();
    assert_eq!(limited, refused);
    let other_grant = rig
        .grants
        .grants()
        .into_iter()
        .find(|g| g.source == OTHER_LOCAL);
    assert_eq!(other_grant.map(|g| g.addrs), Some(vec![ip("198.18.2.2")]));
    rig.stop().await;
}

#[tokio::test]
async fn the_rate_limit_refuses_a_source_past_its_burst() {
    let rig = rig_with(|c| {
        c.per_source_per_sec = 1;
        c.per_source_burst = 3;
    })
    .await;
    rig.upstream
        .set_a("api.example.com", 60, &[ip("198.18.0.1")]);
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            rig.ask("api.example.com", RecordType::A)
                .await
                .response_code(),
        );
    }
    assert_eq!(&codes[..3], &[ResponseCode::NoError; 3]);
    assert_eq!(&codes[3..], &[ResponseCode::Refused; 2]);
    assert_eq!(rig.upstream.queries(), 3);
    let results = rig.grants.results();
    assert_eq!(&results[3..], &[QueryResult::RateLimited; 2]);
    rig.stop().await;
}

#[tokio::test]
async fn the_global_in_flight_cap_refuses_past_it() {
    let rig = rig_with(|c| c.in_flight_total = 3).await;
    rig.upstream
        .set_a("slow.example.com", 60, &[ip("198.18.2.1")]);
    rig.upstream
        .delay
        .lock()
        .insert("slow.example.com".into(), Duration::from_millis(800));
    let addr = rig.addr;
    let queries: Vec<_> = [LOCAL, OTHER_LOCAL, LOCAL, OTHER_LOCAL, LOCAL, OTHER_LOCAL]
        .into_iter()
        .map(|bind| tokio::spawn(query_udp(addr, bind, "slow.example.com", RecordType::A)))
        .collect();
    let mut codes = Vec::new();
    for query in queries {
        codes.push(query.await.unwrap().response_code());
    }
    let answered = codes
        .iter()
        .filter(|c| **c == ResponseCode::NoError)
        .count();
    let refused = codes
        .iter()
        .filter(|c| **c == ResponseCode::Refused)
        .count();
    assert_eq!((answered, refused), (3, 3), "{codes:?}");
    assert_eq!(rig.upstream.queries(), 3);
    rig.stop().await;
}

#[tokio::test]
async fn an_edns_query_gets_edns_back() {
    let rig = rig().await;
    rig.upstream
        .set_a("api.example.com", 60, &[ip("198.18.0.1")]);
    let mut message = request("api.example.com", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    message.set_edns(edns);
    let answer = send_udp(rig.addr, LOCAL, &message.to_vec().unwrap()).await;
    assert_eq!(addrs_of(&answer), vec![ip("198.18.0.1")]);
    assert_eq!(
        answer.extensions().as_ref().map(Edns::max_payload),
        Some(1232)
    );
    rig.stop().await;
}

#[tokio::test]
async fn queries_over_tcp_are_answered_too() {
    let rig = rig().await;
    rig.upstream
        .set_a("api.example.com", 60, &[ip("198.18.0.9")]);
    let answer = query_tcp(rig.addr, "api.example.com", RecordType::A).await;
    assert_eq!(answer.response_code(), ResponseCode::NoError);
    assert_eq!(addrs_of(&answer), vec![ip("198.18.0.9")]);
    let refused = query_tcp(rig.addr, "evil.test", RecordType::A).await;
    assert_eq!(refused.response_code(), ResponseCode::NXDomain);
    assert_eq!(rig.grants.grants().len(), 1);
    rig.stop().await;
}

#[tokio::test]
async fn more_than_one_question_is_malformed() {
    let rig = rig().await;
    let mut message = request("api.example.com", RecordType::A);
    message.add_query(Query::query(fqdn("short.example.com"), RecordType::A));
    let answer = send_udp(rig.addr, LOCAL, &message.to_vec().unwrap()).await;
    assert!(
        matches!(
            answer.response_code(),
            ResponseCode::FormErr | ResponseCode::Refused
        ),
        "{:?}",
        answer.response_code()
    );
    assert_eq!(rig.upstream.queries(), 0);
    assert_eq!(rig.grants.results(), vec![QueryResult::Malformed]);
    rig.stop().await;
}

#[tokio::test]
async fn start_says_which_address_failed() {
    let taken = UdpSocket::bind(SocketAddr::new(LOCAL, 0)).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let allow = Arc::new(EgressAllow::default());
    let config = ResolverConfig::new(vec![addr], vec![SocketAddr::new(LOCAL, 53)], allow);
    let err = Resolver::start(config, Arc::new(RecordingGrants::default()))
        .await
        .err()
        .expect("the address is taken");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn median_lookup_time_through_the_resolver() {
    let rig = rig_with(|c| {
        c.per_source_per_sec = 100_000;
        c.per_source_burst = 100_000;
    })
    .await;
    rig.upstream
        .set_a("api.example.com", 60, &[ip("198.18.0.1")]);
    let socket = UdpSocket::bind(SocketAddr::new(LOCAL, 0)).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut times = Vec::with_capacity(300);
    for _ in 0..300 {
        let bytes = request("api.example.com", RecordType::A).to_vec().unwrap();
        let started = Instant::now();
        socket.send_to(&bytes, rig.addr).await.unwrap();
        let (len, _) = socket.recv_from(&mut buf).await.unwrap();
        times.push(started.elapsed());
        let answer = Message::from_bytes(&buf[..len]).unwrap();
        assert_eq!(addrs_of(&answer), vec![ip("198.18.0.1")]);
    }
    times.sort_unstable();
    let median = times[times.len() / 2];
    println!(
        "resolver lookup via loopback upstream: median {median:?}, p90 {:?}, max {:?} over {} lookups",
        times[times.len() * 9 / 10],
        times[times.len() - 1],
        times.len()
    );
    assert!(median < Duration::from_millis(50), "median {median:?}");
    assert_eq!(
        rig.upstream.queries(),
        300,
        "every lookup went upstream: no cache"
    );
    rig.stop().await;
}

#[test]
fn upstreams_come_from_the_nameserver_lines() {
    let text = "# generated\nsearch example.internal\nnameserver 192.0.2.53\n\
                nameserver fe80::1%eth0\nnameserver   127.0.0.11 \noptions ndots:0\nnameserver\n";
    assert_eq!(
        upstreams_from_resolv_conf(text),
        vec![
            SocketAddr::new(IpAddr::V4(ip("192.0.2.53")), 53),
            SocketAddr::new("fe80::1".parse().unwrap(), 53),
            SocketAddr::new(IpAddr::V4(ip("127.0.0.11")), 53),
        ]
    );
}

#[test]
fn the_never_granted_ranges_cover_rebinding_targets_but_not_benchmarking_space() {
    for bad in [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "172.31.255.255",
        "192.168.0.1",
        "100.127.0.1",
        "0.0.0.0",
        "239.1.1.1",
        "240.0.0.1",
        "255.255.255.255",
    ] {
        assert!(never_granted(ip(bad), &[]), "{bad}");
    }
    for good in [
        "198.18.0.5",
        "198.19.255.255",
        "172.32.0.1",
        "100.128.0.1",
        "93.184.216.34",
    ] {
        assert!(!never_granted(ip(good), &[]), "{good}");
    }
    assert!(never_granted(ip("198.18.3.4"), &[(ip("198.18.3.0"), 24)]));
    assert!(!never_granted(ip("198.18.4.4"), &[(ip("198.18.3.0"), 24)]));
    assert!(never_granted(ip("8.8.8.8"), &[(ip("0.0.0.0"), 0)]));
}

#[test]
fn outcome_labels_are_stable() {
    let labels: Vec<_> = [
        QueryResult::Allowed,
        QueryResult::NotAllowed,
        QueryResult::Refused,
        QueryResult::RateLimited,
        QueryResult::Failed,
        QueryResult::Malformed,
    ]
    .iter()
    .map(QueryResult::as_str)
    .collect();
    assert_eq!(
        labels,
        [
            "allowed",
            "not_allowed",
            "refused",
            "rate_limited",
            "failed",
            "malformed"
        ]
    );
}
