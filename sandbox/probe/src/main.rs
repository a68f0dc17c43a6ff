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
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, check) in CHECKS {
        match check(&ctx) {
            Verdict::Pass(d) => {
                passed += 1;
                println!("PASS {name}: {d}");
            }
            Verdict::Fail(d) => {
                failed += 1;
                println!("FAIL {name}: {d}");
            }
            Verdict::Skip(d) => {
                skipped += 1;
                println!("SKIP {name}: {d}");
            }
        }
    }
    println!("probe: {passed} passed, {failed} failed, {skipped} skipped");
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
}
