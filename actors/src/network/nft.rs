//! The host firewall of the restricted network: one nftables table of termcell's own
//! (`inet termcell_<deployment>`), which Docker never flushes. It is written through `nft`'s
//! script input from typed values only (addresses, ports and names that were validated),
//! installed in one transaction that also replaces a leftover table, and read back through
//! `nft -j` (JSON) for the drop counters.
//!
//! From the bridge: replies pass; DNS reaches only the resolver on the gateway; TCP reaches
//! only (address, port) pairs in `granted_tcp`, UDP only those in `granted_udp` (filled
//! only for `/udp` rules), which the resolver fills from allowed answers with timeouts; link-local (the cloud metadata address), other sessions, the host
//! itself and IPv6 are dropped. Every drop of IPv4 is recorded in a dynamic set keyed by
//! (source, destination, protocol, port) whose elements carry a counter and expire after a
//! minute, so one destination of one session is reported once a minute however often it
//! is tried.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::allow::{Port, Proto};

/// How long one `nft` call may take before it counts as failed.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a drop stays one entry (and so one audit line) in the denied sets.
pub const DENIED_WINDOW: Duration = Duration::from_secs(60);
/// Bounds of the kernel sets: what one deployment can hold at once.
const GRANTED_SIZE: u32 = 65_536;
const DENIED_SIZE: u32 = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(
        "--network restricted installs firewall rules on the host and serves DNS on port 53: \
         it needs root, or CAP_NET_ADMIN and CAP_NET_BIND_SERVICE (systemd: \
         config/termcell-restricted.conf); or choose --network none"
    )]
    NotPrivileged,
    #[error("--network restricted needs `nft` (nftables) on PATH: apt-get install nftables")]
    NoNft,
    #[error("`nft {what}` failed: {message}")]
    Failed { what: String, message: String },
    #[error("`nft {what}` printed what termcell cannot read: {message}")]
    Output { what: String, message: String },
}

/// `nft` on PATH, the way a systemd unit or a shell would find it.
pub fn find_nft(path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .map(|dir| dir.join("nft"))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// CAP_NET_BIND_SERVICE and CAP_NET_ADMIN, as bits of a capability set.
const NEEDED_CAPS: u64 = (1 << 10) | (1 << 12);

/// This process's effective capabilities, from /proc (no libc call needed).
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

fn privileged() -> bool {
    effective_caps().is_some_and(|caps| caps & NEEDED_CAPS == NEEDED_CAPS)
}

/// What restricted mode needs before anything else starts: the capabilities to change
/// the firewall and bind port 53 (root has them), `nft`, and nf_tables in the kernel (a
/// listing succeeds). Returns the `nft` to run.
pub async fn preflight() -> Result<PathBuf, NftError> {
    if !privileged() {
        return Err(NftError::NotPrivileged);
    }
    let nft = find_nft(std::env::var_os("PATH").as_deref()).ok_or(NftError::NoNft)?;
    run(&nft, &["list", "tables"], None)
        .await
        .map_err(|e| match e {
            NftError::Failed { message, .. } => NftError::Failed {
                what: "list tables".into(),
                message: format!("{message} (is nf_tables available in this kernel?)"),
            },
            other => other,
        })?;
    Ok(nft)
}

async fn run(nft: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
    let what = args.join(" ");
    let failed = |message: String| NftError::Failed {
        what: what.clone(),
        message,
    };
    let mut child = tokio::process::Command::new(nft)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|e| failed(e.to_string()))?;
        drop(pipe);
    }
    let out = tokio::time::timeout(NFT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| failed(format!("no answer within {NFT_TIMEOUT:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(failed(if message.is_empty() {
            out.status.to_string()
        } else {
            message
        }));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An IPv4 network, address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    pub fn parse(text: &str) -> Option<Ipv4Net> {
        let (addr, prefix) = text.split_once('/')?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Ipv4Net {
            addr: addr.parse().ok()?,
            prefix,
        })
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl std::fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let network = Ipv4Addr::from(u32::from(self.addr) & self.mask());
        write!(f, "{network}/{}", self.prefix)
    }
}

/// Why a packet was dropped, as metrics and audit name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyKind {
    /// A destination no allowed name resolved to.
    Address,
    /// An address an allowed name resolved to, on a port the allowlist does not give it.
    Port,
    /// The host itself: the gateway's other ports and every other host address.
    Host,
    /// Another session on the same bridge.
    Session,
    /// Link-local, the cloud metadata address among them.
    Metadata,
    /// DNS to anything but termcell's resolver.
    Dns,
    /// Any IPv6 packet.
    Ipv6,
    /// A name the resolver refused to answer.
    Name,
}

