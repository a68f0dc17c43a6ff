//! The files of the default sandbox image, gathered from the host: a busybox and, when it
//! is dynamically linked, its loader, every library it needs (DT_NEEDED, transitively) and
//! the NSS module that answers `localhost` and the container's own name. Reads only.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use super::elf;
use super::ImageError;

/// The default busybox: Debian's dynamically linked `busybox`, extracted here by
/// scripts/setup.sh (installing the package would conflict with busybox-static).
pub const DEFAULT_BUSYBOX: &str = "/usr/lib/termcell/busybox";

/// Loaded by glibc through /etc/nsswitch.conf, so it appears in no DT_NEEDED.
/// Docker leaves /etc/hosts empty in a container with networking disabled (the default
/// `--network none`), and an /etc/hosts in the image is hidden by Docker's own: this
/// module is what resolves `localhost` there.
pub const NSS_MYHOSTNAME: &str = "libnss_myhostname.so.2";

/// glibc's `files` and `dns` sources are built into libc.so.6 (since 2.34), so
/// libnss_files/libnss_dns are not needed.
const NSSWITCH_DYNAMIC: &str = "passwd: files\ngroup: files\nhosts: files myhostname dns\n";
/// A static glibc cannot load NSS modules reliably: only the built-in sources.
const NSSWITCH_STATIC: &str = "passwd: files\ngroup: files\nhosts: files dns\n";

/// /bin/wget: busybox's wget with a `-T` that does not crash (see the script).
const WGET: &str = include_str!("../../docker/wget");

/// One file of the image: its absolute path there, its bytes and its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFile {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

impl RootFile {
    fn new(path: impl Into<String>, data: impl Into<Vec<u8>>, mode: u32) -> RootFile {
        RootFile {
            path: path.into(),
            data: data.into(),
            mode,
        }
    }
}

/// Where the loader of a Debian host finds libraries when it has no ld.so.cache: the image
/// keeps them in the first of these, so they are found there too.
pub fn multiarch_dir() -> String {
    format!("/lib/{}-linux-gnu", std::env::consts::ARCH)
}

/// The directories searched for a library, in order: the busybox's own directory (where
/// setup.sh puts the NSS module), then the host's standard ones.
pub fn library_dirs(busybox: &Path) -> Vec<PathBuf> {
    let multiarch = multiarch_dir();
    let standard = [
        multiarch.clone(),
        format!("/usr{multiarch}"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
    ];
    busybox
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .chain(standard.into_iter().map(PathBuf::from))
        .collect()
}

fn not_busybox(path: &Path, why: impl Into<String>) -> ImageError {
    ImageError::NoBusybox {
        path: path.display().to_string(),
        why: why.into(),
    }
}

/// The Debian package that ships a library, or what to do instead.
fn package_hint(name: &str) -> String {
    if name == NSS_MYHOSTNAME {
        "run scripts/setup.sh, which extracts it from Debian's `libnss-myhostname` \
         package into /usr/lib/termcell (installing that package would edit the host's \
         /etc/nsswitch.conf)"
            .into()
    } else if name.starts_with("ld-linux")
        || ["libc.so.6", "libresolv.so.2", "libm.so.6"].contains(&name)
    {
        "install `libc6`".into()
    } else {
        "install the package that ships it (`dpkg -S` names it on a host that has it)".into()
    }
}

fn find_library(name: &str, dirs: &[PathBuf]) -> Result<Vec<u8>, String> {
    if name.contains('/') {
        return Err("a DT_NEEDED entry with a path is not supported".into());
    }
    for dir in dirs {
        if let Ok(data) = std::fs::read(dir.join(name)) {
            return Ok(data);
        }
    }
    Err(format!("not found in {}", join(dirs)))
}

fn join(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every file of the sandbox image except passwd and group: the busybox at /bin/busybox,
/// the wget wrapper, /etc/nsswitch.conf and, for a dynamically linked busybox, the loader at its PT_INTERP
/// path and the libraries in [`multiarch_dir`]. Libraries come from `dirs` (see
/// [`library_dirs`]).
pub fn sandbox_root(busybox: &Path, dirs: &[PathBuf]) -> Result<Vec<RootFile>, ImageError> {
    let bytes = std::fs::read(busybox).map_err(|e| not_busybox(busybox, e.to_string()))?;
    let info = elf::parse(&bytes)
        .ok_or_else(|| not_busybox(busybox, "it is not a 64-bit little-endian ELF file"))?;
    if !bytes.windows(9).any(|w| w == b"BusyBox v") {
        return Err(not_busybox(busybox, "it is not a busybox executable"));
    }
    let Some(interpreter) = info.interpreter else {
        return Ok(vec![
            RootFile::new("/bin/busybox", bytes, 0o755),
            RootFile::new("/bin/wget", WGET, 0o755),
            RootFile::new("/etc/nsswitch.conf", NSSWITCH_STATIC, 0o644),
        ]);
    };
    let interpreter_path = Path::new(&interpreter);
    let loader_name = match interpreter_path.file_name() {
        Some(name) if interpreter_path.is_absolute() && !interpreter.contains("/../") => {
            name.to_string_lossy().into_owned()
        }
        _ => {
            return Err(not_busybox(
                busybox,
                format!("odd interpreter {interpreter:?}"),
            ))
        }
    };
    let missing = |name: &str, needed_by: &str, why: String| ImageError::NoLibrary {
        name: name.to_string(),
        needed_by: needed_by.to_string(),
        why,
        hint: package_hint(name),
    };
    let busybox_name = busybox.display().to_string();
    let loader = std::fs::read(interpreter_path)
        .map_err(|e| missing(&loader_name, &busybox_name, format!("{interpreter}: {e}")))?;
    let lib_dir = multiarch_dir();
    let mut files = vec![
        RootFile::new("/bin/busybox", bytes, 0o755),
        RootFile::new("/bin/wget", WGET, 0o755),
        RootFile::new(interpreter.clone(), loader, 0o755),
        RootFile::new("/etc/nsswitch.conf", NSSWITCH_DYNAMIC, 0o644),
    ];
    // Breadth first from the busybox and the NSS module; the loader is already in place
    // (libc names it by soname).
    let mut seen = BTreeSet::from([loader_name]);
    let mut queue: VecDeque<(String, String)> = info
        .needed
        .into_iter()
        .map(|n| (n, busybox_name.clone()))
        .collect();
    queue.push_back((NSS_MYHOSTNAME.to_string(), "/etc/nsswitch.conf".to_string()));
    while let Some((name, needed_by)) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let data = find_library(&name, dirs).map_err(|why| missing(&name, &needed_by, why))?;
        let lib = elf::parse(&data).ok_or_else(|| {
            missing(
                &name,
                &needed_by,
                "the file found is not a 64-bit ELF library".into(),
            )
        })?;
        queue.extend(lib.needed.into_iter().map(|n| (n, name.clone())));
        files.push(RootFile::new(format!("{lib_dir}/{name}"), data, 0o644));
    }
    Ok(files)
}

#[cfg(test)]
mod tests;
