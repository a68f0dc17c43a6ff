//! The sandbox security profile: the one place that decides every security-relevant
//! setting of a session container. Pure: config in, Docker create body out.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits, RestartPolicy,
    RestartPolicyNameEnum,
};

/// The seccomp allowlist shipped with termcell (docker/seccomp.json).
pub const BUNDLED_SECCOMP: &str = include_str!("../../docker/seccomp.json");

/// The label keys every container of ours carries; the reaper and the tests select by them.
pub mod labels {
    pub const MANAGED_BY: &str = "termcell.managed-by";
    pub const MANAGED_BY_VALUE: &str = "termcell";
    pub const DEPLOYMENT: &str = "termcell.deployment";
    pub const INSTANCE: &str = "termcell.instance";
    pub const SESSION: &str = "termcell.session";
    pub const CREATED_AT: &str = "termcell.created-at";
    /// A warm pool sandbox (instead of `SESSION`): its value is the pool's name for it.
    pub const POOL: &str = "termcell.pool";
}

/// The detach sequence set on every attach: a user never types it (the default
/// ctrl-p,ctrl-q would let a user detach the stream).
pub const DETACH_KEYS: &str = "ctrl-^,ctrl-@,ctrl-^,ctrl-@";

#[derive(Debug, Clone, PartialEq)]
pub struct SecurityProfile {
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub tmp_size: String,
    pub run_size: String,
    /// Absolute path of the CLI config directory (a 0700 tmpfs owned by the user).
    pub config_dir: Option<String>,
    pub config_dir_size: String,
    pub uid: u32,
    pub gid: u32,
    /// The seccomp profile as JSON text (passed inline: a path fails at start).
    pub seccomp_json: String,
    /// Refused calls that kill their caller, so that the kernel logs them
    /// (`--syscall-audit`); empty: every refused call fails with EPERM.
    pub killed_syscalls: Vec<String>,
    /// AppArmor profile name, applied only when the host enforces AppArmor.
    pub apparmor_profile: Option<String>,
    pub network_mode: String,
    /// DNS servers of the sandbox (the restricted network's resolver); empty: Docker's.
    pub dns: Vec<String>,
    pub nofile: i64,
    /// Log driver settings: `None` means driver `none`; `Some(size)` json-file with max-size.
    pub log_max_size: Option<String>,
    /// The OCI runtime (`runc`, or `runsc` for gVisor), as checked against the engine.
    pub runtime: String,
    /// The runtime is gVisor: the host's cgroups hold the sentry as well as the session's
    /// processes (see [`SecurityProfile::host_pids_limit`]).
    pub user_space_kernel: bool,
    /// The image's entry program (sandbox/entry), when it has one: the container's command,
    /// to which the session's environment (its credentials) is written over the TTY, so
    /// that it is never in the container's config (`docker inspect`, events). `None`: the
    /// environment goes in the config (an operator's image without the program).
    pub entry: Option<String>,
}

/// Under gVisor's ptrace platform the host's pids cgroup counts the sentry's threads and a
/// stub per guest thread: about 66 tasks for the init, a shell and one command, and 9 to 10
/// more for each further process (measured with runsc 2022-12 on Docker 20.10). The host
/// limit is the session's limit in those units, so that `pids_limit` processes fit and a
/// fork bomb still ends at the host's limit (by killing the sandbox, not by a failed fork).
pub const GVISOR_PIDS_BASE: i64 = 64;
pub const GVISOR_PIDS_PER_PROCESS: i64 = 10;

impl Default for SecurityProfile {
    fn default() -> Self {
        SecurityProfile {
            memory_bytes: 256 * 1024 * 1024,
            nano_cpus: 1_000_000_000,
            pids_limit: 50,
            tmp_size: "64m".into(),
            run_size: "32m".into(),
            config_dir: Some("/home/user/.ably".into()),
            config_dir_size: "1m".into(),
            uid: 1000,
            gid: 1000,
            seccomp_json: BUNDLED_SECCOMP.to_string(),
            killed_syscalls: Vec::new(),
            apparmor_profile: None,
            network_mode: "none".into(),
            dns: Vec::new(),
            nofile: 1024,
            log_max_size: None,
            runtime: "runc".into(),
            user_space_kernel: false,
            entry: None,
        }
    }
}

/// What a single container needs besides the profile.
#[derive(Debug, Clone)]
pub struct ContainerSpec<'a> {
    pub image: &'a str,
    /// Replaces the image's entrypoint (the entry program); `None` keeps the image's.
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub cols: u16,
    pub rows: u16,
}

impl SecurityProfile {
    /// The pids limit of the container's host cgroup: `pids_limit`, or under gVisor room for
    /// that many guest processes beside the sentry's own threads.
    pub fn host_pids_limit(&self) -> i64 {
        if self.user_space_kernel {
            GVISOR_PIDS_BASE + GVISOR_PIDS_PER_PROCESS * self.pids_limit
        } else {
            self.pids_limit
        }
    }