impl DenyKind {
    pub const ALL: [DenyKind; 8] = [
        DenyKind::Address,
        DenyKind::Port,
        DenyKind::Host,
        DenyKind::Session,
        DenyKind::Metadata,
        DenyKind::Dns,
        DenyKind::Ipv6,
        DenyKind::Name,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DenyKind::Address => "address",
            DenyKind::Port => "port",
            DenyKind::Host => "host",
            DenyKind::Session => "session",
            DenyKind::Metadata => "metadata",
            DenyKind::Dns => "dns",
            DenyKind::Ipv6 => "ipv6",
            DenyKind::Name => "name",
        }
    }
}

/// One entry of a denied set: who tried what, and how many packets so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
    pub proto: String,
    pub port: u16,
    pub packets: u64,
    /// From the input hook: addressed to the host itself.
    pub to_host: bool,
}

impl Denied {
    /// The kind of a drop, given the network's layout and whether its destination was
    /// granted on some port.
    pub fn kind(&self, subnet: Ipv4Net, granted_on_any_port: bool) -> DenyKind {
        let link_local = Ipv4Net {
            addr: Ipv4Addr::new(169, 254, 0, 0),
            prefix: 16,
        };
        let dns = self.port == 53 && (self.proto == "udp" || self.proto == "tcp");
        if self.to_host {
            DenyKind::Host
        } else if link_local.contains(self.destination) {
            DenyKind::Metadata
        } else if subnet.contains(self.destination) {
            DenyKind::Session
        } else if dns {
            DenyKind::Dns
        } else if granted_on_any_port {
            DenyKind::Port
        } else {
            DenyKind::Address
        }
    }

    /// The key that makes one entry one audit line per window.
    pub fn key(&self) -> (Ipv4Addr, Ipv4Addr, String, u16, bool) {
        (
            self.source,
            self.destination,
            self.proto.clone(),
            self.port,
            self.to_host,
        )
    }
}

/// The table of one deployment, on one bridge.
#[derive(Debug, Clone)]
pub struct Firewall {
    nft: PathBuf,
    pub table: String,
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub subnet: Ipv4Net,
}

/// The table's name for a deployment: `termcell_` and the deployment with every character
/// other than a letter or digit written as `_` (a name nft's script syntax always takes).
pub fn table_name(deployment: &str) -> String {
    let safe: String = deployment
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("termcell_{safe}")
}

impl Firewall {
    pub fn new(
        nft: PathBuf,
        deployment: &str,
        bridge: &str,
        gateway: Ipv4Addr,
        subnet: Ipv4Net,
    ) -> Firewall {
        Firewall {
            nft,
            table: table_name(deployment),
            bridge: bridge.to_string(),
            gateway,
            subnet,
        }
    }

