//! Pure parsers for the kernel's text interfaces the probe reads (/proc/self/status,
//! /proc/self/mountinfo, /proc/net/dev, /proc/net/if_inet6, cgroup limit files,
//! resolv.conf), and the one DNS query the network checks send. No I/O here.

/// The value of a `Key:\tvalue` line in /proc/self/status, trimmed.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// A capability set (`CapEff` etc.) from /proc/self/status, parsed from hex.
pub fn cap_set(status: &str, key: &str) -> Option<u64> {
    u64::from_str_radix(status_field(status, key)?, 16).ok()
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: String,
    /// Per-mount options (field 6): `ro`/`rw`, `nosuid`, `nodev`, `noexec`, ...
    pub mount_opts: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options (after the separator): `size=...`, `mode=...`, `uid=...`.
    pub super_opts: Vec<String>,
}

impl Mount {
    pub fn has_opt(&self, opt: &str) -> bool {
        self.mount_opts.iter().any(|o| o == opt) || self.super_opts.iter().any(|o| o == opt)
    }

    /// The value of a `key=value` superblock option, e.g. `size`.
    pub fn super_opt(&self, key: &str) -> Option<&str> {
        self.super_opts
            .iter()
            .find_map(|o| o.strip_prefix(key)?.strip_prefix('='))
    }

    pub fn read_only(&self) -> bool {
        self.mount_opts.first().map(String::as_str) == Some("ro")
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
pub fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one mountinfo line; `None` if it is malformed.
pub fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let fields: Vec<&str> = left.split(' ').collect();
    if fields.len() < 6 {
        return None;
    }
    let mut right = right.split(' ');
    let fstype = right.next()?.to_string();
    let source = unescape_octal(right.next()?);
    let super_opts = right.next().unwrap_or("");
    Some(Mount {
        mount_point: unescape_octal(fields[4]),
        mount_opts: fields[5].split(',').map(str::to_string).collect(),
        fstype,
        source,
        super_opts: super_opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

/// The mount visible at `path`: the last entry for that mount point (later mounts
/// stack on top of earlier ones).
pub fn mount_at<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let path = path.trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    mounts.iter().rev().find(|m| m.mount_point == path)
}

/// A tmpfs `size=` option in bytes (`65536k`, `64m`, `1g`, or plain bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Interface names from /proc/net/dev (after its two header lines).
pub fn net_dev_interfaces(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_string()))
        .filter(|n| !n.is_empty())
        .collect()
}

/// The global-scope addresses (scope 00) of /proc/net/if_inet6, as its hex text.
pub fn global_ipv6_addresses(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6 && f[3] == "00").then(|| format!("{} on {}", f[0], f[5]))
        })
        .collect()
}

/// The first `nameserver` of a resolv.conf.
pub fn first_nameserver(text: &str) -> Option<std::net::IpAddr> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("nameserver")).then_some(())?;
        words.next()?.parse().ok()
    })
}

/// A DNS query (RFC 1035 §4.1) for the A record of `name`, recursion desired. The probe
/// sends only this fixed shape and reads back only the header.
pub fn dns_query_a(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The response code of a reply to query `id`: `None` when it is not a response to it.
pub fn dns_reply_rcode(reply: &[u8], id: u16) -> Option<u8> {
    let header = reply.get(..4)?;
    let is_response = header[2] & 0x80 != 0;
    (u16::from_be_bytes([header[0], header[1]]) == id && is_response).then_some(header[3] & 0x0f)
}

/// A cgroup limit: the literal `max` (no limit) or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Max,
    Value(u64),
}

pub fn parse_limit(s: &str) -> Option<Limit> {
    match s.trim() {
        "max" => Some(Limit::Max),
        v => v.parse().ok().map(Limit::Value),
    }
}

/// A CPU quota in thousandths of a CPU; `None` means unlimited.
/// v1 gives quota and period in two files (quota `-1` = unlimited); v2's `cpu.max`
/// holds `"<quota|max> <period>"`.
pub fn millicpus_v1(quota: &str, period: &str) -> Option<Option<u64>> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: u64 = period.trim().parse().ok()?;
    if period == 0 {
        return None;
    }
    Some(u64::try_from(quota).ok().map(|q| q * 1000 / period))
}

pub fn millicpus_v2(cpu_max: &str) -> Option<Option<u64>> {
    let mut it = cpu_max.split_whitespace();
    let quota = it.next()?;
    let period: u64 = it.next()?.parse().ok()?;
    if period == 0 {
        return None;
    }
    match quota {
        "max" => Some(None),
        q => Some(Some(q.parse::<u64>().ok()? * 1000 / period)),
    }
}

