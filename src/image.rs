//! Local images, built through the Docker API with no registry: the default sandbox image
//! (FROM scratch, a busybox from the host and the libraries it needs, termcell's own
//! in-container programs) and the probe image of `termcell verify`.

use std::collections::HashMap;
use std::path::Path;

use termcell_actors::docker::{DockerEngine, DockerError};
use termcell_actors::profile::{ContainerSpec, SecurityProfile};

mod elf;
pub mod programs;
mod rootfs;

pub use elf::is_static_elf;
pub use rootfs::DEFAULT_BUSYBOX;
use rootfs::{library_dirs, sandbox_root, RootFile};

const SANDBOX_DOCKERFILE: &str = include_str!("../docker/sandbox.Dockerfile");
const PROBE_DOCKERFILE: &str = include_str!("../docker/probe.Dockerfile");
const PASSWD: &str = include_str!("../docker/passwd");
const GROUP: &str = include_str!("../docker/group");
/// The restricted shell's configuration in the default image.
const RSH_CONF: &str = include_str!("../docker/rsh.conf");
pub const RSH_CONF_PATH: &str = "/etc/termcell/rsh.conf";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no usable busybox at {path}: {why}. The default image is built from Debian's dynamically linked busybox, which scripts/setup.sh extracts to {DEFAULT_BUSYBOX} (`apt-get download busybox`; installing the package would conflict with busybox-static); --busybox also takes a statically linked one (`apt-get install busybox-static` puts it at /bin/busybox)")]
    NoBusybox { path: String, why: String },
    #[error("{name}, needed by {needed_by}, is missing ({why}): {hint}")]
    NoLibrary {
        name: String,
        needed_by: String,
        why: String,
        hint: String,
    },
    #[error("{name} at {path}: {why}. Build the in-container programs with docker/build-programs.sh (it prints the directory they are in) and put them beside termcell, or give that directory with --sandbox-programs")]
    NoProgram {
        name: String,
        path: String,
        why: String,
    },
    #[error("image {0} is not present on the Docker engine: build it or pull it into the engine first (termcell never pulls)")]
    Missing(String),
    #[error("--shell restricted: image {image} has no {path}. Rebuild the default image with `termcell build-image` (one built before termcell had the restricted shell lacks it), or add termcell-rsh and its /etc/termcell/rsh.conf to your image (docs/security.md, \"The restricted shell\")")]
    NoRestrictedShell { image: String, path: String },
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("building the image context failed: {0}")]
    Context(#[from] std::io::Error),
}

/// A build context: the files at `name` (relative), with parent directories made 0755.
fn context(files: &[(&str, &[u8], u32)]) -> Result<Vec<u8>, std::io::Error> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (name, data, mode) in files {
        let parents: Vec<&Path> = Path::new(name).ancestors().skip(1).collect();
        for dir in parents.into_iter().rev() {
            if dir.as_os_str().is_empty() || !dirs.insert(dir.to_path_buf()) {
                continue;
            }
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            header.set_mode(0o755);
            header.set_mtime(0);
            header.set_cksum();
            builder.append_data(&mut header, dir, std::io::empty())?;
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, name, *data)?;
    }
    builder.into_inner()
}

/// Builds the default sandbox image from `busybox` (statically linked, or dynamically
/// linked with its libraries on this host) and termcell's in-container programs (found in
/// `programs`, or where [`programs::locate`] looks): the Dockerfile copies `root/` to `/`.
pub async fn build_sandbox(
    engine: &DockerEngine,
    tag: &str,
    busybox: &Path,
    programs: Option<&Path>,
) -> Result<(), ImageError> {
    let mut root = sandbox_root(busybox, &library_dirs(busybox))?;
    for program in programs::IMAGE_PROGRAMS {
        let path = programs::locate(program.name, programs);
        root.push(RootFile {
            path: program.path.into(),
            data: programs::read(program.name, &path)?,
            mode: 0o755,
        });
    }
    for (path, text) in [
        ("/etc/passwd", PASSWD),
        ("/etc/group", GROUP),
        (RSH_CONF_PATH, RSH_CONF),
    ] {
        root.push(RootFile {
            path: path.into(),
            data: text.as_bytes().to_vec(),
            mode: 0o644,
        });
    }
    let names: Vec<String> = root.iter().map(|f| format!("root{}", f.path)).collect();
    let mut files: Vec<(&str, &[u8], u32)> =
        vec![("Dockerfile", SANDBOX_DOCKERFILE.as_bytes(), 0o644)];
    files.extend(
        root.iter()
            .zip(&names)
            .map(|(f, name)| (name.as_str(), f.data.as_slice(), f.mode)),
    );
    engine.build_image(tag, context(&files)?).await?;
    Ok(())
}