    /// The whole table as nft script. Every interpolated value is typed or was validated
    /// (`table_name`, a bridge name of `[a-z0-9-]`), so nothing a client sends reaches it.
    pub fn ruleset(&self) -> String {
        let Firewall {
            table,
            bridge,
            gateway,
            subnet,
            ..
        } = self;
        let window = DENIED_WINDOW.as_secs();
        format!(
            r#"table inet {table} {{
	set granted_tcp {{
		type ipv4_addr . inet_service
		flags timeout
		size {GRANTED_SIZE}
	}}

	set granted_udp {{
		type ipv4_addr . inet_service
		flags timeout
		size {GRANTED_SIZE}
	}}

	set denied {{
		type ipv4_addr . ipv4_addr . inet_proto . inet_service
		flags dynamic,timeout
		timeout {window}s
		size {DENIED_SIZE}
		counter
	}}

	set denied_host {{
		type ipv4_addr . ipv4_addr . inet_proto . inet_service
		flags dynamic,timeout
		timeout {window}s
		size {DENIED_SIZE}
		counter
	}}

	counter ipv6 {{
	}}

	counter unrecorded {{
	}}

	chain forward {{
		type filter hook forward priority -1; policy accept;
		iifname "{bridge}" jump from_sessions
		oifname "{bridge}" ct state established,related accept
		oifname "{bridge}" counter name unrecorded drop
	}}

	chain from_sessions {{
		ct state established,related accept
		meta nfproto ipv6 counter name ipv6 drop
		ip daddr 169.254.0.0/16 jump deny
		ip daddr {subnet} jump deny
		oifname "{bridge}" jump deny
		ip daddr . tcp dport @granted_tcp accept
		ip daddr . udp dport @granted_udp accept
		jump deny
	}}

	chain deny {{
		add @denied {{ ip saddr . ip daddr . meta l4proto . th dport }} drop
		counter name unrecorded drop
	}}

	chain input {{
		type filter hook input priority -1; policy accept;
		iifname "{bridge}" jump host_from_sessions
	}}

	chain host_from_sessions {{
		ct state established,related accept
		meta nfproto ipv6 counter name ipv6 drop
		ip daddr {gateway} udp dport 53 accept
		ip daddr {gateway} tcp dport 53 accept
		add @denied_host {{ ip saddr . ip daddr . meta l4proto . th dport }} drop
		counter name unrecorded drop
	}}
}}
"#
        )
    }

    /// Installs the table in one transaction; a table of the same name left by an earlier
    /// run is deleted in the same transaction, so there is never a moment without rules
    /// and never two copies.
    pub async fn install(&self) -> Result<(), NftError> {
        self.install_with(&[]).await
    }

    /// Installs the table with `grants` (address, port, time left) already in its sets, in
    /// one transaction: how a table deleted from outside (`nft flush ruleset`, a firewall
    /// reload) comes back with the allowances sessions were told about.
    pub async fn install_with(
        &self,
        grants: &[(Ipv4Addr, Port, Duration)],
    ) -> Result<(), NftError> {
        let mut script = format!(
            "add table inet {t}\ndelete table inet {t}\n{}",
            self.ruleset(),
            t = self.table
        );
        for (addr, port, left) in grants {
            script.push_str(&format!(
                "add element inet {} granted_{} {{ {addr} . {} timeout {}s }}\n",
                self.table,
                port.proto.as_str(),
                port.number,
                left.as_secs().max(1)
            ));
        }
        run(&self.nft, &["-f", "-"], Some(&script)).await.map(drop)
    }

    /// Whether the table is in the kernel now.
    pub async fn exists(&self) -> Result<bool, NftError> {
        let tables = run(&self.nft, &["list", "tables"], None).await?;
        let line = format!("table inet {}", self.table);
        Ok(tables.lines().any(|l| l.trim() == line))
    }

    /// Deletes the table (at shutdown). A table that is already gone counts as removed.
    pub async fn remove(&self) -> Result<(), NftError> {
        let script = format!(
            "add table inet {t}\ndelete table inet {t}\n",
            t = self.table
        );
        run(&self.nft, &["-f", "-"], Some(&script)).await.map(drop)
    }

    /// Allows `addrs` on `ports` for `lifetime`. An element that exists gets the new
    /// lifetime (add, delete, add in one transaction: `add` alone keeps an old timeout).
    pub async fn grant(
        &self,
        addrs: &[Ipv4Addr],
        ports: &[Port],
        lifetime: Duration,
    ) -> Result<(), NftError> {
        let script = self.grant_script(addrs, ports, lifetime);
        if script.is_empty() {
            return Ok(());
        }
        run(&self.nft, &["-f", "-"], Some(&script)).await.map(drop)
    }

    /// The nft script of one grant: per transport, its set's elements refreshed.
    fn grant_script(&self, addrs: &[Ipv4Addr], ports: &[Port], lifetime: Duration) -> String {
        let secs = lifetime.as_secs().max(1);
        let mut script = String::new();
        for proto in [Proto::Tcp, Proto::Udp] {
            let elements: Vec<String> = addrs
                .iter()
                .flat_map(|a| {
                    ports
                        .iter()
                        .filter(move |p| p.proto == proto)
                        .map(move |p| format!("{a} . {}", p.number))
                })
                .collect();
            if elements.is_empty() {
                continue;
            }
            let timed: Vec<String> = elements
                .iter()
                .map(|e| format!("{e} timeout {secs}s"))
                .collect();
            let set = format!("inet {} granted_{}", self.table, proto.as_str());
            script.push_str(&format!(
                "add element {set} {{ {timed} }}\ndelete element {set} {{ {plain} }}\nadd element {set} {{ {timed} }}\n",
                timed = timed.join(", "),
                plain = elements.join(", "),
            ));
        }
        script
    }

    /// Every entry of both denied sets, with its packet count.
    pub async fn denied(&self) -> Result<Vec<Denied>, NftError> {
        let mut all = Vec::new();
        for (set, to_host) in [("denied", false), ("denied_host", true)] {
            let json = run(
                &self.nft,
                &["-j", "list", "set", "inet", &self.table, set],
                None,
            )
            .await?;
            all.extend(
                parse_denied(&json, to_host).map_err(|message| NftError::Output {
                    what: format!("-j list set inet {} {set}", self.table),
                    message,
                })?,
            );
        }
        Ok(all)
    }

    /// The packet counts of the table's named counters (`ipv6`, `unrecorded`).
    pub async fn counters(&self) -> Result<HashMap<String, u64>, NftError> {
        let json = run(
            &self.nft,
            &["-j", "list", "counters", "table", "inet", &self.table],
            None,
        )
        .await?;
        parse_counters(&json).map_err(|message| NftError::Output {
            what: format!("-j list counters table inet {}", self.table),
            message,
        })
    }

    /// The table as `nft list table` prints it, for reports.
    pub async fn listing(&self) -> Result<String, NftError> {
        run(&self.nft, &["list", "table", "inet", &self.table], None).await
    }
}

