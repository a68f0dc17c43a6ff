//! `--network restricted`, proven from real sessions: a session reaches the allowed name on
//! its allowed port and nothing else (other ports, other addresses, the host, the other
//! sessions, IPv6), names outside the allowlist do not resolve, the allowance follows the
//! DNS answers' TTLs, every drop and refusal is counted and audited with its session, and
//! the rules and network come and go with the server. Destinations are only test hosts in
//! namespaces made here (testnet.rs), the test's DNS upstream on loopback, and the host.

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;
use crate::testnet::{dns_upstream, HostListener, TestHost};

const PORT: u16 = 8443;
const OTHER_PORT: u16 = 9443;
/// The one UDP port allowed (`/udp`), on the same name.
const UDP_PORT: u16 = 8123;

fn restricted_args(upstream: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--network",
        "restricted",
        "--egress-allow",
        &format!("allowed.test:{PORT},allowed.test:{UDP_PORT}/udp"),
        "--dns-upstream",
        upstream,
        // The tests type more lines than the default limit of a minute.
        "--commands-per-minute",
        "1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn start(args: &[String]) -> Server {
    Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `echo TEXT | nc` to `dest port` from the session; true when nc reported success.
async fn send(c: &mut Client, dest: &str, port: u16, text: &str) -> bool {
    let out = c
        .capture(&format!(
            "echo {text} | nc -w 3 {dest} {port} >/dev/null 2>&1; echo rc=$?"
        ))
        .await;
    out.contains("rc=0")
}

async fn denied(server: &Server, kind: &str) -> f64 {
    metric(
        &scrape(server).await,
        "termcell_egress_denied_total",
        &[("kind", kind)],
    )
    .unwrap_or(0.0)
}

/// The audit line of a drop or refusal for this session and destination.
async fn wait_denial(server: &Server, session: &str, kind: &str, destination: &str) -> Value {
    let mut found = None;
    let seen = eventually(Duration::from_secs(10), async || {
        found = server.audit_lines().into_iter().find(|l| {
            l["event"] == "security.egress_denied"
                && l["session_id"] == session
                && l["kind"] == kind
                && l["destination"] == destination
        });
        found.is_some()
    })
    .await;
    assert!(
        seen,
        "{kind} denial of {destination} audited for {session}: {:?}",
        server.audit_lines()
    );
    found.unwrap()
}

fn container_ip(session: &str, network: &str) -> String {
    let id = container_of(session).expect("the session's container");
    docker_inspect(&id)["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .expect("an address on the restricted network")
        .to_string()
}

#[tokio::test]
async fn a_session_reaches_the_allowed_name_and_nothing_else() {
    let host = TestHost::new(1, &[PORT, OTHER_PORT, UDP_PORT]);
    let (allowed, other) = (host.addr(0), host.addr(1));
    let (zone, upstream, _dns) = dns_upstream().await;
    zone.set("allowed.test", &[allowed], 60);
    zone.set("other.test", &[other], 60);
    let server = start(&restricted_args(&upstream.to_string(), &[]));
    let status = server.ready().await;
    let net = &status["network"];
    assert_eq!(net["mode"], "restricted", "{status}");
    assert_eq!(net["enforced"], true, "{status}");
    assert_eq!(
        net["allow"],
        serde_json::json!([
            format!("allowed.test:{PORT}"),
            format!("allowed.test:{UDP_PORT}/udp")
        ])
    );
    let gateway = net["gateway"].as_str().unwrap().to_string();
    let network = net["network"].as_str().unwrap().to_string();

    let (mut c, id) = Client::session(&server).await;
    // The allowed name resolves through termcell's resolver, and its port is open: by nc
    // and by wget, both by name.
    let looked_up = c.capture("nslookup allowed.test").await;
    assert!(looked_up.contains(&allowed.to_string()), "{looked_up}");
    assert!(send(&mut c, "allowed.test", PORT, "hello-allowed").await);
    assert!(host.saw(IpAddr::V4(allowed), PORT, "hello-allowed"));
    c.capture(&format!(
        "wget -q -O /dev/null -T 3 http://allowed.test:{PORT}/by-wget 2>/dev/null; true"
    ))
    .await;
    assert!(
        eventually(Duration::from_secs(5), async || host.saw(
            IpAddr::V4(allowed),
            PORT,
            "GET /by-wget"
        ))
        .await,
        "wget reached the allowed name: {:?}",
        host.accepted()
    );

    // The same address on another port: dropped, counted, audited with the session.
    let port_before = denied(&server, "port").await;
    assert!(!send(&mut c, &allowed.to_string(), OTHER_PORT, "wrong-port").await);
    assert!(!host.any_on(OTHER_PORT), "{:?}", host.accepted());
    let line = wait_denial(&server, &id, "port", &allowed.to_string()).await;
    assert_eq!(line["port"], OTHER_PORT, "{line}");
    assert_eq!(line["proto"], "tcp", "{line}");
    assert!(denied(&server, "port").await > port_before);

    // UDP only where a rule says `/udp`: busybox tftp sends its request as one datagram.
    let tftp = |dest: &str, port: u16, file: &str| {
        format!("timeout 3 tftp -g -r {file} -l /tmp/t {dest} {port} >/dev/null 2>&1; true")
    };
    c.capture(&tftp("allowed.test", UDP_PORT, "hello-udp"))
        .await;
    assert!(
        eventually(Duration::from_secs(5), async || host.saw_over(
            "udp",
            IpAddr::V4(allowed),
            UDP_PORT,
            "hello-udp"
        ))
        .await,
        "a datagram reached the allowed UDP port: {:?}",
        host.accepted()
    );
    c.capture(&tftp(&allowed.to_string(), PORT, "udp-to-a-tcp-port"))
        .await;
    let udp_denied = eventually(Duration::from_secs(10), async || {
        server.audit_lines().iter().any(|l| {
            l["event"] == "security.egress_denied"
                && l["session_id"] == id.as_str()
                && l["kind"] == "port"
                && l["proto"] == "udp"
                && l["port"] == PORT
        })
    })
    .await;
    assert!(udp_denied, "UDP to a TCP-only port audited");
    assert!(!host.saw_over("udp", IpAddr::V4(allowed), PORT, "udp-to-a-tcp-port"));

    // DNS to any server but termcell's: dropped.
    let direct = c
        .capture(&format!("nslookup allowed.test {other} 2>&1; echo rc=$?"))
        .await;
    assert!(!direct.contains(&format!("Address: {allowed}")), "{direct}");
    wait_denial(&server, &id, "dns", &other.to_string()).await;

    // A name outside the allowlist: NXDOMAIN, never asked upstream.
    let refused = c.capture("nslookup other.test 2>&1").await;
    assert!(refused.contains("NXDOMAIN"), "{refused}");
    assert_eq!(
        zone.asked("other.test"),
        0,
        "other.test never reached the upstream"
    );
    wait_denial(&server, &id, "name", "other.test").await;
    let samples = scrape(&server).await;
    assert!(
        metric(
            &samples,
            "termcell_dns_queries_total",
            &[("result", "not_allowed")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        metric(
            &samples,
            "termcell_dns_queries_total",
            &[("result", "allowed")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );

    // The other host's address, never granted: dropped.
    assert!(!send(&mut c, &other.to_string(), PORT, "by-address").await);
    assert!(!host.saw(IpAddr::V4(other), PORT, "by-address"));
    wait_denial(&server, &id, "address", &other.to_string()).await;

    // The host itself: the gateway's other ports and another host address.
    let on_host = HostListener::new();
    assert!(!send(&mut c, &gateway, on_host.port(), "to-gateway").await);
    assert!(
        !send(
            &mut c,
            &host.gateway().to_string(),
            on_host.port(),
            "to-host"
        )
        .await
    );
    assert!(!send(&mut c, &gateway, 22, "ssh").await);
    assert!(
        !on_host.reached(),
        "a session reached a listener on the host"
    );
    wait_denial(&server, &id, "host", &gateway).await;
    wait_denial(&server, &id, "host", &host.gateway().to_string()).await;

    // No capabilities: no raw sockets, no routes, no interface changes.
    let ping = c
        .capture(&format!(
            "ping -c 1 -W 1 {allowed} >/dev/null 2>&1; echo rc=$?"
        ))
        .await;
    assert!(!ping.contains("rc=0"), "{ping}");
    let down = c.capture("ip link set eth0 down 2>&1; echo rc=$?").await;
    assert!(!down.contains("rc=0"), "{down}");
    let route = c
        .capture("ip route add 198.18.0.0/24 dev eth0 2>&1; echo rc=$?")
        .await;
    assert!(!route.contains("rc=0"), "{route}");
    // IPv6: no route in the sandbox, and dropped on the host if one were there.
    assert!(!send(&mut c, &host.addr6(), PORT, "over-ipv6").await);
    assert!(!host.saw(host.addr6().parse().unwrap(), PORT, "over-ipv6"));

    // A second session cannot reach the first.
    let first_ip = container_ip(&id, &network);
    c.send_text("nc -l -p 7000 > /tmp/got &\r").await;
    let (mut c2, id2) = Client::session(&server).await;
    assert!(!send(&mut c2, &first_ip, 7000, "from-the-other-session").await);
    let got = c.capture("cat /tmp/got").await;
    assert!(!got.contains("from-the-other-session"), "{got}");
    wait_denial(&server, &id2, "session", &first_ip).await;

    // The host's firewall reloaded (the table deleted from outside): termcell puts it back
    // within a poll, with the grants the sessions were told about, and says so.
    let table = net["table"].as_str().unwrap().to_string();
    let deleted = Command::new("nft")
        .args(["delete", "table"])
        .args(table.split(' '))
        .status()
        .unwrap();
    assert!(deleted.success());
    let restored = eventually(Duration::from_secs(10), async || {
        server
            .audit_lines()
            .iter()
            .any(|l| l["event"] == "security.firewall_restored" && l["table"] == table.as_str())
    })
    .await;
    assert!(restored, "the table came back: {:?}", server.audit_lines());
    let listed = Command::new("nft")
        .args(["list", "table"])
        .args(table.split(' '))
        .output()
        .unwrap();
    assert!(listed.status.success());
    assert!(
        metric(
            &scrape(&server).await,
            "termcell_egress_firewall_restores_total",
            &[]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(server.ready().await["network"]["enforced"], true);
    // The allowed address works without a new lookup; the rest is still dropped.
    assert!(send(&mut c, &allowed.to_string(), PORT, "after-restore").await);
    assert!(host.saw(IpAddr::V4(allowed), PORT, "after-restore"));
    assert!(!send(&mut c, &other.to_string(), PORT, "other-after-restore").await);
    assert!(!host.saw(IpAddr::V4(other), PORT, "other-after-restore"));

    // A guard that stops finishing its checks (here each one fails) stops vouching for the
    // firewall: within its 30 s /ready says not enforced and a new session is refused; once
    // it checks again, both come back.
    set_failpoint(&server, "network::poll", "panic").await;
    let enforced = async || server.ready().await["network"]["enforced"].clone();
    assert!(
        eventually(Duration::from_secs(45), async || enforced().await == false).await,
        "{}",
        server.ready().await
    );
    assert_eq!(server.ready().await["network"]["guard_stale"], true);
    let mut refused = Client::connect(&server).await;
    refused
        .auth(serde_json::json!({"apiKey": "app.key:secret"}))
        .await;
    expect_close(
        &mut refused,
        "error",
        1011,
        "Failed to create session environment",
    )
    .await;
    clear_failpoint(&server, "network::poll").await;
    assert!(eventually(T, async || enforced().await == true).await);
    let (mut again, _) = Client::session(&server).await;
    again.run("echo again-$((6*6))", "again-36").await;
    again.close(1000, "user-closed-tab").await;

    c.close(1000, "user-closed-tab").await;
    c2.close(1000, "user-closed-tab").await;
}

#[tokio::test]
async fn the_allowance_follows_the_answer_when_its_ttl_ends() {
    let host = TestHost::new(1, &[PORT]);
    let (first, second) = (host.addr(0), host.addr(1));
    let (zone, upstream, _dns) = dns_upstream().await;
    zone.set("allowed.test", &[first], 1);
    let server = start(&restricted_args(
        &upstream.to_string(),
        &["--dns-ttl-min", "1", "--dns-ttl-max", "2"],
    ));
    let (mut c, _) = Client::session(&server).await;
    assert!(send(&mut c, "allowed.test", PORT, "to-first").await);
    assert!(host.saw(IpAddr::V4(first), PORT, "to-first"));

    zone.set("allowed.test", &[second], 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The old address's grant has run out: refused by address.
    assert!(!send(&mut c, &first.to_string(), PORT, "first-again").await);
    assert!(!host.saw(IpAddr::V4(first), PORT, "first-again"));
    // The name now resolves to the new address, which is allowed.
    let looked_up = c.capture("nslookup allowed.test").await;
    assert!(looked_up.contains(&second.to_string()), "{looked_up}");
    assert!(send(&mut c, "allowed.test", PORT, "to-second").await);
    assert!(host.saw(IpAddr::V4(second), PORT, "to-second"));
    c.close(1000, "user-closed-tab").await;
}

fn table_of(deployment: &str) -> String {
    let safe: String = deployment
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("termcell_{safe}")
}

/// The table as nft lists it, or `None` when it does not exist.
fn listing(deployment: &str) -> Option<String> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", &table_of(deployment)])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tables_named(deployment: &str) -> usize {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == format!("table inet {}", table_of(deployment)))
        .count()
}

fn networks_named(deployment: &str) -> usize {
    let out = Command::new("docker")
        .args(["network", "ls", "--format", "{{.Name}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == format!("termcell-{deployment}"))
        .count()
}

fn rule_lines(listing: &str) -> usize {
    listing
        .lines()
        .filter(|l| l.contains(" drop") || l.contains(" accept") || l.contains(" jump "))
        .count()
}

#[tokio::test]
async fn rules_and_network_come_and_go_with_the_server() {
    let (_zone, upstream, _dns) = dns_upstream().await;
    let args = restricted_args(&upstream.to_string(), &[]);
    let mut first = start(&args);
    let deployment = first.deployment.clone();
    let installed = listing(&deployment).expect("the table is installed at start");
    assert_eq!(networks_named(&deployment), 1);
    println!("the rules as installed:\n{installed}");

    // kill -9 leaves the table and the network; the next start replaces them.
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    assert!(listing(&deployment).is_some());
    let dir = std::env::temp_dir().join(format!("termcell-{deployment}-again"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut again = Server::start_in(&deployment, &dir, &refs, &[]);
    let replaced = listing(&deployment).expect("the table after a restart");
    assert_eq!(tables_named(&deployment), 1, "never two tables");
    assert_eq!(networks_named(&deployment), 1, "never two networks");
    assert_eq!(rule_lines(&replaced), rule_lines(&installed), "{replaced}");

    // A second deployment has its own; stopping the first leaves it alone.
    let other = start(&args);
    assert!(listing(&other.deployment).is_some());
    again.signal("TERM");
    assert_eq!(again.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(
        listing(&deployment).is_none(),
        "the table is removed at shutdown"
    );
    assert_eq!(
        networks_named(&deployment),
        0,
        "the network is removed at shutdown"
    );
    assert!(
        listing(&other.deployment).is_some(),
        "the other deployment's table stays"
    );
    let (mut c, _) = Client::session(&other).await;
    let out = c.capture("nslookup other.test 2>&1").await;
    assert!(
        out.contains("NXDOMAIN"),
        "the other deployment's resolver answers: {out}"
    );
    c.close(1000, "user-closed-tab").await;
    drop(first);
}

/// Every table and Docker network `termcell verify` made for its own check.
fn verify_leftovers() -> Vec<String> {
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    let networks = Command::new("docker")
        .args(["network", "ls", "--format", "{{.Name}}"])
        .output()
        .unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout).into_owned();
    let networks = String::from_utf8_lossy(&networks.stdout).into_owned();
    tables
        .lines()
        .filter(|l| l.contains("termcell_verify_"))
        .chain(
            networks
                .lines()
                .filter(|l| l.starts_with("termcell-verify-")),
        )
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn verify_checks_the_restricted_network_from_inside() {
    crate::security::built_probe().await;
    let (_zone, upstream, _dns) = dns_upstream().await;
    let deployment = format!(
        "it-verify-net-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_termcell"))
        .args(["verify", "--deployment", &deployment])
        .args(["--network", "restricted", "--egress-allow", "allowed.test"])
        .args(["--dns-upstream", &upstream.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.lines().any(|l| l.starts_with("FAIL ")), "{stdout}");
    for check in [
        "PASS net-restricted-host-dropped:",
        "PASS net-restricted-metadata-dropped:",
        "PASS net-restricted-no-ipv6:",
        "PASS net-restricted-resolver-refuses:",
        "PASS net-restricted-system-resolver-refuses:",
        "SKIP net-loopback-only:",
        "PASS capabilities:",
        "PASS deny-socket-inet-raw:",
    ] {
        assert!(stdout.contains(check), "{check} in:\n{stdout}");
    }
    assert!(
        eventually(Duration::from_secs(10), async || verify_leftovers()
            .is_empty())
        .await,
        "verify removes its network and table: {:?}",
        verify_leftovers()
    );
    assert!(containers_with_label(&format!("termcell.deployment={deployment}")).is_empty());
}

/// Runs the server as it would start, and returns its exit status and what it printed.
fn start_failing(args: &[&str], env: &[(&str, &str)], prefix: &[&str]) -> (bool, String, Duration) {
    let started = Instant::now();
    let bin = env!("CARGO_BIN_EXE_termcell");
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut cmd = Command::new(first);
            cmd.args(rest).arg(bin);
            cmd
        }
        None => Command::new(bin),
    };
    let out = cmd
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn restricted_mode_refuses_to_start_without_what_it_needs() {
    let args = [
        "--network",
        "restricted",
        "--egress-allow",
        "allowed.test",
        "--audit-logging",
        "false",
        "--deployment",
        "it-refused",
    ];
    let (ok, err, took) = start_failing(
        &args,
        &[],
        &[
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
        ],
    );
    assert!(!ok, "started without privileges: {err}");
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
    assert!(took < Duration::from_secs(10));

    let empty = tempfile::tempdir().unwrap();
    let (ok, err, _) = start_failing(&args, &[("PATH", empty.path().to_str().unwrap())], &[]);
    assert!(!ok, "started without nft: {err}");
    assert!(err.contains("nft") && err.contains("nftables"), "{err}");

    let (ok, err, _) = start_failing(
        &["--network", "restricted", "--egress-allow", "10.0.0.1"],
        &[],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("egress-allow"), "{err}");
    // Nothing was left behind by the refusals.
    assert_eq!(tables_named("it-refused"), 0);
    assert_eq!(networks_named("it-refused"), 0);
}
