use super::*;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("termcell-rootfs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A dynamically linked executable that passes for a busybox: /bin/true (it needs only
/// libc) with the marker.
fn fake_dynamic_busybox(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read("/bin/true").unwrap();
    bytes.extend_from_slice(b"BusyBox v0.0\0");
    let path = dir.join("busybox");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn paths(files: &[RootFile]) -> Vec<&str> {
    files.iter().map(|f| f.path.as_str()).collect()
}

#[test]
fn a_dynamic_busybox_brings_its_loader_libraries_and_nss_module() {
    let scratch = Scratch::new("dynamic");
    let busybox = fake_dynamic_busybox(&scratch.0);
    // Any real library stands in for the NSS module.
    let libc_dir = PathBuf::from(multiarch_dir());
    std::fs::copy(
        libc_dir.join("libresolv.so.2"),
        scratch.0.join(NSS_MYHOSTNAME),
    )
    .unwrap();
    let files = sandbox_root(&busybox, &library_dirs(&busybox)).unwrap();
    let paths = paths(&files);
    let interpreter = elf::parse(&std::fs::read("/bin/true").unwrap())
        .unwrap()
        .interpreter
        .unwrap();
    let lib = multiarch_dir();
    for expected in [
        "/bin/busybox",
        "/bin/wget",
        "/etc/nsswitch.conf",
        interpreter.as_str(),
        &format!("{lib}/libc.so.6"),
        &format!("{lib}/{NSS_MYHOSTNAME}"),
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    let unique: BTreeSet<&str> = paths.iter().copied().collect();
    assert_eq!(unique.len(), paths.len(), "no file twice: {paths:?}");
    let loader_name = Path::new(&interpreter)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        !paths.contains(&format!("{lib}/{loader_name}").as_str()),
        "the loader only at its PT_INTERP path: {paths:?}"
    );
    let nsswitch = files
        .iter()
        .find(|f| f.path == "/etc/nsswitch.conf")
        .unwrap();
    assert!(String::from_utf8_lossy(&nsswitch.data).contains("hosts: files myhostname dns"));
    let loader = files.iter().find(|f| f.path == interpreter).unwrap();
    assert_eq!(loader.mode, 0o755, "the kernel execs the loader");
}

#[test]
fn a_missing_library_names_what_to_install() {
    let scratch = Scratch::new("missing");
    let busybox = fake_dynamic_busybox(&scratch.0);
    let err = sandbox_root(&busybox, &library_dirs(&busybox))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(NSS_MYHOSTNAME)
            && err.contains("libnss-myhostname")
            && err.contains("setup.sh"),
        "{err}"
    );
    let err = sandbox_root(&busybox, std::slice::from_ref(&scratch.0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("libc6") && err.contains(&busybox.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_static_busybox_is_the_only_binary() {
    let Ok(bytes) = std::fs::read("/bin/busybox") else {
        return;
    };
    if !elf::is_static_elf(&bytes) {
        return;
    }
    let busybox = Path::new("/bin/busybox");
    let files = sandbox_root(busybox, &library_dirs(busybox)).unwrap();
    assert_eq!(
        paths(&files),
        ["/bin/busybox", "/bin/wget", "/etc/nsswitch.conf"]
    );
    assert!(String::from_utf8_lossy(&files[2].data).contains("hosts: files dns"));
}

#[test]
fn anything_else_is_refused_with_how_to_get_a_busybox() {
    for path in ["/bin/ls", "/etc/passwd", "/nonexistent/busybox"] {
        let err = sandbox_root(Path::new(path), &[]).unwrap_err().to_string();
        assert!(
            err.contains(path)
                && err.contains("apt-get install busybox-static")
                && err.contains("apt-get download busybox"),
            "{err}"
        );
    }
}
