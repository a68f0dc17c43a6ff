//! Which protections this host enforces: logged at start and served on /ready and the
//! admin API. Claims only what is enforced (Docker accepts AppArmor options silently on
//! hosts without AppArmor).

use serde::Serialize;
use termcell_actors::docker::HostSecurity;
use termcell_actors::network::guard::RestrictedNet;
use termcell_actors::profile::SecurityProfile;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Protection {
    pub name: &'static str,
    pub enforced: bool,
    pub detail: String,
}

pub fn report(
    host: &HostSecurity,
    profile: &SecurityProfile,
    network: Option<&RestrictedNet>,
) -> Vec<Protection> {
    let p = |name, enforced, detail: String| Protection {
        name,
        enforced,
        detail,
    };
    vec![
        p("read_only_rootfs", true, "root filesystem read-only; /tmp, /run noexec tmpfs".into()),
        p("capabilities", true, "all dropped, none added; no-new-privileges".into()),
        p(
            "seccomp",
            host.seccomp,
            if host.seccomp {
                "termcell allowlist, x86_64 entry only, socket families filtered".into()
            } else {
                "the engine reports no seccomp support: syscalls are NOT filtered".into()
            },
        ),
        p(
            "resource_limits",
            true,
            format!(
                "memory {} MiB (no swap), {} CPU, {} processes",
                profile.memory_bytes / (1024 * 1024),
                profile.nano_cpus as f64 / 1e9,
                profile.pids_limit
            ),
        ),
        match network {
            Some(net) => p(
                "network_isolation",
                true,
                format!(
                    "restricted network {}: egress only to {} (nftables table inet {}, DNS only through termcell's resolver {})",
                    net.info.name,
                    net.config.allow.describe().join(", "),
                    net.firewall.table,
                    net.resolver_addr
                ),
            ),
            None => p(
                "network_isolation",
                profile.network_mode == "none",
                if profile.network_mode == "none" {
                    "network mode none".to_string()
                } else {
                    format!(
                        "network mode {}: an operator's network, whose egress termcell does not restrict",
                        profile.network_mode
                    )
                },
            ),
        },
        p("non_root_user", profile.uid != 0, format!("uid {} gid {}", profile.uid, profile.gid)),
        p(
            "apparmor",
            profile.apparmor_profile.is_some(),
            match (&profile.apparmor_profile, host.apparmor) {
                (Some(name), _) => format!("profile {name}"),
                (None, true) => "host has AppArmor but the termcell-sandbox profile is not loaded (docker/install-apparmor.sh); docker-default applies".into(),
                (None, false) => "unavailable: this host's kernel does not enforce AppArmor".into(),
            },
        ),
        p(
            "user_namespaces",
            host.userns_remap,
            if host.userns_remap {
                "daemon remaps container users (userns-remap)".into()
            } else {
                "not enabled in the daemon: container uids are host uids (see docs/security.md)".into()
            },
        ),
        p(
            "cgroup",
            true,
            format!("cgroup v{}", if host.cgroup_version.is_empty() { "?" } else { &host.cgroup_version }),
        ),
    ]
}

/// The network mode, its allowlist and whether termcell enforces it (for /ready).
pub fn network_status(
    profile: &SecurityProfile,
    network: Option<&RestrictedNet>,
) -> serde_json::Value {
    match network {
        Some(net) => net.report(),
        None => serde_json::json!({
            "mode": profile.network_mode,
            "enforced": profile.network_mode == "none",
        }),
    }
}

/// AppArmor is applied only when the host enforces it and our profile is loaded.
pub fn apparmor_profile_usable(host: &HostSecurity, name: &str) -> bool {
    host.apparmor
        && std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
            .map(|loaded| {
                loaded
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(name))
            })
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_what_the_host_cannot_enforce() {
        let host = HostSecurity {
            seccomp: true,
            apparmor: false,
            userns_remap: false,
            cgroup_version: "1".into(),
            ..Default::default()
        };
        let profile = SecurityProfile {
            apparmor_profile: None,
            ..Default::default()
        };
        let report = report(&host, &profile, None);
        let get = |name| report.iter().find(|p| p.name == name).unwrap();
        assert!(get("seccomp").enforced);
        assert!(!get("apparmor").enforced);
        assert!(get("apparmor").detail.contains("unavailable"));
        assert!(!get("user_namespaces").enforced);
        assert!(get("network_isolation").enforced);
        assert!(!apparmor_profile_usable(&host, "termcell-sandbox"));
    }
}