fn items(json: &str) -> Result<Vec<Value>, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    value
        .get("nftables")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| "no \"nftables\" array".to_string())
}

/// The elements of a denied set from `nft -j list set`.
pub fn parse_denied(json: &str, to_host: bool) -> Result<Vec<Denied>, String> {
    let mut out = Vec::new();
    for item in items(json)? {
        let Some(elems) = item.pointer("/set/elem").and_then(Value::as_array) else {
            continue;
        };
        for elem in elems {
            let inner = elem.get("elem").unwrap_or(elem);
            let Some(parts) = inner.pointer("/val/concat").and_then(Value::as_array) else {
                return Err(format!("an element without a concatenation: {elem}"));
            };
            let [source, destination, proto, port] = parts.as_slice() else {
                return Err(format!("an element of {} fields: {elem}", parts.len()));
            };
            let addr = |v: &Value| {
                v.as_str()
                    .and_then(|s| s.parse::<Ipv4Addr>().ok())
                    .ok_or_else(|| format!("not an address: {v}"))
            };
            let proto = match proto {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(format!("not a protocol: {other}")),
            };
            let port = match port {
                Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("not a port: {port}"))?;
            out.push(Denied {
                source: addr(source)?,
                destination: addr(destination)?,
                proto,
                port,
                packets: inner
                    .pointer("/counter/packets")
                    .and_then(Value::as_u64)
                    .unwrap_or(1),
                to_host,
            });
        }
    }
    Ok(out)
}