/// Parses a CPU count such as `1`, `0.5` or `2.25` into thousandths of a CPU.
pub fn parse_millicpus(s: &str) -> Option<u64> {
    let (int, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if frac.len() > 3 || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac_val: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    int.checked_mul(1000)?.checked_add(frac_val)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\ttermcell-probe\nUmask:\t0022\nState:\tR (running)\n\
Uid:\t1000\t1000\t1000\t1000\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
CapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n\
NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";

    #[test]
    fn status_caps_and_flags() {
        assert_eq!(cap_set(STATUS, "CapEff"), Some(0));
        assert_eq!(cap_set(STATUS, "CapBnd"), Some(0xa80425fb));
        assert_eq!(cap_set(STATUS, "CapNope"), None);
        assert_eq!(status_field(STATUS, "NoNewPrivs"), Some("1"));
        // "Seccomp" must not match "Seccomp_filters".
        assert_eq!(status_field(STATUS, "Seccomp"), Some("2"));
        assert_eq!(status_field(STATUS, "Seccomp_filters"), Some("1"));
    }

    const MOUNTINFO: &str = "\
600 500 0:50 / / ro,relatime master:1 - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c
601 600 0:53 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
610 600 0:60 / /sys/fs/cgroup/pids ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,pids
620 600 0:70 / /tmp rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=65536k
621 600 0:71 / /home/user/.ably rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=1024k,mode=700,uid=1000,gid=1000
622 600 0:72 / /with\\040space rw shared:3 master:2 - tmpfs tmpfs rw
623 620 0:73 / /tmp rw,relatime - tmpfs tmpfs rw,size=8k
";

    #[test]
    fn mountinfo_fields() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 7);
        let root = mount_at(&mounts, "/").unwrap();
        assert!(root.read_only());
        assert_eq!(root.fstype, "overlay");
        let cg = mount_at(&mounts, "/sys/fs/cgroup/pids").unwrap();
        assert_eq!(cg.fstype, "cgroup");
        assert!(cg.read_only());
        let ably = mount_at(&mounts, "/home/user/.ably/").unwrap();
        assert!(ably.has_opt("noexec") && ably.has_opt("nosuid") && ably.has_opt("nodev"));
        assert_eq!(ably.super_opt("size"), Some("1024k"));
        assert_eq!(ably.super_opt("mode"), Some("700"));
        assert_eq!(ably.super_opt("uid"), Some("1000"));
        assert_eq!(ably.super_opt("gid"), Some("1000"));
        assert_eq!(ably.super_opt("si"), None);
        // Optional fields (shared:, master:) are skipped; escapes are decoded.
        assert!(mount_at(&mounts, "/with space").is_some());
    }

    #[test]
    fn mount_at_takes_the_top_of_a_stack() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let tmp = mount_at(&mounts, "/tmp").unwrap();
        assert_eq!(tmp.super_opt("size"), Some("8k"));
        assert!(!tmp.has_opt("noexec"));
    }

    #[test]
    fn malformed_mountinfo_lines_are_dropped() {
        assert!(parse_mountinfo_line("garbage").is_none());
        assert!(parse_mountinfo_line("1 2 3 - tmpfs").is_none());
    }

    #[test]
    fn octal_unescape() {
        assert_eq!(unescape_octal(r"a\040b\011c\134d"), "a b\tc\\d");
        assert_eq!(unescape_octal(r"trail\04"), r"trail\04");
        assert_eq!(unescape_octal(r"\999"), r"\999");
        assert_eq!(unescape_octal(r"\"), r"\");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536k"), Some(64 << 20));
        assert_eq!(parse_size("32m"), Some(32 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive                  |  Transmit\n face |bytes    packets\n    lo:       0       0    0    0\n  eth0: 1 2 3\n";
        assert_eq!(net_dev_interfaces(text), vec!["lo", "eth0"]);
        assert!(net_dev_interfaces("h1\nh2\n").is_empty());
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit("max\n"), Some(Limit::Max));
        assert_eq!(parse_limit("50\n"), Some(Limit::Value(50)));
        assert_eq!(parse_limit("-1"), None);
    }

    #[test]
    fn cpu_quota() {
        assert_eq!(millicpus_v1("100000\n", "100000\n"), Some(Some(1000)));
        assert_eq!(millicpus_v1("50000", "100000"), Some(Some(500)));
        assert_eq!(millicpus_v1("-1", "100000"), Some(None));
        assert_eq!(millicpus_v1("x", "100000"), None);
        assert_eq!(millicpus_v1("1", "0"), None);
        assert_eq!(millicpus_v2("100000 100000\n"), Some(Some(1000)));
        assert_eq!(millicpus_v2("max 100000"), Some(None));
        assert_eq!(millicpus_v2("max"), None);
    }

    #[test]
    fn cpu_counts() {
        assert_eq!(parse_millicpus("1"), Some(1000));
        assert_eq!(parse_millicpus("0.5"), Some(500));
        assert_eq!(parse_millicpus("2.25"), Some(2250));
        assert_eq!(parse_millicpus(".5"), Some(500));
        assert_eq!(parse_millicpus("1.0001"), None);
        assert_eq!(parse_millicpus("abc"), None);
        assert_eq!(parse_millicpus("."), None);
    }

    #[test]
    fn global_ipv6_addresses_only() {
        let text = "00000000000000000000000000000001 01 80 10 80       lo\n\
                    fe800000000000000042acfffe110002 2d 40 20 80     eth0\n\
                    20010db8000000000000000000000002 2d 40 00 80     eth0\n";
        assert_eq!(
            global_ipv6_addresses(text),
            vec!["20010db8000000000000000000000002 on eth0"]
        );
        assert!(global_ipv6_addresses("").is_empty());
    }

    #[test]
    fn the_first_nameserver() {
        let conf = "search x\nnameserver 127.0.0.11\nnameserver 10.0.0.1\noptions ndots:0\n";
        assert_eq!(first_nameserver(conf), Some("127.0.0.11".parse().unwrap()));
        assert_eq!(first_nameserver("search x\n"), None);
    }

    #[test]
    fn a_query_and_its_reply_code() {
        let q = dns_query_a(0x1234, "probe.termcell.invalid");
        assert_eq!(&q[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..18], b"\x05probe");
        assert_eq!(&q[q.len() - 5..], &[0, 0, 1, 0, 1]);
        let mut reply = q.clone();
        reply[2] |= 0x80;
        reply[3] = 0x83;
        assert_eq!(dns_reply_rcode(&reply, 0x1234), Some(3));
        assert_eq!(dns_reply_rcode(&reply, 0x4321), None);
        assert_eq!(dns_reply_rcode(&q, 0x1234), None, "a query is not a reply");
        assert_eq!(dns_reply_rcode(&[0x12], 0x1234), None);
    }
}
