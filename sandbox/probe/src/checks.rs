//! The probe's checks, one small function per property of the sandbox profile; each
//! returns a verdict and never panics the probe (risky calls run in forked children).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub mod net;

use crate::parse::{self, Limit, Mount};
use crate::sys::{self, denied, errno_name, in_child, signal_name, syscall_code, ChildEnd};

/// Pass, fail or skip, with a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass(String),
    Fail(String),
    Skip(String),
}

impl Verdict {
    fn of(ok: bool, detail: impl Into<String>) -> Verdict {
        if ok {
            Verdict::Pass(detail.into())
        } else {
            Verdict::Fail(detail.into())
        }
    }
}

/// What the checks expect, from the environment, plus facts captured at start.
pub struct Ctx {
    pub config_dir: PathBuf,
    pub pids: u64,
    pub memory: u64,
    pub millicpus: u64,
    /// Descriptors above 2 that were open when the probe started.
    pub extra_fds_at_start: Vec<i32>,
    /// The restricted network, when the sandbox is on it (otherwise: no network).
    pub network: Option<net::Restricted>,
    /// The sandbox runs under gVisor (`TERMCELL_PROBE_RUNTIME=gvisor`).
    pub gvisor: bool,
}

pub type Check = fn(&Ctx) -> Verdict;

fn read(path: &str) -> io::Result<String> {
    fs::read_to_string(path)
}

fn status() -> Result<String, Verdict> {
    read("/proc/self/status").map_err(|e| Verdict::Fail(format!("/proc/self/status: {e}")))
}

fn mounts() -> Result<Vec<Mount>, Verdict> {
    read("/proc/self/mountinfo")
        .map(|t| parse::parse_mountinfo(&t))
        .map_err(|e| Verdict::Fail(format!("/proc/self/mountinfo: {e}")))
}

fn io_errno(e: &io::Error) -> String {
    e.raw_os_error()
        .map(errno_name)
        .unwrap_or_else(|| e.to_string())
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in literal paths")
}

// ---- credentials ----------------------------------------------------------------

pub fn capabilities(_: &Ctx) -> Verdict {
    let status = match status() {
        Ok(s) => s,
        Err(v) => return v,
    };
    let mut bad = Vec::new();
    let mut asked = Vec::new();
    for key in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        match parse::cap_set(&status, key) {
            Some(0) => {}
            Some(v) => bad.push(format!("{key}={v:016x}")),
            // gVisor's status has no CapAmb line: ask the kernel for each capability.
            None if key == "CapAmb" => match ambient_caps() {
                Ok(Some(0)) => asked.push(" (CapAmb asked with prctl)"),
                Ok(Some(v)) => bad.push(format!("CapAmb={v:016x}")),
                Ok(None) => {
                    asked.push(" (this kernel has no ambient set: PR_CAP_AMBIENT is EINVAL)")
                }
                Err(e) => bad.push(format!("CapAmb missing, prctl: {e}")),
            },
            None => bad.push(format!("{key} missing")),
        }
    }
    Verdict::of(
        bad.is_empty(),
        if bad.is_empty() {
            format!("CapEff, CapPrm, CapBnd, CapAmb all 0{}", asked.concat())
        } else {
            bad.join(", ")
        },
    )
}

/// The ambient set as a mask, from `prctl(PR_CAP_AMBIENT_IS_SET)` for each capability the
/// kernel knows (up to the first one it calls invalid); `None` when the kernel has no
/// ambient set at all (gVisor).
fn ambient_caps() -> Result<Option<u64>, String> {
    let mut mask = 0u64;
    for cap in 0..64u64 {
        // SAFETY: a query with integer arguments.
        let r =
            unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_IS_SET, cap, 0, 0) };
        match r {
            0 => {}
            1 => mask |= 1 << cap,
            _ if io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) => {
                return Ok((cap > 0).then_some(mask));
            }
            _ => return Err(io_errno(&io::Error::last_os_error())),
        }
    }
    Ok(Some(mask))
}

