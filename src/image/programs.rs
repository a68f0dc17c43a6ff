//! The static programs that run inside sandboxes (the packages under `sandbox/`, built by
//! docker/build-programs.sh): where termcell finds them on this host, and which of them the
//! default image holds, at which fixed paths. Reads only.

use std::path::{Path, PathBuf};

use super::{is_static_elf, ImageError};

/// One in-container program of the default image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// Its binary's name, as the build script leaves it.
    pub name: &'static str,
    /// Where the default image has it.
    pub path: &'static str,
}

/// The restricted shell (`--shell restricted`).
pub const RSH: Program = Program {
    name: "termcell-rsh",
    path: "/usr/local/bin/termcell-rsh",
};

/// The entry program: the session container's command, which takes the session's
/// environment as one line on its TTY and then runs the shell (sandbox/entry).
pub const ENTRY: Program = Program {
    name: "termcell-entry",
    path: "/usr/local/bin/termcell-entry",
};

/// Every program the default image holds.
pub const IMAGE_PROGRAMS: &[Program] = &[RSH, ENTRY];

/// The probe of `termcell verify`; it has an image of its own.
pub const PROBE: &str = "termcell-probe";

/// The build script's output directory, relative to a workspace's target directory.
fn built_relative() -> PathBuf {
    let host = if cfg!(target_arch = "x86_64") {
        "x86_64-unknown-linux-gnu"
    } else {
        "aarch64-unknown-linux-gnu"
    };
    PathBuf::from(format!("sandbox/{host}/release"))
}

/// Where the program `name` is looked for: in `dir` when one is configured; else beside
/// this binary (an installation), then in the build script's output next to this binary's
/// target directory (`target/debug/termcell` → `target/sandbox/...`), then under
/// `./target`. The first statically linked one wins; without any, the last candidate
/// (named in the error).
pub fn locate(name: &str, dir: Option<&Path>) -> PathBuf {
    if let Some(dir) = dir {
        return dir.join(name);
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let mut candidates = Vec::new();
    if let Some(dir) = &exe_dir {
        candidates.push(dir.join(name));
        if let Some(target) = dir.parent() {
            candidates.push(target.join(built_relative()).join(name));
        }
    }
    let in_tree = Path::new("target").join(built_relative()).join(name);
    candidates
        .into_iter()
        .find(|p| is_static_elf(&std::fs::read(p).unwrap_or_default()))
        .unwrap_or(in_tree)
}

/// The bytes of the program at `path`, which must be a statically linked ELF executable
/// (the sandbox image is `FROM scratch`).
pub fn read(name: &str, path: &Path) -> Result<Vec<u8>, ImageError> {
    let missing = |why: String| ImageError::NoProgram {
        name: name.to_string(),
        path: path.display().to_string(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| missing(e.to_string()))?;
    if !is_static_elf(&bytes) {
        return Err(missing("not a statically linked executable".into()));
    }
    Ok(bytes)
}
