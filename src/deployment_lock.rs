//! The deployment lock: at most one live server per deployment name on a host. A server
//! holds an exclusive `flock` on `<lock dir>/<deployment>.lock` from before its start-up
//! sweep until it exits; the kernel releases it when the process dies, however it dies.
//! Invariant: a server that does not hold the lock never touches the deployment's containers.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

#[cfg(test)]
mod tests;

/// Why the lock was not taken; each names the deployment and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "deployment {deployment:?} is already served by a running termcell on this host \
         ({holder}; lock {path}): stop that server first, or give this one another name \
         with --deployment"
    )]
    Held {
        deployment: String,
        holder: String,
        path: PathBuf,
    },
    #[error(
        "cannot take the lock of deployment {deployment:?} at {path}: {source} (set \
         --lock-dir to a directory this user can write)"
    )]
    Io {
        deployment: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock; released when dropped or when the process ends.
#[derive(Debug)]
pub struct DeploymentLock {
    _file: File,
    path: PathBuf,
}

impl DeploymentLock {
    /// Takes the lock of `deployment` in `dir` (created 0700 when missing), without waiting:
    /// another live holder is an error naming it. The file then holds this process's pid.
    pub fn acquire(dir: &Path, deployment: &str) -> Result<DeploymentLock, LockError> {
        let path = dir.join(format!("{deployment}.lock"));
        let io = |source| LockError::Io {
            deployment: deployment.to_string(),
            path: path.clone(),
            source,
        };
        create_private_dir(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim() {
                    "" => "pid unknown".to_string(),
                    pid => format!("pid {pid}"),
                };
                return Err(LockError::Held {
                    deployment: deployment.to_string(),
                    holder,
                    path,
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DeploymentLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Where the locks live unless `--lock-dir` says otherwise: `/run/termcell` for root and
/// wherever that directory exists and is writable (the systemd unit's `RuntimeDirectory=`),
/// otherwise the user's runtime directory (`$XDG_RUNTIME_DIR/termcell`), otherwise
/// `/tmp/termcell-<uid>`.
pub fn default_dir() -> PathBuf {
    let system = PathBuf::from("/run/termcell");
    let uid = rustix::process::geteuid();
    if uid.is_root() || writable_dir(&system) {
        return system;
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("termcell"),
        None => std::env::temp_dir().join(format!("termcell-{}", uid.as_raw())),
    }
}

fn writable_dir(dir: &Path) -> bool {
    dir.is_dir() && rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
}