fn status_flag(key: &str, want: &str) -> Verdict {
    match status() {
        Ok(s) => match parse::status_field(&s, key) {
            Some(v) => Verdict::of(v == want, format!("{key}: {v} (want {want})")),
            None => Verdict::Fail(format!("{key} missing from /proc/self/status")),
        },
        Err(v) => v,
    }
}

pub fn no_new_privs(_: &Ctx) -> Verdict {
    match status_flag("NoNewPrivs", "1") {
        // gVisor's status has no NoNewPrivs line: ask the kernel.
        Verdict::Fail(d) if d.contains("missing") => {
            // SAFETY: a query with integer arguments.
            let r = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
            Verdict::of(r == 1, format!("PR_GET_NO_NEW_PRIVS: {r} (want 1; {d})"))
        }
        v => v,
    }
}

pub fn seccomp_mode(_: &Ctx) -> Verdict {
    status_flag("Seccomp", "2")
}

pub fn non_root(_: &Ctx) -> Verdict {
    // SAFETY: these getters cannot fail.
    let ids = unsafe {
        [
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        ]
    };
    let detail = format!(
        "uid={} euid={} gid={} egid={}",
        ids[0], ids[1], ids[2], ids[3]
    );
    Verdict::of(ids.iter().all(|&i| i != 0), detail)
}

// ---- filesystem -----------------------------------------------------------------

pub fn root_read_only(_: &Ctx) -> Verdict {
    let path = "/.termcell-probe-write-test";
    match fs::File::create(path) {
        Ok(_) => {
            let _ = fs::remove_file(path);
            Verdict::Fail("created a file in /".into())
        }
        // EACCES: this user may not write / anyway, so the mount must say read-only.
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => match mounts() {
            Ok(m) => {
                let ro = parse::mount_at(&m, "/").is_some_and(|m| m.has_opt("ro"));
                Verdict::of(
                    ro,
                    format!(
                        "write to / failed with EACCES; the root mount is {}",
                        if ro { "ro" } else { "not ro" }
                    ),
                )
            }
            Err(v) => v,
        },
        Err(e) => Verdict::of(
            e.raw_os_error() == Some(libc::EROFS),
            format!("write to / failed with {}", io_errno(&e)),
        ),
    }
}

fn tmpfs_check(path: &Path) -> Verdict {
    let mounts = match mounts() {
        Ok(m) => m,
        Err(v) => return v,
    };
    let Some(m) = parse::mount_at(&mounts, &path.to_string_lossy()) else {
        return Verdict::Fail(format!("{} is not a mount point", path.display()));
    };
    let missing: Vec<&str> = ["nosuid", "nodev", "noexec"]
        .into_iter()
        .filter(|o| !m.has_opt(o))
        .collect();
    let size = m
        .super_opt("size")
        .and_then(parse::parse_size)
        .map(|b| format!("size={}KiB", b / 1024))
        .unwrap_or_else(|| "no size limit".into());
    let ok = m.fstype == "tmpfs" && missing.is_empty() && m.super_opt("size").is_some();
    let mut detail = format!("{} {} {}", m.fstype, m.mount_opts.join(","), size);
    if !missing.is_empty() {
        detail.push_str(&format!(" (missing {})", missing.join(",")));
    }
    Verdict::of(ok, detail)
}

pub fn tmp_tmpfs(_: &Ctx) -> Verdict {
    tmpfs_check(Path::new("/tmp"))
}

pub fn run_tmpfs(_: &Ctx) -> Verdict {
    tmpfs_check(Path::new("/run"))
}

pub fn config_dir_tmpfs(ctx: &Ctx) -> Verdict {
    match tmpfs_check(&ctx.config_dir) {
        Verdict::Pass(d) => Verdict::Pass(format!("{}: {d}", ctx.config_dir.display())),
        Verdict::Fail(d) => Verdict::Fail(format!("{}: {d}", ctx.config_dir.display())),
        v => v,
    }
}