    /// The HostConfig every session container gets.
    pub fn host_config(&self) -> HostConfig {
        let mut tmpfs = HashMap::new();
        tmpfs.insert(
            "/tmp".to_string(),
            format!("rw,noexec,nosuid,nodev,size={}", self.tmp_size),
        );
        tmpfs.insert(
            "/run".to_string(),
            format!("rw,noexec,nosuid,nodev,size={}", self.run_size),
        );
        if let Some(dir) = &self.config_dir {
            tmpfs.insert(
                dir.clone(),
                format!(
                    "rw,noexec,nosuid,nodev,size={},mode=0700,uid={},gid={}",
                    self.config_dir_size, self.uid, self.gid
                ),
            );
        }
        let mut security_opt = vec![
            "no-new-privileges".to_string(),
            format!("seccomp={}", self.seccomp_json),
        ];
        if let Some(profile) = &self.apparmor_profile {
            security_opt.push(format!("apparmor={profile}"));
        }
        let log_config = match &self.log_max_size {
            None => HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            },
            Some(size) => HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), size.clone()),
                    ("max-file".to_string(), "1".to_string()),
                ])),
            },
        };
        HostConfig {
            readonly_rootfs: Some(true),
            tmpfs: Some(tmpfs),
            pids_limit: Some(self.host_pids_limit()),
            memory: Some(self.memory_bytes),
            memory_swap: Some(self.memory_bytes),
            nano_cpus: Some(self.nano_cpus),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: None,
            privileged: Some(false),
            security_opt: Some(security_opt),
            network_mode: Some(self.network_mode.clone()),
            runtime: Some(self.runtime.clone()),
            dns: (!self.dns.is_empty()).then(|| self.dns.clone()),
            // No search domains or options of the host's leak into the sandbox.
            dns_search: (!self.dns.is_empty()).then(Vec::new),
            dns_options: (!self.dns.is_empty()).then(Vec::new),
            init: Some(true),
            ulimits: Some(vec![
                ResourcesUlimits {
                    name: Some("nofile".into()),
                    soft: Some(self.nofile),
                    hard: Some(self.nofile),
                },
                ResourcesUlimits {
                    name: Some("core".into()),
                    soft: Some(0),
                    hard: Some(0),
                },
            ]),
            log_config: Some(log_config),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            auto_remove: Some(false),
            // Never empty lists: an empty MaskedPaths removes Docker's masks.
            masked_paths: None,
            readonly_paths: None,
            binds: None,
            mounts: None,
            port_bindings: None,
            publish_all_ports: Some(false),
            devices: None,
            ipc_mode: Some("private".into()),
            pid_mode: None,
            oom_kill_disable: Some(false),
            ..Default::default()
        }
    }

    /// The full create body for one container.
    pub fn create_body(&self, spec: &ContainerSpec<'_>) -> ContainerCreateBody {
        let mut host_config = self.host_config();
        host_config.console_size = Some(vec![spec.rows as usize, spec.cols as usize]);
        ContainerCreateBody {
            image: Some(spec.image.to_string()),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.cmd.clone(),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            user: Some(format!("{}:{}", self.uid, self.gid)),
            tty: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(false),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            network_disabled: Some(self.network_mode == "none"),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}

/// Rewrites the seccomp profile's architecture list to the native architecture on hosts
/// that are not x86_64 (the bundled profile lists x86_64 only, on purpose: listing i386
/// would open the compat syscall entry).
pub fn seccomp_for_native_arch(json: &str) -> Result<String, serde_json::Error> {
    let native = match std::env::consts::ARCH {
        "x86_64" => return Ok(json.to_string()),
        "aarch64" => "SCMP_ARCH_AARCH64",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "s390x" => "SCMP_ARCH_S390X",
        "powerpc64" => "SCMP_ARCH_PPC64LE",
        _ => return Ok(json.to_string()),
    };
    let mut value: serde_json::Value = serde_json::from_str(json)?;
    value["architectures"] = serde_json::json!([native]);
    serde_json::to_string(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec<'static> {
        ContainerSpec {
            image: "termcell-sandbox:latest",
            entrypoint: None,
            cmd: None,
            env: vec!["TERM=xterm-256color".into()],
            labels: HashMap::from([(labels::SESSION.to_string(), "abc".to_string())]),
            cols: 100,
            rows: 30,
        }
    }

    #[test]
    fn filesystem_is_read_only_with_noexec_tmpfs() {
        let hc = SecurityProfile::default().host_config();
        assert_eq!(hc.readonly_rootfs, Some(true));
        let tmpfs = hc.tmpfs.unwrap();
        assert_eq!(tmpfs["/tmp"], "rw,noexec,nosuid,nodev,size=64m");
        assert_eq!(tmpfs["/run"], "rw,noexec,nosuid,nodev,size=32m");
        assert_eq!(
            tmpfs["/home/user/.ably"],
            "rw,noexec,nosuid,nodev,size=1m,mode=0700,uid=1000,gid=1000"
        );
    }

    #[test]
    fn config_dir_can_be_turned_off() {
        let profile = SecurityProfile {
            config_dir: None,
            ..Default::default()
        };
        assert_eq!(profile.host_config().tmpfs.unwrap().len(), 2);
    }

    #[test]
    fn under_gvisor_the_host_pids_limit_leaves_room_for_the_sentry() {
        let gvisor = SecurityProfile {
            user_space_kernel: true,
            runtime: "runsc".into(),
            ..Default::default()
        };
        // 50 guest processes at about 10 host tasks each, beside the sentry's own.
        assert_eq!(gvisor.host_config().pids_limit, Some(564));
        assert_eq!(gvisor.host_config().runtime.as_deref(), Some("runsc"));
        // Everything else is the same profile.
        let runc = SecurityProfile::default().host_config();
        assert_eq!(gvisor.host_config().memory, runc.memory);
        assert_eq!(gvisor.host_config().security_opt, runc.security_opt);
    }

    #[test]
    fn resources_are_limited_and_swap_is_off() {
        let hc = SecurityProfile::default().host_config();
        assert_eq!(hc.pids_limit, Some(50));
        assert_eq!(hc.memory, Some(268_435_456));
        assert_eq!(hc.memory_swap, hc.memory);
        assert_eq!(hc.nano_cpus, Some(1_000_000_000));
        assert_eq!(hc.oom_kill_disable, Some(false));
        let ulimits = hc.ulimits.unwrap();
        assert!(ulimits
            .iter()
            .any(|u| u.name.as_deref() == Some("core") && u.hard == Some(0)));
        assert!(ulimits
            .iter()
            .any(|u| u.name.as_deref() == Some("nofile") && u.hard == Some(1024)));
        assert!(!ulimits.iter().any(|u| u.name.as_deref() == Some("nproc")));
    }

    #[test]
    fn privileges_are_dropped() {
        let hc = SecurityProfile::default().host_config();
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.cap_add, None);
        assert_eq!(hc.privileged, Some(false));
        let opts = hc.security_opt.unwrap();
        assert!(opts.contains(&"no-new-privileges".to_string()));
        let seccomp = opts.iter().find(|o| o.starts_with("seccomp=")).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(seccomp.trim_start_matches("seccomp=")).unwrap();
        assert_eq!(
            json["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64"])
        );
        assert!(!opts.iter().any(|o| o.starts_with("apparmor=")));
    }

    #[test]
    fn apparmor_only_when_configured() {
        let profile = SecurityProfile {
            apparmor_profile: Some("termcell-sandbox".into()),
            ..Default::default()
        };
        let opts = profile.host_config().security_opt.unwrap();
        assert!(opts.contains(&"apparmor=termcell-sandbox".to_string()));
    }

    #[test]
    fn network_none_and_nothing_from_the_host() {
        let hc = SecurityProfile::default().host_config();
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert!(hc.binds.is_none() && hc.mounts.is_none() && hc.devices.is_none());
        assert!(hc.port_bindings.is_none());
        assert_eq!(hc.publish_all_ports, Some(false));
        assert!(hc.masked_paths.is_none() && hc.readonly_paths.is_none());
        assert_eq!(hc.init, Some(true));
        assert_eq!(
            hc.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
    }

    #[test]
    fn logs_are_bounded() {
        let hc = SecurityProfile::default().host_config();
        assert_eq!(hc.log_config.unwrap().typ.as_deref(), Some("none"));
        let profile = SecurityProfile {
            log_max_size: Some("1m".into()),
            ..Default::default()
        };
        let log = profile.host_config().log_config.unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        assert_eq!(log.config.unwrap()["max-size"], "1m");
    }

    #[test]
    fn create_body_is_a_non_root_tty() {
        let body = SecurityProfile::default().create_body(&spec());
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(body.tty, Some(true));
        assert_eq!(body.open_stdin, Some(true));
        assert_eq!(body.stdin_once, Some(false));
        assert_eq!(body.network_disabled, Some(true));
        assert_eq!(body.labels.unwrap()[labels::SESSION], "abc");
        assert_eq!(
            body.host_config.unwrap().console_size,
            Some(vec![30usize, 100])
        );
    }

    #[test]
    fn serialized_body_never_sends_empty_mask_lists() {
        let body = SecurityProfile::default().create_body(&spec());
        let json = serde_json::to_value(&body).unwrap();
        let hc = &json["HostConfig"];
        assert!(hc.get("MaskedPaths").is_none() || hc["MaskedPaths"].is_null());
        assert!(hc.get("ReadonlyPaths").is_none() || hc["ReadonlyPaths"].is_null());
        assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]));
    }
}
