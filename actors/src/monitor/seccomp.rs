//! Blocked system calls made visible. Docker 20.10 drops a seccomp profile's `flags`
//! (no SECCOMP_FILTER_FLAG_LOG), and a call refused with EPERM leaves no kernel record;
//! the kernel logs only killing actions (`kill_process` in
//! /proc/sys/kernel/seccomp/actions_logged) as audit records of type 1326, which reach
//! the kernel log when no audit daemon takes them. So, when the operator asks for it, the
//! most dangerous calls the profile refuses kill the calling process instead, each session
//! container's first process sets its audit login uid to an id of the container (inherited
//! by every process of the session, and not changeable without CAP_AUDIT_CONTROL), and a
//! thread reads the kernel log and hands each record to the monitor, which names the
//! session. Invariant: a call the profile allows is never made fatal, and nothing is
//! claimed visible that this host does not show.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::OnceLock;

use actix::prelude::*;
use bollard::models::ContainerCreateBody;
use serde_json::{json, Value};

use super::MonitorActor;

/// The calls that kill their caller when audited: namespaces, mounts, tracing other
/// processes, kernel keys, eBPF and the kernel's own administration (x86_64 numbers, to
/// name the records).
pub const DANGEROUS: &[(&str, u32)] = &[
    ("ptrace", 101),
    ("pivot_root", 155),
    ("mount", 165),
    ("umount2", 166),
    ("swapon", 167),
    ("swapoff", 168),
    ("reboot", 169),
    ("init_module", 175),
    ("delete_module", 176),
    ("kexec_load", 246),
    ("add_key", 248),
    ("request_key", 249),
    ("keyctl", 250),
    ("unshare", 272),
    ("perf_event_open", 298),
    ("open_by_handle_at", 304),
    ("setns", 308),
    ("process_vm_readv", 310),
    ("process_vm_writev", 311),
    ("finit_module", 313),
    ("kexec_file_load", 320),
    ("bpf", 321),
    ("userfaultfd", 323),
    ("open_tree", 428),
    ("move_mount", 429),
    ("fsopen", 430),
    ("fsconfig", 431),
    ("fsmount", 432),
    ("mount_setattr", 442),
];

/// The audit architecture of x86_64 (`AUDIT_ARCH_X86_64`), as records print it.
const ARCH_X86_64: &str = "c000003e";
/// The login uid of a process that never set one.
const UNSET_LOGIN_UID: u32 = u32::MAX;

/// The profile with the dangerous calls it does not allow made fatal, and their names.
/// Calls the profile allows (under any condition) are left alone.
pub fn killing_profile(json: &str) -> Result<(String, Vec<String>), serde_json::Error> {
    let mut profile: Value = serde_json::from_str(json)?;
    let allowed: Vec<&str> = profile["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| rule["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|rule| rule["names"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let killed: Vec<String> = DANGEROUS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !allowed.contains(name))
        .map(String::from)
        .collect();
    if let Some(rules) = profile["syscalls"].as_array_mut() {
        rules.push(json!({
            "names": killed,
            "action": "SCMP_ACT_KILL_PROCESS",
            "comment": "termcell --syscall-audit: fatal, so that the kernel logs them",
        }));
    }
    Ok((serde_json::to_string(&profile)?, killed))
}

/// Makes the container's first process set its audit login uid to `audit_id` before it
/// runs the command in `body`; if it cannot (the engine's processes already carry a login
/// uid), the session still starts and its records count as unattributed. Needs `/bin/sh`
/// in the image and replaces the image's
/// entrypoint; an entrypoint given at create drops the image's command too, so a body
/// without a command runs `/bin/sh` (the default image's command; `--shell` names another).
pub fn tag(body: &mut ContainerCreateBody, audit_id: u32) {
    let mut entrypoint = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("{{ echo {audit_id} > /proc/self/loginuid; }} 2>/dev/null; exec \"$@\""),
        "termcell".into(),
    ];
    // An entrypoint already set (the entry program) runs after the tag, with the command.
    match body.entrypoint.take() {
        Some(inner) if !inner.is_empty() => entrypoint.extend(inner),
        _ => {
            body.cmd.get_or_insert_with(|| vec!["/bin/sh".into()]);
        }
    }
    body.entrypoint = Some(entrypoint);
}

/// One kernel record of a call a seccomp filter killed.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Blocked {
    /// The audit login uid: the container's audit id for a session's process.
    pub audit_id: u32,
    /// The call's name, or `<arch>:<number>` for one this table does not name.
    pub syscall: String,
    /// The program that made it (as the process named itself).
    pub comm: String,
}

/// Reads one kernel log record (`/dev/kmsg` or `dmesg` form); `None` unless it is a
/// seccomp record (audit type 1326) of a process with a login uid.
pub fn parse_record(line: &str) -> Option<Blocked> {
    let body = &line[line.find("type=1326")?..];
    let value = |key: &str| {
        body.split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
    };
    let audit_id: u32 = value("auid")?.parse().ok()?;
    if audit_id == UNSET_LOGIN_UID {
        return None;
    }
    let number: u32 = value("syscall")?.parse().ok()?;
    let arch = value("arch").unwrap_or("?");
    let syscall = DANGEROUS
        .iter()
        .find(|(_, n)| *n == number && arch == ARCH_X86_64)
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| format!("{arch}:{number}"));
    let comm = value("comm").unwrap_or("?").trim_matches('"').to_string();
    Some(Blocked {
        audit_id,
        syscall,
        comm,
    })
}

/// Whether this host shows killed calls to the server, and why not when it does not.
pub fn host_visibility() -> &'static Result<(), String> {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let logged = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_logged")
            .map_err(|e| format!("cannot read /proc/sys/kernel/seccomp/actions_logged: {e}"))?;
        if !logged.split_whitespace().any(|a| a == "kill_process") {
            return Err(format!(
                "the kernel does not log killed calls (actions_logged: {})",
                logged.trim()
            ));
        }
        File::open("/dev/kmsg").map_err(|e| format!("cannot read the kernel log /dev/kmsg: {e}"))?;
        if audit_daemon_runs() {
            return Err(
                "an audit daemon (auditd) takes the kernel's audit records: they do not reach the kernel log".into(),
            );
        }
        Ok(())
    })
}

fn audit_daemon_runs() -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.trim() == "auditd")
        })
}

/// Starts the thread that reads the kernel log from its end and hands every seccomp
/// record to the monitor; it ends when the monitor is gone.
pub fn watch_kernel_log(monitor: Addr<MonitorActor>) -> std::io::Result<()> {
    let mut kmsg = File::open("/dev/kmsg")?;
    kmsg.seek(SeekFrom::End(0))?;
    std::thread::Builder::new()
        .name("termcell-kmsg".into())
        .spawn(move || {
            // /dev/kmsg hands out one record per read.
            let mut buf = vec![0u8; 8192];
            loop {
                match kmsg.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        let Some(blocked) = parse_record(&String::from_utf8_lossy(&buf[..n]))
                        else {
                            continue;
                        };
                        if monitor.try_send(blocked).is_err() && !monitor.connected() {
                            return;
                        }
                    }
                    // EPIPE: records were overwritten before we read them; go on.
                    Err(e) if e.raw_os_error() == Some(32) => continue,
                    Err(e) => {
                        log::error!("reading the kernel log failed ({e}); blocked system calls are no longer audited");
                        return;
                    }
                }
            }
        })?;
    Ok(())
}