pub fn config_dir_private(ctx: &Ctx) -> Verdict {
    let meta = match fs::metadata(&ctx.config_dir) {
        Ok(m) => m,
        Err(e) => return Verdict::Fail(format!("{}: {e}", ctx.config_dir.display())),
    };
    // SAFETY: cannot fail.
    let uid = unsafe { libc::getuid() };
    let mode = meta.permissions().mode() & 0o7777;
    Verdict::of(
        mode == 0o700 && meta.uid() == uid,
        format!(
            "{} mode {mode:04o} owner {} (want 0700 owner {uid})",
            ctx.config_dir.display(),
            meta.uid()
        ),
    )
}

pub fn tmp_noexec(ctx: &Ctx) -> Verdict {
    let dst = "/tmp/.termcell-probe-exec";
    if let Err(e) = fs::copy("/proc/self/exe", dst) {
        return Verdict::Fail(format!("copy to /tmp: {e}"));
    }
    let _ = fs::set_permissions(dst, fs::Permissions::from_mode(0o755));
    let result = std::process::Command::new(dst).arg("--exec-test").status();
    let _ = fs::remove_file(dst);
    match result {
        Ok(s) => Verdict::Fail(format!("a binary copied to /tmp ran ({s})")),
        // gVisor refuses an exec from a noexec mount with EPERM.
        Err(e) => Verdict::of(
            e.raw_os_error() == Some(libc::EACCES)
                || (ctx.gvisor && e.raw_os_error() == Some(libc::EPERM)),
            format!("exec from /tmp failed with {}", io_errno(&e)),
        ),
    }
}

// ---- cgroup limits --------------------------------------------------------------

fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn read_limit(path: &str) -> Result<Limit, String> {
    let text = read(path).map_err(|e| format!("{path}: {e}"))?;
    parse::parse_limit(&text).ok_or_else(|| format!("{path}: unexpected {:?}", text.trim()))
}

fn limit_is(path: &str, want: u64) -> (bool, String) {
    match read_limit(path) {
        Ok(Limit::Value(v)) => (v == want, format!("{path}={v}")),
        Ok(Limit::Max) => (false, format!("{path}=max")),
        Err(e) => (false, e),
    }
}

pub fn pids_limit(ctx: &Ctx) -> Verdict {
    let path = if cgroup_v2() {
        "/sys/fs/cgroup/pids.max"
    } else {
        "/sys/fs/cgroup/pids/pids.max"
    };
    let (ok, d) = limit_is(path, ctx.pids);
    Verdict::of(ok, format!("{d} (want {})", ctx.pids))
}

pub fn memory_limit(ctx: &Ctx) -> Verdict {
    let path = if cgroup_v2() {
        "/sys/fs/cgroup/memory.max"
    } else {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    };
    let (ok, d) = limit_is(path, ctx.memory);
    Verdict::of(ok, format!("{d} (want {})", ctx.memory))
}

pub fn swap_limit(ctx: &Ctx) -> Verdict {
    // v2 counts swap separately (0 = no swap); v1's memsw counts memory plus swap.
    let (path, want) = if cgroup_v2() {
        ("/sys/fs/cgroup/memory.swap.max", 0)
    } else {
        (
            "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
            ctx.memory,
        )
    };
    if !Path::new(path).exists() {
        return Verdict::Skip(format!("{path} absent (swap accounting off on this host)"));
    }
    let (ok, d) = limit_is(path, want);
    Verdict::of(ok, format!("{d} (want {want})"))
}

