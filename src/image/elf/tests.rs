use std::path::Path;

use super::*;

#[test]
fn reads_the_interpreter_and_the_needed_libraries() {
    let ls = parse(&std::fs::read("/bin/ls").unwrap()).expect("/bin/ls is ELF");
    let interpreter = ls.interpreter.expect("/bin/ls is dynamically linked");
    assert!(
        interpreter.starts_with('/') && interpreter.contains("ld-"),
        "{interpreter}"
    );
    assert!(
        ls.needed.iter().any(|n| n == "libc.so.6"),
        "{:?}",
        ls.needed
    );

    let dir = ["/lib/x86_64-linux-gnu", "/lib64"]
        .into_iter()
        .find(|d| Path::new(d).join("libresolv.so.2").exists())
        .expect("glibc's libraries");
    let libresolv = parse(&std::fs::read(Path::new(dir).join("libresolv.so.2")).unwrap())
        .expect("libresolv is ELF");
    assert_eq!(
        libresolv.interpreter, None,
        "a plain library has no PT_INTERP"
    );
    assert_eq!(libresolv.needed, ["libc.so.6"]);
    let libc = parse(&std::fs::read(Path::new(dir).join("libc.so.6")).unwrap()).unwrap();
    assert!(
        libc.needed.iter().any(|n| n.starts_with("ld-")),
        "{:?}",
        libc.needed
    );
}

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
fn truncated_or_corrupt_files_are_not_elf() {
    let ls = std::fs::read("/bin/ls").unwrap();
    for len in [0, 4, 63, 64, 200, 800] {
        let _ = parse(&ls[..len.min(ls.len())]);
    }
    let mut corrupt = ls.clone();
    // Program headers past the end of the file.
    corrupt[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(parse(&corrupt), None);
    let mut corrupt = ls;
    corrupt[4] = 1; // 32-bit class
    assert_eq!(parse(&corrupt), None);
}