/// Named counters from `nft -j list counters`.
pub fn parse_counters(json: &str) -> Result<HashMap<String, u64>, String> {
    let mut out = HashMap::new();
    for item in items(json)? {
        if let Some(counter) = item.get("counter") {
            let name = counter.get("name").and_then(Value::as_str);
            let packets = counter.get("packets").and_then(Value::as_u64);
            if let (Some(name), Some(packets)) = (name, packets) {
                out.insert(name.to_string(), packets);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firewall() -> Firewall {
        Firewall::new(
            PathBuf::from("/usr/sbin/nft"),
            "prod.eu-1",
            "tc-0123456789ab",
            Ipv4Addr::new(172, 20, 0, 1),
            Ipv4Net::parse("172.20.0.0/16").unwrap(),
        )
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        assert_eq!(table_name("prod.eu-1"), "termcell_prod_eu_1");
        assert_eq!(table_name("it-abc"), "termcell_it_abc");
    }

    #[test]
    fn the_ruleset_drops_everything_but_replies_dns_and_grants() {
        let rules = firewall().ruleset();
        for line in [
            "table inet termcell_prod_eu_1 {",
            "type filter hook forward priority -1; policy accept;",
            "type filter hook input priority -1; policy accept;",
            r#"iifname "tc-0123456789ab" jump from_sessions"#,
            r#"iifname "tc-0123456789ab" jump host_from_sessions"#,
            "meta nfproto ipv6 counter name ipv6 drop",
            "ip daddr 169.254.0.0/16 jump deny",
            "ip daddr 172.20.0.0/16 jump deny",
            "ip daddr . tcp dport @granted_tcp accept",
            "ip daddr . udp dport @granted_udp accept",
            "ip daddr 172.20.0.1 udp dport 53 accept",
            "ip daddr 172.20.0.1 tcp dport 53 accept",
        ] {
            assert!(rules.contains(line), "missing {line:?} in\n{rules}");
        }
        // The grant accepts come after every always-dropped destination.
        for grant in ["@granted_tcp accept", "@granted_udp accept"] {
            let grant = rules.find(grant).unwrap();
            for earlier in ["169.254.0.0/16", "ip daddr 172.20.0.0/16", "nfproto ipv6"] {
                assert!(rules.find(earlier).unwrap() < grant, "{earlier}");
            }
        }
        // Every path out of the session chains ends in a drop.
        assert!(rules.contains("jump deny\n\t}"));
        assert!(rules.contains("counter name unrecorded drop\n\t}\n\n\tchain input"));
    }

    #[test]
    fn grants_go_to_the_set_of_their_transport() {
        let fw = firewall();
        let a = Ipv4Addr::new(198, 18, 0, 2);
        let tcp_only = fw.grant_script(&[a], &[Port::tcp(443)], Duration::from_secs(30));
        assert!(tcp_only.contains("granted_tcp { 198.18.0.2 . 443 timeout 30s }"));
        assert!(!tcp_only.contains("granted_udp"), "{tcp_only}");
        let both = fw.grant_script(
            &[a],
            &[Port::tcp(443), Port::udp(123)],
            Duration::from_secs(30),
        );
        assert!(both.contains("granted_udp { 198.18.0.2 . 123 timeout 30s }"));
        assert!(!both.contains("granted_udp { 198.18.0.2 . 443"), "{both}");
        assert!(fw
            .grant_script(&[], &[Port::tcp(1)], Duration::ZERO)
            .is_empty());
    }

    #[test]
    fn nets_contain_and_print() {
        let net = Ipv4Net::parse("172.20.5.9/16").unwrap();
        assert!(net.contains(Ipv4Addr::new(172, 20, 255, 1)));
        assert!(!net.contains(Ipv4Addr::new(172, 21, 0, 1)));
        assert_eq!(net.to_string(), "172.20.0.0/16");
        assert!(Ipv4Net::parse("1.2.3.4/33").is_none());
        assert!(Ipv4Net::parse("1.2.3.4").is_none());
        assert!(Ipv4Net::parse("0.0.0.0/0")
            .unwrap()
            .contains(Ipv4Addr::new(9, 9, 9, 9)));
    }

    #[test]
    fn drops_are_classified() {
        let subnet = Ipv4Net::parse("172.20.0.0/16").unwrap();
        let d = |dest: [u8; 4], proto: &str, port: u16, to_host: bool| Denied {
            source: Ipv4Addr::new(172, 20, 0, 2),
            destination: Ipv4Addr::from(dest),
            proto: proto.into(),
            port,
            packets: 1,
            to_host,
        };
        assert_eq!(
            d([172, 20, 0, 1], "tcp", 22, true).kind(subnet, false),
            DenyKind::Host
        );
        assert_eq!(
            d([169, 254, 169, 254], "tcp", 80, false).kind(subnet, false),
            DenyKind::Metadata
        );
        assert_eq!(
            d([172, 20, 0, 3], "tcp", 7000, false).kind(subnet, false),
            DenyKind::Session
        );
        assert_eq!(
            d([198, 18, 0, 9], "udp", 53, false).kind(subnet, false),
            DenyKind::Dns
        );
        assert_eq!(
            d([198, 18, 0, 2], "tcp", 9, false).kind(subnet, true),
            DenyKind::Port
        );
        assert_eq!(
            d([198, 18, 0, 6], "tcp", 443, false).kind(subnet, false),
            DenyKind::Address
        );
    }

    #[test]
    fn denied_sets_and_counters_parse_from_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"set": {"family": "inet", "name": "denied", "table": "t",
              "type": ["ipv4_addr", "ipv4_addr", "inet_proto", "inet_service"],
              "elem": [{"elem": {"val": {"concat": ["172.20.0.2", "198.18.0.2", "tcp", 80]},
                        "expires": 59, "counter": {"packets": 3, "bytes": 180}}}]}}]}"#;
        let denied = parse_denied(json, false).unwrap();
        assert_eq!(
            denied,
            vec![Denied {
                source: Ipv4Addr::new(172, 20, 0, 2),
                destination: Ipv4Addr::new(198, 18, 0, 2),
                proto: "tcp".into(),
                port: 80,
                packets: 3,
                to_host: false,
            }]
        );
        let empty = r#"{"nftables": [{"set": {"name": "denied"}}]}"#;
        assert!(parse_denied(empty, true).unwrap().is_empty());
        assert!(parse_denied("{}", true).is_err());
        let counters = r#"{"nftables": [{"counter": {"name": "ipv6", "packets": 4, "bytes": 1}},
            {"counter": {"name": "unrecorded", "packets": 0, "bytes": 0}}]}"#;
        let c = parse_counters(counters).unwrap();
        assert_eq!(c["ipv6"], 4);
        assert_eq!(c["unrecorded"], 0);
    }

    #[test]
    fn nft_is_found_on_path_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(find_nft(Some(dir.path().as_os_str())).is_none());
        assert!(find_nft(None).is_none());
        let fake = dir.path().join("nft");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_nft(Some(dir.path().as_os_str())), Some(fake));
    }
}