pub fn cpu_quota(ctx: &Ctx) -> Verdict {
    let parsed = if cgroup_v2() {
        read("/sys/fs/cgroup/cpu.max")
            .map_err(|e| format!("cpu.max: {e}"))
            .and_then(|t| parse::millicpus_v2(&t).ok_or(format!("cpu.max: {:?}", t.trim())))
    } else {
        let q = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
        let p = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
        match (q, p) {
            (Ok(q), Ok(p)) => parse::millicpus_v1(&q, &p).ok_or(format!("cfs {q:?}/{p:?}")),
            (Err(e), _) | (_, Err(e)) => Err(format!("cpu.cfs_*: {e}")),
        }
    };
    match parsed {
        Ok(Some(m)) => Verdict::of(
            m == ctx.millicpus,
            format!("{m} millicpus (want {})", ctx.millicpus),
        ),
        Ok(None) => Verdict::Fail("no CPU quota".into()),
        Err(e) => Verdict::Fail(e),
    }
}

/// Forks sleeping children until fork fails; all of them are killed and reaped after.
pub fn fork_bomb_held(_: &Ctx) -> Verdict {
    const CAP: usize = 60;
    let mut children = Vec::new();
    let mut failure = None;
    while children.len() < CAP {
        // SAFETY: single-threaded; the child only sleeps until killed.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                libc::alarm(30);
                loop {
                    libc::pause();
                }
            }
        }
        if pid < 0 {
            failure = Some(sys::errno());
            break;
        }
        children.push(pid);
    }
    for &pid in &children {
        // SAFETY: our own children.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for &pid in &children {
        let _ = sys::wait(pid);
    }
    match failure {
        Some(e) => Verdict::of(
            e == libc::EAGAIN,
            format!(
                "fork failed with {} after {} children",
                errno_name(e),
                children.len()
            ),
        ),
        None => Verdict::Fail(format!("{CAP} children forked without hitting a limit")),
    }
}

pub fn oom_kill(_: &Ctx) -> Verdict {
    const SIZE: usize = 512 << 20;
    let end = in_child(60, || {
        // SAFETY: anonymous private mapping; every page is written inside its bounds.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return sys::errno();
            }
            let p = p.cast::<u8>();
            for off in (0..SIZE).step_by(4096) {
                std::ptr::write_volatile(p.add(off), 1);
            }
        }
        0
    });
    match end {
        Ok(ChildEnd::Signaled(libc::SIGKILL)) => {
            Verdict::Pass("a child touching 512 MiB was killed (SIGKILL)".into())
        }
        Ok(ChildEnd::Exited(0)) => Verdict::Fail("a child touched 512 MiB and exited".into()),
        Ok(ChildEnd::Exited(e)) => Verdict::Fail(format!("mmap failed: {}", errno_name(e))),
        Ok(ChildEnd::Signaled(s)) => Verdict::Fail(format!("child died by {}", signal_name(s))),
        Err(e) => Verdict::Fail(format!("fork: {e}")),
    }
}

// ---- syscalls that must be refused ----------------------------------------------

/// A syscall attempt run in a child; returns the raw syscall result.
pub type Attempt = fn() -> libc::c_long;

/// Runs `attempt` in a child and judges the outcome as a syscall that must be refused.
pub fn refused(attempt: Attempt) -> Verdict {
    let (ok, detail) = denied(in_child(10, || syscall_code(attempt())));
    Verdict::of(ok, detail)
}

macro_rules! refused_check {
    ($name:ident, $body:expr) => {
        pub fn $name(_: &Ctx) -> Verdict {
            refused($body)
        }
    };
}

const NONEXISTENT: &str = "/.termcell-probe-nonexistent";

