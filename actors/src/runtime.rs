//! The OCI runtime sessions run under (`--runtime`): `runc` shares the host kernel behind
//! the seccomp allowlist; `runsc` (gVisor) puts a user-space kernel between the session and
//! the host. Pure: what the engine lists and the network mode in, the runtime to use or a
//! refusal that says how to register it out. Invariant: a runtime the engine does not list,
//! or a gVisor entry whose network argument cannot run the chosen network mode, never
//! reaches a container create.

use std::collections::BTreeMap;

/// One runtime as the engine lists it (`docker info`, `Runtimes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeEntry {
    pub path: String,
    pub args: Vec<String>,
}

/// The runtime sessions use, as checked at start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Runtime {
    pub name: String,
    pub path: String,
    pub args: Vec<String>,
    /// gVisor: the session's system calls are served by a user-space kernel.
    pub user_space_kernel: bool,
}

impl Runtime {
    /// The default runtime, before the engine was asked.
    pub fn runc() -> Runtime {
        Runtime {
            name: "runc".into(),
            path: "runc".into(),
            args: Vec::new(),
            user_space_kernel: false,
        }
    }

    /// One line for the start-up report and the protections list.
    pub fn describe(&self) -> String {
        if self.user_space_kernel {
            format!(
                "runtime {} (gVisor, {}): a user-space kernel serves the sessions' system calls",
                self.name, self.path
            )
        } else {
            format!(
                "runtime {}: sessions share the host kernel behind the seccomp allowlist (--runtime runsc adds gVisor's user-space kernel)",
                self.name
            )
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "--runtime {name}: the Docker engine has no runtime of that name (it lists: {listed}). \
         Register it in /etc/docker/daemon.json and reload dockerd (kill -HUP $(pidof dockerd)):\n{snippet}"
    )]
    NotListed {
        name: String,
        listed: String,
        snippet: String,
    },
    #[error(
        "--runtime {name} is gVisor registered with {arg}, which cannot run sessions on network \
         {network}: {why}. Register a runtime for this network mode in /etc/docker/daemon.json \
         and reload dockerd (kill -HUP $(pidof dockerd)):\n{snippet}"
    )]
    WrongNetworkArg {
        name: String,
        arg: String,
        network: String,
        why: &'static str,
        snippet: String,
    },
    #[error(
        "--runtime {name} is gVisor, and a gVisor sandbox on network {network} does not start on \
         this host: {detail}. Run gVisor sessions with --network none, or this network with \
         --runtime runc"
    )]
    NetworkFailed {
        name: String,
        network: String,
        detail: String,
    },
}

/// Whether `path` is gVisor's runtime binary.
fn is_gvisor(path: &str) -> bool {
    std::path::Path::new(path)
        .file_name()
        .and_then(|f| f.to_str())
        .is_some_and(|f| f.starts_with("runsc"))
}

/// gVisor's `--network` argument of an entry (`sandbox` when it names none).
fn gvisor_network(args: &[String]) -> String {
    let mut words = args.iter();
    while let Some(arg) = words.next() {
        let arg = arg.trim_start_matches('-');
        if let Some(value) = arg.strip_prefix("network=") {
            return value.to_string();
        }
        if arg == "network" {
            if let Some(value) = words.next() {
                return value.clone();
            }
        }
    }
    "sandbox".into()
}

/// The daemon.json `runtimes` entry that runs `name` on `network` (gVisor needs
/// `--network=none` exactly when sessions have no network).
pub fn daemon_json_snippet(name: &str, network: &str) -> String {
    let args = if network == "none" {
        r#"["--network=none", "--oci-seccomp"]"#
    } else {
        r#"["--oci-seccomp"]"#
    };
    format!(
        r#"  "runtimes": {{ "{name}": {{ "path": "/usr/bin/runsc", "runtimeArgs": {args} }} }}"#
    )
}

