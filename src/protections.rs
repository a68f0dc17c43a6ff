//! Which protections this host enforces: logged at start and served on /ready and the
//! admin API. Claims only what is enforced (Docker accepts AppArmor options silently on
//! hosts without AppArmor).

use serde::Serialize;
use termcell_actors::docker::HostSecurity;
use termcell_actors::monitor::seccomp;
use termcell_actors::network::guard::RestrictedNet;
use termcell_actors::profile::SecurityProfile;
use termcell_actors::runtime::Runtime;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Protection {
    pub name: &'static str,
    pub enforced: bool,
    pub detail: String,
}

pub fn report(
    host: &HostSecurity,
    profile: &SecurityProfile,
    runtime: &Runtime,
    network: Option<&RestrictedNet>,
) -> Vec<Protection> {
    // gVisor applies the profile's seccomp filter inside its sandbox only with --oci-seccomp
    // (without it, runsc ignores the filter and the sentry's own filter is all there is).
    let oci_seccomp = runtime
        .args
        .iter()
        .any(|a| a.trim_start_matches('-') == "oci-seccomp");
    let seccomp = host.seccomp && (!runtime.user_space_kernel || oci_seccomp);
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
            seccomp,
            if !host.seccomp {
                "the engine reports no seccomp support: syscalls are NOT filtered".into()
            } else if !seccomp {
                format!(
                    "gVisor runtime {} without --oci-seccomp: the allowlist is NOT applied inside the sandbox (gVisor's own host filter still is)",
                    runtime.name
                )
            } else if runtime.user_space_kernel {
                "termcell allowlist applied by gVisor inside the sandbox (--oci-seccomp), x86_64 entry only, socket families filtered".into()
            } else {
                "termcell allowlist, x86_64 entry only, socket families filtered".into()
            },
        ),
        p("user_space_kernel", runtime.user_space_kernel, runtime.describe()),
        p(
            "resource_limits",
            true,
            format!(
                "memory {} MiB (no swap), {} CPU, {} processes{}",
                profile.memory_bytes / (1024 * 1024),
                profile.nano_cpus as f64 / 1e9,
                profile.pids_limit,
                if runtime.user_space_kernel {
                    format!(
                        " (gVisor: the host limits the whole sandbox, its user-space kernel included, to {} tasks; at the memory or task limit the sandbox is killed instead of one process being refused)",
                        profile.host_pids_limit()
                    )
                } else {
                    String::new()
                }
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
        blocked_syscalls(host, profile, runtime),
        p(
            "credentials_out_of_config",
            profile.entry.is_some(),
            match &profile.entry {
                Some(path) => format!("the session's environment is written to {path} over the TTY: never in docker inspect or events"),
                None => "the image has no termcell-entry: session credentials are in the container's config, readable with docker inspect (rebuild the default image, or add the program to yours: docs/security.md)".into(),
            },
        ),
        p(
            "cgroup",
            true,
            format!("cgroup v{}", if host.cgroup_version.is_empty() { "?" } else { &host.cgroup_version }),
        ),
    ]
}

/// Whether refused system calls are seen and audited per session (`--syscall-audit`).
fn blocked_syscalls(
    host: &HostSecurity,
    profile: &SecurityProfile,
    runtime: &Runtime,
) -> Protection {
    let killed = &profile.killed_syscalls;
    let (enforced, detail) = if killed.is_empty() {
        (
            false,
            "not visible: refused system calls fail with EPERM and leave no kernel record termcell can read (--syscall-audit makes the most dangerous ones fatal and audited)".to_string(),
        )
    } else if !host.seccomp {
        (
            false,
            "not visible: the engine reports no seccomp support".to_string(),
        )
    } else if runtime.user_space_kernel {
        (
            false,
            format!("not visible: gVisor runtime {} handles system calls in its own kernel, which the host's kernel log does not show", runtime.name),
        )
    } else {
        match seccomp::host_visibility() {
            Ok(()) => (
                true,
                format!(
                    "{} refused calls kill their caller and are audited per session (security.seccomp): {}",
                    killed.len(),
                    killed.join(", ")
                ),
            ),
            Err(why) => (
                false,
                format!("not visible: {why}; the {} calls still kill their caller, unaudited", killed.len()),
            ),
        }
    };
    Protection {
        name: "blocked_syscalls_audited",
        enforced,
        detail,
    }
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
        let report = report(&host, &profile, &Runtime::runc(), None);
        let get = |name| report.iter().find(|p| p.name == name).unwrap();
        assert!(get("seccomp").enforced);
        assert!(!get("apparmor").enforced);
        assert!(get("apparmor").detail.contains("unavailable"));
        assert!(!get("user_namespaces").enforced);
        assert!(get("network_isolation").enforced);
        assert!(!get("user_space_kernel").enforced);
        assert!(!apparmor_profile_usable(&host, "termcell-sandbox"));
    }

    #[test]
    fn gvisor_is_a_user_space_kernel_and_its_seccomp_needs_oci_seccomp() {
        let host = HostSecurity {
            seccomp: true,
            ..Default::default()
        };
        let profile = SecurityProfile {
            user_space_kernel: true,
            ..Default::default()
        };
        let gvisor = |args: &[&str]| Runtime {
            name: "runsc".into(),
            path: "/usr/bin/runsc".into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            user_space_kernel: true,
        };
        let with = report(
            &host,
            &profile,
            &gvisor(&["--network=none", "--oci-seccomp"]),
            None,
        );
        let get = |r: &[Protection], name| r.iter().find(|p| p.name == name).unwrap().clone();
        assert!(get(&with, "user_space_kernel").enforced);
        assert!(get(&with, "seccomp").enforced);
        assert!(get(&with, "seccomp").detail.contains("gVisor"));
        // The limits hold the whole sandbox, and the report says how.
        let limits = get(&with, "resource_limits").detail;
        assert!(limits.contains("50 processes"), "{limits}");
        assert!(limits.contains("to 564 tasks"), "{limits}");
        assert!(limits.contains("the sandbox is killed"), "{limits}");
        let without = report(&host, &profile, &gvisor(&["--network=none"]), None);
        assert!(!get(&without, "seccomp").enforced);
        assert!(get(&without, "seccomp").detail.contains("--oci-seccomp"));
    }
}