// Targets that do not exist make the call harmless even where nothing refuses it: it
// then fails with ENOENT, which the verdict reports as "reached the kernel".
refused_check!(unshare_user, || unsafe {
    libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER)
});
refused_check!(unshare_mount, || unsafe {
    libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS)
});
refused_check!(setns, || unsafe {
    let fd = libc::open(c"/proc/self/ns/uts".as_ptr(), libc::O_RDONLY);
    libc::syscall(libc::SYS_setns, fd, libc::CLONE_NEWUTS)
});
refused_check!(mount, || unsafe {
    let target = cstr(NONEXISTENT);
    libc::syscall(
        libc::SYS_mount,
        c"none".as_ptr(),
        target.as_ptr(),
        c"tmpfs".as_ptr(),
        0,
        std::ptr::null::<u8>(),
    )
});
refused_check!(umount2, || unsafe {
    let target = cstr(NONEXISTENT);
    libc::syscall(libc::SYS_umount2, target.as_ptr(), libc::MNT_DETACH)
});
refused_check!(pivot_root, || unsafe {
    let p = cstr(NONEXISTENT);
    libc::syscall(libc::SYS_pivot_root, p.as_ptr(), p.as_ptr())
});
refused_check!(chroot, || unsafe {
    let p = cstr(NONEXISTENT);
    libc::syscall(libc::SYS_chroot, p.as_ptr())
});
refused_check!(ptrace_traceme, || unsafe {
    libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0)
});
refused_check!(process_vm_readv, || unsafe {
    let mut buf = [0u8; 8];
    let src = [7u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: src.as_ptr() as *mut libc::c_void,
        iov_len: src.len(),
    };
    libc::syscall(
        libc::SYS_process_vm_readv,
        libc::getpid(),
        &local,
        1,
        &remote,
        1,
        0,
    )
});
refused_check!(keyctl, || unsafe {
    // KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING.
    libc::syscall(libc::SYS_keyctl, 0, -3, 0)
});
refused_check!(add_key, || unsafe {
    // Into KEY_SPEC_PROCESS_KEYRING, which dies with the child.
    libc::syscall(
        libc::SYS_add_key,
        c"user".as_ptr(),
        c"termcell-probe".as_ptr(),
        c"x".as_ptr(),
        1,
        -2,
    )
});
refused_check!(bpf, || unsafe {
    // BPF_MAP_CREATE with an all-zero attribute block.
    let attr = [0u8; 128];
    libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), attr.len())
});
refused_check!(userfaultfd, || unsafe {
    libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC)
});
refused_check!(perf_event_open, || unsafe {
    // perf_event_attr: type PERF_TYPE_SOFTWARE, size, config PERF_COUNT_SW_CPU_CLOCK.
    let mut attr = [0u32; 32];
    attr[0] = 1;
    attr[1] = 128;
    libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0)
});
refused_check!(io_uring_setup, || unsafe {
    let params = [0u8; 120];
    libc::syscall(libc::SYS_io_uring_setup, 1, params.as_ptr())
});
refused_check!(memfd_create, || unsafe {
    libc::syscall(libc::SYS_memfd_create, c"termcell-probe".as_ptr(), 0)
});
refused_check!(kexec_load, || unsafe {
    libc::syscall(libc::SYS_kexec_load, 0, 0, std::ptr::null::<u8>(), 0)
});
refused_check!(init_module, || unsafe {
    libc::syscall(
        libc::SYS_init_module,
        std::ptr::null::<u8>(),
        0,
        c"".as_ptr(),
    )
});
#[cfg(target_arch = "x86_64")]
refused_check!(iopl, || unsafe { libc::syscall(libc::SYS_iopl, 3) });
#[cfg(not(target_arch = "x86_64"))]
pub fn iopl(_: &Ctx) -> Verdict {
    Verdict::Skip("iopl exists on x86 only".into())
}
refused_check!(open_by_handle_at, || unsafe {
    // struct file_handle { handle_bytes = 8, handle_type = 1, f_handle[8] }.
    let handle = [8u32, 1, 0, 0];
    libc::syscall(
        libc::SYS_open_by_handle_at,
        libc::AT_FDCWD,
        handle.as_ptr(),
        libc::O_RDONLY,
    )
});
refused_check!(syslog, || unsafe {
    // SYSLOG_ACTION_SIZE_BUFFER.
    libc::syscall(libc::SYS_syslog, 10, std::ptr::null::<u8>(), 0)
});
refused_check!(swapon, || unsafe {
    let p = cstr(NONEXISTENT);
    libc::syscall(libc::SYS_swapon, p.as_ptr(), 0)
});
refused_check!(acct, || unsafe {
    let p = cstr(NONEXISTENT);
    libc::syscall(libc::SYS_acct, p.as_ptr())
});
refused_check!(clock_settime, || unsafe {
    // Sets the clock to its current value, so success would change nothing.
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
    libc::syscall(libc::SYS_clock_settime, libc::CLOCK_REALTIME, &now)
});
refused_check!(sethostname, || unsafe {
    let name = b"termcell-probe";
    libc::syscall(libc::SYS_sethostname, name.as_ptr(), name.len())
});
refused_check!(mknod_char_device, || unsafe {
    let p = c"/tmp/.termcell-probe-null";
    let r = libc::syscall(
        libc::SYS_mknodat,
        libc::AT_FDCWD,
        p.as_ptr(),
        libc::S_IFCHR | 0o600,
        libc::makedev(1, 3),
    );
    if r == 0 {
        libc::unlink(p.as_ptr());
    }
    r
});
refused_check!(setuid_root, || unsafe {
    libc::syscall(libc::SYS_setuid, 0)
});
refused_check!(clone_newuser, || unsafe {
    // A fork-like clone (no new stack) into a new user namespace.
    let flags = libc::CLONE_NEWUSER as libc::c_long | libc::SIGCHLD as libc::c_long;
    let r = libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0);
    if r == 0 {
        libc::_exit(0);
    }
    if r > 0 {
        let _ = sys::wait(r as libc::pid_t);
        return 0;
    }
    r
});
refused_check!(personality_linux32, || unsafe {
    // PER_LINUX32.
    libc::syscall(libc::SYS_personality, 8)
});

