//! The default sandbox image: names resolve (from /etc/hosts, the NSS module for
//! `localhost`, the network's DNS server), busybox's wget and nc do not crash (`wget -T`
//! included) and the loader opens no way around noexec, in real sessions with the
//! server's profile.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::*;

/// An internal Docker network (no way out; Docker's DNS server answers inside); removed
/// on drop, so declare it before the server that uses it.
struct Network(String);

impl Network {
    fn new() -> Network {
        let name = format!(
            "termcell-it-net-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let out = Command::new("docker")
            .args([
                "network",
                "create",
                "--internal",
                "--label",
                "termcell.it=image",
                &name,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "network create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Network(name)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}

/// Runs `cmd` in the session's shell; its output only (not the echoed command line).
async fn capture(c: &mut Client, cmd: &str) -> String {
    static MARK: AtomicUsize = AtomicUsize::new(1);
    let n = MARK.fetch_add(1, Ordering::Relaxed);
    let (begin, end) = (format!("beg-{n}."), format!("end-{n}."));
    c.send_text(&format!(
        "echo beg-$(({n}+0)).; {cmd}; echo end-$(({n}+0)).\r"
    ))
    .await;
    let out = c.wait_output(&end, T).await;
    let start = out
        .rfind(&begin)
        .expect("begin marker before the end marker")
        + begin.len();
    let stop = out.rfind(&end).unwrap();
    out[start..stop].replace('\r', "").trim().to_string()
}

/// A connection attempt that reached the resolver and then the (closed) port.
fn refused_without_crash(what: &str, out: &str) {
    assert!(
        out.contains("Connection refused") && out.contains("rc=1"),
        "{what}: a clean `Connection refused`: {out:?}"
    );
    assert!(
        !out.contains("Segmentation fault") && !out.contains("rc=139"),
        "{what}: no crash: {out:?}"
    );
}

#[tokio::test]
async fn wget_and_nc_resolve_localhost_without_crashing() {
    let image = BuiltImage::new();
    let server = Server::start(&["--image", &image.0]);
    let (mut c, _) = Client::session(&server).await;
    c.wait_output("$ ", T).await;

    let nsswitch = capture(&mut c, "cat /etc/nsswitch.conf").await;
    assert!(nsswitch.contains("hosts:"), "{nsswitch:?}");

    let wget = capture(&mut c, "wget -q -O- http://localhost:9/ 2>&1; echo rc=$?").await;
    refused_without_crash("wget localhost", &wget);
    let nc = capture(&mut c, "nc localhost 9 </dev/null 2>&1; echo rc=$?").await;
    refused_without_crash("nc localhost", &nc);
    let own_name = capture(&mut c, "nc $(hostname) 9 </dev/null 2>&1; echo rc=$?").await;
    refused_without_crash("nc by the container's hostname", &own_name);

    // Debian's busybox wget crashes on -T; the image's /bin/wget turns it into a time limit.
    let timeout = capture(
        &mut c,
        "wget -T 2 -q -O- http://localhost:9/ 2>&1; echo rc=$?",
    )
    .await;
    refused_without_crash("wget -T", &timeout);
    let stalled = capture(
        &mut c,
        "(sleep 10 | nc -l -p 8080 >/dev/null &); sleep 0.5; \
         wget -T 1 -q -O- http://127.0.0.1:8080/ 2>&1; echo rc=$?",
    )
    .await;
    assert!(
        stalled.contains("timed out after 1 s") && stalled.contains("rc=143"),
        "-T ends a transfer that stalls: {stalled:?}"
    );

    // The image now holds a dynamic loader: it must not map a file from a noexec mount.
    let loader = capture(
        &mut c,
        "cp /bin/busybox /tmp/bb && /lib64/ld-linux-x86-64.so.2 /tmp/bb true 2>&1; echo rc=$?",
    )
    .await;
    assert!(
        loader.contains("failed to map segment") && loader.contains("rc=127"),
        "the loader cannot run a copy from /tmp: {loader:?}"
    );
}

#[tokio::test]
async fn names_resolve_through_the_networks_dns_server() {
    let network = Network::new();
    let image = BuiltImage::new();
    let server = Server::start(&["--image", &image.0, "--network", &network.0]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let inspect = docker_inspect(&container_of(&id).expect("the session's container"));
    // Docker's DNS server knows containers by name (/etc/hosts has only the hostname).
    let name = inspect["Name"].as_str().unwrap().trim_start_matches('/');
    let address = inspect["NetworkSettings"]["Networks"][&network.0]["IPAddress"]
        .as_str()
        .unwrap();
    assert!(!name.is_empty() && !address.is_empty(), "{inspect}");

    let resolv = capture(&mut c, "cat /etc/resolv.conf").await;
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv:?}");

    let wget = capture(
        &mut c,
        &format!("wget -O- http://{name}:9/ 2>&1; echo rc=$?"),
    )
    .await;
    refused_without_crash("wget by name", &wget);
    assert!(
        wget.contains(&format!("({address}:9)")),
        "resolved to the container: {wget:?}"
    );
    let nc = capture(&mut c, &format!("nc {name} 9 </dev/null 2>&1; echo rc=$?")).await;
    refused_without_crash("nc by name", &nc);
    let unknown = capture(
        &mut c,
        "nc no-such-host.invalid 9 </dev/null 2>&1; echo rc=$?",
    )
    .await;
    assert!(
        unknown.contains("bad address") && unknown.contains("rc=1"),
        "an unknown name fails cleanly: {unknown:?}"
    );
}
