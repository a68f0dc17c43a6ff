//! termcell-probe: runs inside a sandbox container and checks the security profile from
//! inside, one `PASS|FAIL|SKIP <check>: <detail>` line per property; exit 1 on any FAIL.

mod checks;
mod parse;
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;

use checks::{Check, Ctx, Verdict};

/// Every check, in the order it runs. The fork bomb and OOM checks come late so their
/// leftovers (if any) cannot disturb the cheaper checks.
const CHECKS: &[(&str, Check)] = &[
    ("only-std-fds", checks::only_std_fds),
    ("capabilities", checks::capabilities),
    ("no-new-privs", checks::no_new_privs),
    ("seccomp-filter", checks::seccomp_mode),
    ("non-root", checks::non_root),
    ("rootfs-read-only", checks::root_read_only),
    ("tmp-tmpfs", checks::tmp_tmpfs),
    ("run-tmpfs", checks::run_tmpfs),
    ("config-dir-tmpfs", checks::config_dir_tmpfs),
    ("config-dir-private", checks::config_dir_private),
    ("tmp-noexec", checks::tmp_noexec),
    ("pids-limit", checks::pids_limit),
    ("memory-limit", checks::memory_limit),
    ("swap-limit", checks::swap_limit),
    ("cpu-quota", checks::cpu_quota),
    ("deny-unshare-user", checks::unshare_user),
    ("deny-unshare-mount", checks::unshare_mount),
    ("deny-setns", checks::setns),
    ("deny-mount", checks::mount),
    ("deny-umount2", checks::umount2),
    ("deny-pivot-root", checks::pivot_root),
    ("deny-chroot", checks::chroot),
    ("deny-ptrace", checks::ptrace_traceme),
    ("deny-process-vm-readv", checks::process_vm_readv),
    ("deny-keyctl", checks::keyctl),
    ("deny-add-key", checks::add_key),
    ("deny-bpf", checks::bpf),
    ("deny-userfaultfd", checks::userfaultfd),
    ("deny-perf-event-open", checks::perf_event_open),
    ("deny-io-uring-setup", checks::io_uring_setup),
    ("deny-memfd-create", checks::memfd_create),
    ("deny-kexec-load", checks::kexec_load),
    ("deny-init-module", checks::init_module),
    ("deny-iopl", checks::iopl),
    ("deny-open-by-handle-at", checks::open_by_handle_at),
    ("deny-syslog", checks::syslog),
    ("deny-swapon", checks::swapon),
    ("deny-acct", checks::acct),
    ("deny-clock-settime", checks::clock_settime),
    ("deny-sethostname", checks::sethostname),
    ("deny-mknod-char", checks::mknod_char_device),
    ("deny-setuid-0", checks::setuid_root),
    ("deny-clone-newuser", checks::clone_newuser),
    ("deny-personality-linux32", checks::personality_linux32),
    ("deny-i386-socketcall", checks::i386_socketcall),
    ("deny-socket-packet", checks::socket_packet),
    ("deny-socket-netlink", checks::socket_netlink),
    ("deny-socket-inet-raw", checks::socket_inet_raw),
    ("deny-socket-alg", checks::socket_alg),
    ("deny-socket-vsock", checks::socket_vsock),
    ("sockets-inet-unix-work", checks::sockets_allowed),
    ("net-loopback-only", checks::net_loopback_only),
    ("net-restricted-host-dropped", checks::net::host_dropped),
    (
        "net-restricted-metadata-dropped",
        checks::net::metadata_dropped,
    ),
    ("net-restricted-no-ipv6", checks::net::no_ipv6),
    (
        "net-restricted-resolver-refuses",
        checks::net::resolver_refuses_names,
    ),
    (
        "net-restricted-system-resolver-refuses",
        checks::net::system_resolver_refuses_names,
    ),
    ("proc-keys-masked", checks::proc_keys_masked),
    ("proc-timer-list-masked", checks::proc_timer_list_masked),
    ("proc-sys-read-only", checks::proc_sys_read_only),
    ("cgroupfs-read-only", checks::cgroupfs_read_only),
    ("no-runtime-socket", checks::no_runtime_socket),
    ("no-setid-files", checks::no_setid_files),
    ("dev-standard-only", checks::dev_standard_only),
    ("fork-bomb-held", checks::fork_bomb_held),
    ("oom-kill", checks::oom_kill),
];