/// The i386 `socketcall` entry through `int 0x80`: a filter that lists the i386
/// architecture would see socketcall, not socket, and its family rules would not apply.
#[cfg(target_arch = "x86_64")]
pub fn i386_socketcall(_: &Ctx) -> Verdict {
    let end = in_child(10, || {
        // SAFETY: a MAP_32BIT page holds the socketcall argument block, because the
        // compat entry truncates pointers to 32 bits.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            );
            if page == libc::MAP_FAILED {
                return sys::CHILD_SETUP_FAILED;
            }
            let args = page.cast::<u32>();
            // AF_NETLINK needs no capability, so only a filter can refuse it; AF_PACKET
            // is the family named by the profile.
            for (family, ty, proto) in [(16u32, 3u32, 0u32), (17, 3, 0x0300)] {
                *args = family;
                *args.add(1) = ty;
                *args.add(2) = proto;
                let ret: i64;
                core::arch::asm!(
                    "xchg {b}, rbx",
                    "int 0x80",
                    "xchg {b}, rbx",
                    b = inout(reg) 1u64 => _,
                    inlateout("rax") 102i64 => ret,
                    in("rcx") args as u64,
                    out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                    options(nostack),
                );
                let ret = ret as i32;
                if ret >= 0 {
                    return 0;
                }
                if ret != -libc::EPERM && ret != -libc::ENOSYS {
                    return -ret;
                }
            }
            libc::EPERM
        }
    });
    match end {
        Ok(ChildEnd::Signaled(libc::SIGSEGV)) => {
            Verdict::Pass("int 0x80 unavailable (no IA-32 emulation)".into())
        }
        end => {
            let (ok, d) = denied(end);
            Verdict::of(
                ok,
                format!("socketcall(SYS_SOCKET, AF_NETLINK/AF_PACKET): {d}"),
            )
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub fn i386_socketcall(_: &Ctx) -> Verdict {
    Verdict::Skip("int 0x80 exists on x86_64 only".into())
}

// ---- sockets --------------------------------------------------------------------

fn socket_refused(domain: i32, ty: i32, proto: i32) -> Verdict {
    let end = in_child(10, || {
        // SAFETY: socket has no memory arguments.
        syscall_code(unsafe { libc::syscall(libc::SYS_socket, domain, ty, proto) })
    });
    // Any failure counts: EPERM is the filter, another errno means the kernel or the
    // missing capability refused it.
    match end {
        Ok(ChildEnd::Exited(0)) => Verdict::Fail("socket created".into()),
        Ok(ChildEnd::Exited(e)) if e != sys::CHILD_SETUP_FAILED => {
            Verdict::Pass(format!("failed with {}", errno_name(e)))
        }
        end => {
            let (ok, d) = denied(end);
            Verdict::of(ok, d)
        }
    }
}

pub fn socket_packet(_: &Ctx) -> Verdict {
    socket_refused(libc::AF_PACKET, libc::SOCK_RAW, 0x0300)
}
pub fn socket_netlink(_: &Ctx) -> Verdict {
    socket_refused(libc::AF_NETLINK, libc::SOCK_RAW, 0)
}
pub fn socket_inet_raw(_: &Ctx) -> Verdict {
    socket_refused(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)
}
pub fn socket_alg(_: &Ctx) -> Verdict {
    socket_refused(libc::AF_ALG, libc::SOCK_SEQPACKET, 0)
}
pub fn socket_vsock(_: &Ctx) -> Verdict {
    socket_refused(libc::AF_VSOCK, libc::SOCK_STREAM, 0)
}

pub fn sockets_allowed(_: &Ctx) -> Verdict {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, domain, ty) in [
        ("AF_INET stream", libc::AF_INET, libc::SOCK_STREAM),
        ("AF_UNIX stream", libc::AF_UNIX, libc::SOCK_STREAM),
        (
            "AF_UNIX dgram",
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
        ),
    ] {
        // SAFETY: no memory arguments; the fd is closed right away.
        let fd = unsafe { libc::socket(domain, ty, 0) };
        if fd >= 0 {
            unsafe { libc::close(fd) };
            out.push(format!("{name} ok"));
        } else {
            ok = false;
            out.push(format!("{name} failed: {}", errno_name(sys::errno())));
        }
    }
    Verdict::of(ok, out.join(", "))
}

// ---- /proc, /sys, /dev ----------------------------------------------------------

pub fn net_loopback_only(ctx: &Ctx) -> Verdict {
    if ctx.network.is_some() {
        return Verdict::Skip("on the restricted network: the net-restricted-* checks".into());
    }
    match read("/proc/net/dev") {
        Ok(t) => {
            let ifaces = parse::net_dev_interfaces(&t);
            Verdict::of(
                ifaces == ["lo"],
                format!("interfaces: {}", ifaces.join(",")),
            )
        }
        Err(e) => Verdict::Fail(format!("/proc/net/dev: {e}")),
    }
}

fn reads_empty(path: &str) -> Verdict {
    match fs::read(path) {
        Ok(b) if b.is_empty() => Verdict::Pass(format!("{path} reads empty")),
        Ok(b) => Verdict::Fail(format!("{path} readable: {} bytes", b.len())),
        Err(e) => Verdict::Pass(format!("{path} unreadable: {}", io_errno(&e))),
    }
}

pub fn proc_keys_masked(_: &Ctx) -> Verdict {
    reads_empty("/proc/keys")
}

pub fn proc_timer_list_masked(_: &Ctx) -> Verdict {
    reads_empty("/proc/timer_list")
}

pub fn proc_sys_read_only(_: &Ctx) -> Verdict {
    let path = "/proc/sys/kernel/hostname";
    match fs::OpenOptions::new().write(true).open(path) {
        Ok(_) => Verdict::Fail(format!("{path} opened for writing")),
        Err(e) => Verdict::Pass(format!("write open of {path}: {}", io_errno(&e))),
    }
}

pub fn cgroupfs_read_only(_: &Ctx) -> Verdict {
    let mounts = match mounts() {
        Ok(m) => m,
        Err(v) => return v,
    };
    let cg: Vec<&Mount> = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect();
    let rw: Vec<&str> = cg
        .iter()
        .filter(|m| !m.read_only())
        .map(|m| m.mount_point.as_str())
        .collect();
    if cg.is_empty() {
        return Verdict::Pass("no cgroup filesystem mounted".into());
    }
    Verdict::of(
        rw.is_empty(),
        if rw.is_empty() {
            format!("{} cgroup mounts, all ro", cg.len())
        } else {
            format!("writable: {}", rw.join(","))
        },
    )
}

pub fn no_runtime_socket(_: &Ctx) -> Verdict {
    const PATHS: [&str; 3] = [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/run/containerd/containerd.sock",
    ];
    let mut found: Vec<String> = PATHS
        .iter()
        .filter(|p| fs::symlink_metadata(p).is_ok())
        .map(|p| p.to_string())
        .collect();
    match mounts() {
        Ok(m) => found.extend(
            m.iter()
                .filter(|m| {
                    m.mount_point.ends_with("docker.sock")
                        || m.mount_point.ends_with("containerd.sock")
                })
                .map(|m| format!("mount {}", m.mount_point)),
        ),
        Err(v) => return v,
    }
    Verdict::of(
        found.is_empty(),
        if found.is_empty() {
            "no docker/containerd socket".to_string()
        } else {
            format!("found: {}", found.join(", "))
        },
    )
}

/// Walks the filesystem without following symlinks, skipping kernel filesystems.
fn find_setid(dir: &Path, found: &mut Vec<String>, scanned: &mut usize) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if matches!(path.to_str(), Some("/proc" | "/sys" | "/dev")) {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            find_setid(&path, found, scanned);
        } else if meta.is_file() {
            *scanned += 1;
            if meta.mode() & 0o6000 != 0 {
                found.push(format!("{} ({:o})", path.display(), meta.mode() & 0o7777));
            }
        }
    }
}

