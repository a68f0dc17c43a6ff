//! The egress allowlist: `HOST[:PORT][/udp]` rules, exact names or `*.example.com`
//! wildcards, TCP unless a rule says `/udp`. Pure: parsing and matching only; the resolver
//! asks it, the firewall enforces its answers.

use std::fmt;

/// The port a rule gets when it names none.
pub const DEFAULT_PORT: u16 = 443;

/// Which names a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    /// Exactly this name (lower case, no trailing dot).
    Exact(String),
    /// `*.suffix`: any name with at least one more label in front of `suffix` (never
    /// `suffix` itself).
    Subdomains(String),
}

/// The transport a rule opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The name nftables and the audit log use.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A port of one transport: `443` (TCP) or `123/udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub proto: Proto,
    pub number: u16,
}

impl Port {
    pub const fn tcp(number: u16) -> Port {
        Port {
            proto: Proto::Tcp,
            number,
        }
    }

    pub const fn udp(number: u16) -> Port {
        Port {
            proto: Proto::Udp,
            number,
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proto {
            Proto::Tcp => write!(f, "{}", self.number),
            Proto::Udp => write!(f, "{}/udp", self.number),
        }
    }
}

/// One allowed destination: a name pattern and a port (TCP unless the rule says `/udp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    pub name: NamePattern,
    pub port: Port,
}

/// Why a rule was refused, for the configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule:?}: {why}")]
pub struct RuleError {
    pub rule: String,
    pub why: &'static str,
}

/// A name as DNS compares it: lower case, without the root's trailing dot.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn valid_hostname(name: &str) -> bool {
    name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl EgressRule {
    /// `api.example.com`, `api.example.com:8443`, `*.example.com`, `*.example.com:443`,
    /// `time.example.com:123/udp`.
    pub fn parse(text: &str) -> Result<EgressRule, RuleError> {
        let refuse = |why| RuleError {
            rule: text.to_string(),
            why,
        };
        let mut text_trimmed = text.trim();
        let mut proto = Proto::Tcp;
        if let Some((front, transport)) = text_trimmed.rsplit_once('/') {
            proto = match transport.to_ascii_lowercase().as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                _ => return Err(refuse("the transport after '/' is tcp or udp")),
            };
            text_trimmed = front;
        }
        let (host, number) = match text_trimmed.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| refuse("the port is a number from 1 to 65535"))?;
                (host, port)
            }
            None => (text_trimmed, DEFAULT_PORT),
        };
        let host = normalize(host);
        if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
            return Err(refuse(
                "name a host, not an address: addresses are allowed by what the name resolves to",
            ));
        }
        let name = match host.strip_prefix("*.") {
            Some(suffix) => {
                if !valid_hostname(suffix) || !suffix.contains('.') {
                    return Err(refuse(
                        "a wildcard covers the subdomains of a name with a dot, e.g. *.example.com",
                    ));
                }
                NamePattern::Subdomains(suffix.to_string())
            }
            None => {
                if host.contains('*') || !valid_hostname(&host) {
                    return Err(refuse(
                        "a host name (letters, digits, '-', '_' and dots) or *.name",
                    ));
                }
                NamePattern::Exact(host)
            }
        };
        Ok(EgressRule {
            name,
            port: Port { proto, number },
        })
    }

    /// Whether this rule covers `name` (already normalized).
    pub fn covers(&self, name: &str) -> bool {
        match &self.name {
            NamePattern::Exact(exact) => exact == name,
            NamePattern::Subdomains(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|front| front.len() > 1 && front.ends_with('.')),
        }
    }
}

impl fmt::Display for EgressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            NamePattern::Exact(name) => write!(f, "{name}:{}", self.port),
            NamePattern::Subdomains(suffix) => write!(f, "*.{suffix}:{}", self.port),
        }
    }
}

/// The whole allowlist. Empty allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressAllow {
    rules: Vec<EgressRule>,
}

impl EgressAllow {
    pub fn new(rules: Vec<EgressRule>) -> EgressAllow {
        EgressAllow { rules }
    }