/// The firewall against the real kernel, inside a network namespace of the test's own (so
/// the host's rules are never touched). Needs root and `ip`/`nft`; skipped without them.
#[cfg(test)]
mod kernel_tests {
    use super::*;

    struct Netns {
        name: String,
        _dir: tempfile::TempDir,
        nft: PathBuf,
    }

    impl Netns {
        fn new() -> Option<Netns> {
            if !privileged() || find_nft(std::env::var_os("PATH").as_deref()).is_none() {
                return None;
            }
            let name = format!("tcnft{}", std::process::id());
            let ok = std::process::Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return None;
            }
            let dir = tempfile::tempdir().unwrap();
            let nft = dir.path().join("nft");
            std::fs::write(
                &nft,
                format!("#!/bin/sh\nexec ip netns exec {name} nft \"$@\"\n"),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&nft, std::fs::Permissions::from_mode(0o755)).unwrap();
            Some(Netns {
                name,
                _dir: dir,
                nft,
            })
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }

    #[actix_rt::test]
    async fn install_replace_grant_and_remove_on_the_kernel() {
        let Some(ns) = Netns::new() else {
            eprintln!("skipped: needs root, ip and nft");
            return;
        };
        let fw = Firewall::new(
            ns.nft.clone(),
            "kernel.test",
            "tc-kerneltest",
            Ipv4Addr::new(172, 30, 0, 1),
            Ipv4Net::parse("172.30.0.0/16").unwrap(),
        );
        fw.install().await.unwrap();
        let first = fw.listing().await.unwrap();
        // A second install (a restart after a crash) replaces the table, never adds one.
        fw.install().await.unwrap();
        let tables = run(&ns.nft, &["list", "tables"], None).await.unwrap();
        assert_eq!(
            tables.matches("termcell_kernel_test").count(),
            1,
            "{tables}"
        );
        assert_eq!(fw.listing().await.unwrap(), first);

        fw.grant(
            &[Ipv4Addr::new(198, 18, 0, 2)],
            &[Port::tcp(8443), Port::tcp(443), Port::udp(123)],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        // A re-grant extends the element instead of failing or keeping the old timeout.
        fw.grant(
            &[Ipv4Addr::new(198, 18, 0, 2)],
            &[Port::tcp(8443)],
            Duration::from_secs(90),
        )
        .await
        .unwrap();
        let listing = fw.listing().await.unwrap();
        assert!(
            listing.contains("198.18.0.2 . 8443 timeout 1m30s"),
            "{listing}"
        );
        assert!(
            listing.contains("198.18.0.2 . 443 timeout 30s"),
            "{listing}"
        );
        let udp = listing.split("set granted_udp").nth(1).unwrap();
        assert!(udp.contains("198.18.0.2 . 123 timeout 30s"), "{listing}");
        assert!(fw.denied().await.unwrap().is_empty());
        let counters = fw.counters().await.unwrap();
        assert_eq!(counters.get("ipv6"), Some(&0), "{counters:?}");

        // Deleted from outside (a firewall reload): it comes back with the grants given.
        run(&ns.nft, &["flush", "ruleset"], None).await.unwrap();
        assert!(!fw.exists().await.unwrap());
        fw.install_with(&[(
            Ipv4Addr::new(198, 18, 0, 2),
            Port::udp(123),
            Duration::from_secs(20),
        )])
        .await
        .unwrap();
        assert!(fw.exists().await.unwrap());
        let restored = fw.listing().await.unwrap();
        let udp = restored.split("set granted_udp").nth(1).unwrap();
        assert!(udp.contains("198.18.0.2 . 123 timeout 20s"), "{restored}");

        fw.remove().await.unwrap();
        assert!(!fw.exists().await.unwrap());
        let tables = run(&ns.nft, &["list", "tables"], None).await.unwrap();
        assert!(!tables.contains("termcell_kernel_test"), "{tables}");
        // Removing what is gone is not an error.
        fw.remove().await.unwrap();
    }
}