/// Checks `name` against what the engine lists, for sessions on `network` (`none`,
/// or the name of a bridge network).
pub fn check(
    name: &str,
    listed: &BTreeMap<String, RuntimeEntry>,
    network: &str,
) -> Result<Runtime, RuntimeError> {
    let Some(entry) = listed.get(name) else {
        // runc is built in: engines that do not list it still have it.
        if name == "runc" {
            return Ok(Runtime::runc());
        }
        return Err(RuntimeError::NotListed {
            name: name.to_string(),
            listed: listed.keys().cloned().collect::<Vec<_>>().join(", "),
            snippet: daemon_json_snippet(name, network),
        });
    };
    let user_space_kernel = is_gvisor(&entry.path);
    if user_space_kernel {
        let arg = gvisor_network(&entry.args);
        let why = match (network == "none", arg.as_str()) {
            (true, "none") | (false, "sandbox") => None,
            (true, _) => Some(
                "a container without a network needs gVisor's --network=none \
                 (otherwise it refuses to start: network enabled in the root namespace)",
            ),
            (false, "none") => Some("--network=none gives the sandbox no network at all"),
            (false, _) => {
                Some("only gVisor's own network stack (sandbox) keeps the host's out of reach")
            }
        };
        if let Some(why) = why {
            return Err(RuntimeError::WrongNetworkArg {
                name: name.to_string(),
                arg: format!("--network={arg}"),
                network: network.to_string(),
                why,
                snippet: daemon_json_snippet(name, network),
            });
        }
    }
    Ok(Runtime {
        name: name.to_string(),
        path: entry.path.clone(),
        args: entry.args.clone(),
        user_space_kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(entries: &[(&str, &str, &[&str])]) -> BTreeMap<String, RuntimeEntry> {
        entries
            .iter()
            .map(|(name, path, args)| {
                (
                    name.to_string(),
                    RuntimeEntry {
                        path: path.to_string(),
                        args: args.iter().map(|a| a.to_string()).collect(),
                    },
                )
            })
            .collect()
    }

    fn engine() -> BTreeMap<String, RuntimeEntry> {
        listed(&[
            ("runc", "runc", &[]),
            (
                "runsc",
                "/usr/bin/runsc",
                &["--network=none", "--oci-seccomp"],
            ),
            ("runsc-net", "/usr/bin/runsc", &["--oci-seccomp"]),
            ("runsc-host", "/usr/bin/runsc", &["--network", "host"]),
        ])
    }

    #[test]
    fn runc_is_the_host_kernel_and_always_there() {
        let r = check("runc", &engine(), "none").unwrap();
        assert!(!r.user_space_kernel);
        assert_eq!(
            check("runc", &BTreeMap::new(), "none").unwrap(),
            Runtime::runc()
        );
        assert!(r.describe().contains("share the host kernel"));
    }

    #[test]
    fn gvisor_is_recognised_and_its_network_argument_must_fit_the_mode() {
        let r = check("runsc", &engine(), "none").unwrap();
        assert!(r.user_space_kernel);
        assert!(r.describe().contains("gVisor"));
        assert!(
            check("runsc-net", &engine(), "termcell-prod")
                .unwrap()
                .user_space_kernel
        );

        let err = check("runsc-net", &engine(), "none")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--network=none"), "{err}");
        assert!(
            err.contains(
                r#""runsc-net": { "path": "/usr/bin/runsc", "runtimeArgs": ["--network=none""#
            ),
            "{err}"
        );
        let err = check("runsc", &engine(), "termcell-prod")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no network at all"), "{err}");
        let err = check("runsc-host", &engine(), "termcell-prod")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--network=host"), "{err}");
    }

    #[test]
    fn an_unknown_runtime_names_what_the_engine_has_and_how_to_register_it() {
        let err = check("kata", &engine(), "none").unwrap_err().to_string();
        assert!(err.contains("runc, runsc, runsc-host, runsc-net"), "{err}");
        assert!(err.contains("daemon.json"), "{err}");
        assert!(err.contains("kill -HUP"), "{err}");
    }
}