pub fn no_setid_files(_: &Ctx) -> Verdict {
    let mut found = Vec::new();
    let mut scanned = 0;
    find_setid(Path::new("/"), &mut found, &mut scanned);
    Verdict::of(
        found.is_empty(),
        if found.is_empty() {
            format!("{scanned} files, none setuid/setgid")
        } else {
            found.join(", ")
        },
    )
}

pub fn only_std_fds(ctx: &Ctx) -> Verdict {
    Verdict::of(
        ctx.extra_fds_at_start.is_empty(),
        if ctx.extra_fds_at_start.is_empty() {
            "only 0, 1, 2 open at start".to_string()
        } else {
            format!("also open at start: {:?}", ctx.extra_fds_at_start)
        },
    )
}

/// Descriptors above 2 that are open now, found without opening anything.
pub fn open_fds_above_2() -> Vec<i32> {
    // SAFETY: F_GETFD only queries the descriptor table.
    (3..1024)
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .collect()
}

pub const STANDARD_DEV: [&str; 16] = [
    "null", "zero", "full", "random", "urandom", "tty", "console", "pts", "ptmx", "shm", "mqueue",
    "fd", "stdin", "stdout", "stderr", "core",
];

pub fn dev_standard_only(_: &Ctx) -> Verdict {
    let entries = match fs::read_dir("/dev") {
        Ok(e) => e,
        Err(e) => return Verdict::Fail(format!("/dev: {e}")),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let extra: Vec<&String> = names
        .iter()
        .filter(|n| !STANDARD_DEV.contains(&n.as_str()))
        .collect();
    Verdict::of(
        extra.is_empty(),
        if extra.is_empty() {
            format!("/dev: {}", names.join(" "))
        } else {
            format!(
                "non-standard: {}",
                extra
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
    )
}