/// Makes sure the configured image is there: the default one is built when missing, a
/// custom one must already exist.
pub async fn ensure_sandbox(
    engine: &DockerEngine,
    image: &str,
    is_default: bool,
    busybox: &Path,
    programs: Option<&Path>,
) -> Result<bool, ImageError> {
    if engine.image_exists(image).await? {
        return Ok(false);
    }
    if !is_default {
        return Err(ImageError::Missing(image.to_string()));
    }
    build_sandbox(engine, image, busybox, programs).await?;
    Ok(true)
}

/// What the sandbox image holds that the server's start depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxImage {
    pub restricted_shell: bool,
    /// The entry program (sandbox/entry): sessions get their environment through it.
    pub entry: bool,
    /// The image's own entrypoint and command, as a container of it runs them.
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl SandboxImage {
    /// The session's shell as the entry program execs it: the image's entrypoint, then
    /// `cmd` (`--shell`) or the image's command. `None` when that is empty.
    pub fn shell(&self, cmd: Option<&[String]>) -> Option<Vec<String>> {
        let mut shell = self.entrypoint.clone();
        shell.extend(cmd.unwrap_or(&self.cmd).iter().cloned());
        (!shell.is_empty()).then_some(shell)
    }
}

/// Looks into the image through a container created from it with the session profile
/// (never started, removed at once, labelled so that the reaper takes it if termcell dies
/// meanwhile): which of termcell's programs it has, and its command. A start with
/// `--shell restricted` on an image without the restricted shell fails here, with the fix,
/// instead of every session failing.
pub async fn examine(
    engine: &DockerEngine,
    image: &str,
    profile: &SecurityProfile,
    labels: HashMap<String, String>,
) -> Result<SandboxImage, ImageError> {
    let spec = ContainerSpec {
        image,
        entrypoint: None,
        cmd: None,
        env: Vec::new(),
        labels,
        cols: 80,
        rows: 24,
    };
    // Never started: no network to attach (a restricted one may not exist yet).
    let profile = SecurityProfile {
        network_mode: "none".into(),
        dns: Vec::new(),
        ..profile.clone()
    };
    let name = format!("termcell-check-{}", uuid::Uuid::new_v4().simple());
    let id = engine.create(&name, profile.create_body(&spec)).await?;
    let looked = async {
        let config = engine.inspect(&id).await?.config.unwrap_or_default();
        Ok::<_, DockerError>(SandboxImage {
            restricted_shell: engine.path_exists(&id, programs::RSH.path).await?,
            entry: engine.path_exists(&id, programs::ENTRY.path).await?,
            entrypoint: config.entrypoint.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
        })
    }
    .await;
    engine.remove(&id).await?;
    Ok(looked?)
}

/// With `--shell restricted`, the image must hold the restricted shell.
pub fn require_restricted_shell(image: &str, found: &SandboxImage) -> Result<(), ImageError> {
    if found.restricted_shell {
        Ok(())
    } else {
        Err(ImageError::NoRestrictedShell {
            image: image.to_string(),
            path: programs::RSH.path.to_string(),
        })
    }
}

/// Builds the probe image from a statically linked probe binary.
pub async fn build_probe(engine: &DockerEngine, tag: &str, probe: &Path) -> Result<(), ImageError> {
    let bytes = programs::read(programs::PROBE, probe)?;
    let tar = context(&[
        ("Dockerfile", PROBE_DOCKERFILE.as_bytes(), 0o644),
        ("probe", &bytes, 0o755),
        ("passwd", PASSWD.as_bytes(), 0o644),
        ("group", GROUP.as_bytes(), 0o644),
    ])?;
    engine.build_image(tag, tar).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