/// What gVisor does differently, for the checks that fail under it for that reason alone:
/// such a failure is printed as `NOTE` with this statement and what the check saw, never as
/// a pass. Any other failure stays a FAIL.
const GVISOR_DIFFERS: &[(&str, &str)] = &[
    (
        "tmp-tmpfs",
        "gVisor's mount table shows no nosuid or nodev on its own tmpfs",
    ),
    (
        "run-tmpfs",
        "gVisor's mount table shows no nosuid or nodev on its own tmpfs",
    ),
    (
        "config-dir-tmpfs",
        "gVisor's mount table shows no nosuid or nodev on its own tmpfs",
    ),
    (
        "pids-limit",
        "gVisor shows no cgroup files inside; the host limits the whole sandbox (its kernel's threads included), and at the limit the sandbox is killed",
    ),
    (
        "memory-limit",
        "gVisor shows no cgroup files inside; the host limits the whole sandbox, and at the limit the sandbox is killed",
    ),
    (
        "cpu-quota",
        "gVisor shows no cgroup files inside; the host's CPU quota applies to the whole sandbox",
    ),
    (
        "deny-i386-socketcall",
        "the i386 entry reaches gVisor's own socketcall: the socket is one of the user-space kernel's network stack, not the host kernel's",
    ),
    (
        "dev-standard-only",
        "gVisor adds /dev/fuse and /dev/net/tun, both served by the user-space kernel",
    ),
];

/// Checks not run under gVisor: the host's limits end the whole sandbox (and this probe
/// with it) where Linux refuses one process.
const GVISOR_NOT_RUN: &[(&str, &str)] = &[
    (
        "fork-bomb-held",
        "not run: under gVisor a fork bomb ends the whole sandbox at the host's task limit instead of failing forks",
    ),
    (
        "oom-kill",
        "not run: under gVisor the memory limit kills the whole sandbox instead of one process",
    ),
];

fn gvisor_statement(table: &[(&str, &'static str)], name: &str) -> Option<&'static str> {
    table.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

fn env_u64(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}: not a number: {v:?}")),
        Err(_) => Ok(default),
    }
}

fn context(extra_fds_at_start: Vec<i32>) -> Result<Ctx, String> {
    let config_dir = std::env::var_os("TERMCELL_PROBE_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/home/user".into());
            PathBuf::from(home).join(".ably")
        });
    let cpus = std::env::var("TERMCELL_PROBE_CPUS").unwrap_or_else(|_| "1".into());
    // TERMCELL_PROBE_NETWORK=restricted:GATEWAY when the sandbox is on the restricted network.
    let network = match std::env::var("TERMCELL_PROBE_NETWORK") {
        Ok(v) => {
            let gateway = v
                .strip_prefix("restricted:")
                .and_then(|g| g.parse().ok())
                .ok_or_else(|| format!("TERMCELL_PROBE_NETWORK: not restricted:ADDRESS: {v:?}"))?;
            Some(checks::net::Restricted { gateway })
        }
        Err(_) => None,
    };
    Ok(Ctx {
        config_dir,
        pids: env_u64("TERMCELL_PROBE_PIDS", 50)?,
        memory: env_u64("TERMCELL_PROBE_MEMORY", 256 << 20)?,
        millicpus: parse::parse_millicpus(&cpus)
            .ok_or_else(|| format!("TERMCELL_PROBE_CPUS: not a CPU count: {cpus:?}"))?,
        extra_fds_at_start,
        network,
        gvisor: std::env::var("TERMCELL_PROBE_RUNTIME").as_deref() == Ok("gvisor"),
    })
}

fn main() -> ExitCode {
    // Taken first, before anything here opens a file.
    let fds = checks::open_fds_above_2();
    // The copy of the probe that `tmp-noexec` tries to run lands here if exec works.
    if std::env::args().nth(1).as_deref() == Some("--exec-test") {
        return ExitCode::SUCCESS;
    }
    let ctx = match context(fds) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("termcell-probe: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut passed, mut failed, mut skipped, mut noted) = (0, 0, 0, 0);
    for (name, check) in CHECKS {
        if ctx.gvisor {
            if let Some(statement) = gvisor_statement(GVISOR_NOT_RUN, name) {
                noted += 1;
                println!("NOTE {name}: gVisor: {statement}");
                continue;
            }
        }
        let differs = gvisor_statement(GVISOR_DIFFERS, name).filter(|_| ctx.gvisor);
        match (check(&ctx), differs) {
            (Verdict::Fail(d), Some(statement)) => {
                noted += 1;
                println!("NOTE {name}: gVisor: {statement} (saw: {d})");
            }
            (Verdict::Pass(d), _) => {
                passed += 1;
                println!("PASS {name}: {d}");
            }
            (Verdict::Fail(d), None) => {
                failed += 1;
                println!("FAIL {name}: {d}");
            }
            (Verdict::Skip(d), _) => {
                skipped += 1;
                println!("SKIP {name}: {d}");
            }
        }
    }
    println!(
        "probe: {passed} passed, {failed} failed, {skipped} skipped, {noted} differ under gVisor"
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_are_unique_and_kebab_case() {
        let mut names: Vec<&str> = CHECKS.iter().map(|(n, _)| *n).collect();
        assert!(names.iter().all(|n| n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')));
        names.sort();
        let len = names.len();
        names.dedup();
        assert_eq!(names.len(), len);
    }

    #[test]
    fn every_gvisor_statement_names_a_check() {
        for (name, _) in GVISOR_DIFFERS.iter().chain(GVISOR_NOT_RUN) {
            assert!(CHECKS.iter().any(|(n, _)| n == name), "{name}");
        }
    }
}