    /// A comma-separated list, as `--egress-allow` takes it. Blank entries are skipped.
    pub fn parse_list(text: &str) -> Result<EgressAllow, RuleError> {
        let rules = text
            .split(',')
            .filter(|entry| !entry.trim().is_empty())
            .map(EgressRule::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EgressAllow { rules })
    }

    pub fn rules(&self) -> &[EgressRule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The ports `name` may be reached on, sorted, without repeats; empty when the name is
    /// not allowed at all.
    pub fn ports_for(&self, name: &str) -> Vec<Port> {
        let name = normalize(name);
        let mut ports: Vec<Port> = self
            .rules
            .iter()
            .filter(|rule| rule.covers(&name))
            .map(|rule| rule.port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Every rule as text, for reports.
    pub fn describe(&self) -> Vec<String> {
        self.rules.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(text: &str) -> EgressAllow {
        EgressAllow::parse_list(text).unwrap()
    }

    #[test]
    fn exact_names_with_and_without_a_port() {
        let a = allow("rest.ably.io, realtime.ably.io:8443");
        assert_eq!(a.ports_for("rest.ably.io"), vec![Port::tcp(443)]);
        assert_eq!(a.ports_for("REST.Ably.io."), vec![Port::tcp(443)]);
        assert_eq!(a.ports_for("realtime.ably.io"), vec![Port::tcp(8443)]);
        assert!(a.ports_for("ably.io").is_empty());
        assert!(a.ports_for("x.rest.ably.io").is_empty());
        assert!(a.ports_for("rest.ably.io.evil.test").is_empty());
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        let a = allow("*.ably-realtime.com");
        assert_eq!(a.ports_for("main.ably-realtime.com"), vec![Port::tcp(443)]);
        assert_eq!(a.ports_for("a.b.ably-realtime.com"), vec![Port::tcp(443)]);
        assert!(a.ports_for("ably-realtime.com").is_empty());
        assert!(a.ports_for("evilably-realtime.com").is_empty());
        assert!(a.ports_for(".ably-realtime.com").is_empty());
    }

    #[test]
    fn ports_are_merged_across_rules() {
        let a = allow("api.x.test:443,*.x.test:8443,api.x.test:443");
        assert_eq!(
            a.ports_for("api.x.test"),
            vec![Port::tcp(443), Port::tcp(8443)]
        );
        assert_eq!(a.ports_for("other.x.test"), vec![Port::tcp(8443)]);
        assert_eq!(
            a.describe(),
            vec!["api.x.test:443", "*.x.test:8443", "api.x.test:443"]
        );
    }

    #[test]
    fn udp_only_where_a_rule_says_so() {
        let a = allow("time.x.test:123/udp,api.x.test:443/TCP,*.x.test:443/udp");
        assert_eq!(
            a.ports_for("time.x.test"),
            vec![Port::udp(123), Port::udp(443)]
        );
        assert_eq!(
            a.ports_for("api.x.test"),
            vec![Port::tcp(443), Port::udp(443)]
        );
        assert_eq!(
            a.describe(),
            vec!["time.x.test:123/udp", "api.x.test:443", "*.x.test:443/udp"]
        );
        // A rule's text round-trips through its description.
        for rule in a.rules() {
            assert_eq!(&EgressRule::parse(&rule.to_string()).unwrap(), rule);
        }
    }

    #[test]
    fn bad_rules_say_why() {
        for bad in [
            "10.0.0.1",
            "10.0.0.1:443",
            "[::1]:443",
            "*",
            "*.com",
            "a.*.test",
            "api.test:0",
            "api.test:99999",
            "api.test:",
            "bad_name!.test",
            "-lead.test",
            "sp ace.test",
            "api.test:53/icmp",
            "api.test/",
            "10.0.0.0/8",
        ] {
            let err = EgressRule::parse(bad).unwrap_err();
            assert!(!err.why.is_empty(), "{bad}");
        }
        assert!(EgressAllow::parse_list("").unwrap().is_empty());
        assert!(EgressAllow::parse_list(" , ").unwrap().is_empty());
    }
}
