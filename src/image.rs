//! Local images, built through the Docker API with no registry: the default sandbox image
//! (FROM scratch, the host's static busybox) and the probe image of `termcell verify`.

use std::path::Path;

use termcell_actors::docker::{DockerEngine, DockerError};

const SANDBOX_DOCKERFILE: &str = include_str!("../docker/sandbox.Dockerfile");
const PROBE_DOCKERFILE: &str = include_str!("../docker/probe.Dockerfile");
const PASSWD: &str = include_str!("../docker/passwd");
const GROUP: &str = include_str!("../docker/group");

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("static busybox not found at {path}: {why}. Install it with `apt-get install busybox-static` (or point --busybox at a statically linked busybox)")]
    NoStaticBusybox { path: String, why: String },
    #[error(
        "probe binary not found at {path}: build it with docker/build-probe.sh (or pass --probe)"
    )]
    NoProbe { path: String },
    #[error("image {0} is not present on the Docker engine: build it or pull it into the engine first (termcell never pulls)")]
    Missing(String),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("building the image context failed: {0}")]
    Context(#[from] std::io::Error),
}

/// True when `bytes` is an ELF executable with no program interpreter (statically linked).
pub fn is_static_elf(bytes: &[u8]) -> bool {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false; // not a 64-bit little-endian ELF
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at =
        |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes")) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        // PT_INTERP = 3 names the dynamic loader.
        at + 4 <= bytes.len() && u32_at(at) != 3
    })
}

fn read_static(path: &Path) -> Result<Vec<u8>, ImageError> {
    let bytes = std::fs::read(path).map_err(|e| ImageError::NoStaticBusybox {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    if !is_static_elf(&bytes) {
        return Err(ImageError::NoStaticBusybox {
            path: path.display().to_string(),
            why: "it is not a statically linked 64-bit executable".into(),
        });
    }
    Ok(bytes)
}

fn context(files: &[(&str, &[u8], u32)]) -> Result<Vec<u8>, std::io::Error> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, name, *data)?;
    }
    builder.into_inner()
}

/// Builds the default sandbox image from the host's static busybox.
pub async fn build_sandbox(
    engine: &DockerEngine,
    tag: &str,
    busybox: &Path,
) -> Result<(), ImageError> {
    let busybox = read_static(busybox)?;
    let tar = context(&[
        ("Dockerfile", SANDBOX_DOCKERFILE.as_bytes(), 0o644),
        ("busybox", &busybox, 0o755),
        ("passwd", PASSWD.as_bytes(), 0o644),
        ("group", GROUP.as_bytes(), 0o644),
    ])?;
    engine.build_image(tag, tar).await?;
    Ok(())
}

/// Makes sure the configured image is there: the default one is built when missing, a
/// custom one must already exist.
pub async fn ensure_sandbox(
    engine: &DockerEngine,
    image: &str,
    is_default: bool,
    busybox: &Path,
) -> Result<bool, ImageError> {
    if engine.image_exists(image).await? {
        return Ok(false);
    }
    if !is_default {
        return Err(ImageError::Missing(image.to_string()));
    }
    build_sandbox(engine, image, busybox).await?;
    Ok(true)
}

/// Builds the probe image from a statically linked probe binary.
pub async fn build_probe(engine: &DockerEngine, tag: &str, probe: &Path) -> Result<(), ImageError> {
    let bytes = std::fs::read(probe).map_err(|_| ImageError::NoProbe {
        path: probe.display().to_string(),
    })?;
    if !is_static_elf(&bytes) {
        return Err(ImageError::NoProbe {
            path: format!("{} (not statically linked)", probe.display()),
        });
    }
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
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic_executables() {
        if let Ok(busybox) = std::fs::read("/bin/busybox") {
            assert!(is_static_elf(&busybox), "Debian's busybox-static is static");
        }
        let dynamic = std::fs::read("/bin/ls").unwrap();
        assert!(!is_static_elf(&dynamic));
        assert!(!is_static_elf(b"#!/bin/sh\necho not elf\n"));
        assert!(!is_static_elf(&[]));
    }

    #[test]
    fn context_is_a_tar_with_the_files() {
        let tar = context(&[("Dockerfile", b"FROM scratch\n", 0o644)]).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["Dockerfile"]);
    }
}
