use super::*;

#[test]
fn context_is_a_tar_with_the_files_and_their_directories() {
    let tar = context(&[
        ("Dockerfile", b"FROM scratch\n", 0o644),
        ("root/lib/x/libc.so.6", b"elf", 0o644),
        ("root/lib/x/libm.so.6", b"elf", 0o644),
    ])
    .unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let entries: Vec<(String, u32)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().display().to_string(),
                e.header().mode().unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Dockerfile",
            "root",
            "root/lib",
            "root/lib/x",
            "root/lib/x/libc.so.6",
            "root/lib/x/libm.so.6"
        ]
    );
    assert_eq!(entries[1].1, 0o755);
}
