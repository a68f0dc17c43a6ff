//! `termcell verify`: runs the probe in a sandbox created with exactly the server's
//! security profile and reports one PASS/FAIL line per property.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use termcell_actors::docker::{DockerEngine, DockerError, HostConfig};
use termcell_actors::network::guard::RestrictedNet;
use termcell_actors::profile::{labels, ContainerSpec, SecurityProfile};

use crate::config::Config;
use crate::image;
use crate::server::StartError;

pub const PROBE_IMAGE: &str = "termcell-probe:latest";

/// What the probe printed and how it exited.
#[derive(Debug)]
pub struct ProbeRun {
    pub exit_code: i64,
    pub output: String,
}

impl ProbeRun {
    pub fn count(&self, verdict: &str) -> usize {
        self.output
            .lines()
            .filter(|l| l.starts_with(&format!("{verdict} ")))
            .count()
    }
}

/// The probe's expectations, from the profile it checks.
pub fn probe_env(profile: &SecurityProfile) -> Vec<String> {
    let mut env = vec![
        format!("TERMCELL_PROBE_PIDS={}", profile.pids_limit),
        format!("TERMCELL_PROBE_MEMORY={}", profile.memory_bytes),
        format!("TERMCELL_PROBE_CPUS={}", profile.nano_cpus as f64 / 1e9),
        "HOME=/home/user".to_string(),
    ];
    if let Some(dir) = &profile.config_dir {
        env.push(format!("TERMCELL_PROBE_CONFIG_DIR={dir}"));
    }
    if profile.user_space_kernel {
        // The probe reports what gVisor does differently as NOTE, and skips the checks
        // whose limits would end its whole sandbox.
        env.push("TERMCELL_PROBE_RUNTIME=gvisor".to_string());
    }
    env
}

/// Runs the probe image in a new container with `host_config` (the profile under test)
/// and collects what it prints.
pub async fn run_probe(
    engine: &DockerEngine,
    host_config: HostConfig,
    user: &str,
    env: Vec<String>,
    deployment: &str,
) -> Result<ProbeRun, DockerError> {
    let name = format!("termcell-verify-{}", uuid::Uuid::new_v4().simple());
    let spec = ContainerSpec {
        image: PROBE_IMAGE,
        entrypoint: None,
        cmd: None,
        env,
        labels: HashMap::from([
            (
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            ),
            (labels::DEPLOYMENT.to_string(), deployment.to_string()),
            (labels::INSTANCE.to_string(), "verify".to_string()),
            (labels::SESSION.to_string(), name.clone()),
        ]),
        cols: 120,
        rows: 40,
    };
    let mut body = SecurityProfile::default().create_body(&spec);
    body.user = Some(user.to_string());
    body.open_stdin = Some(false);
    body.network_disabled = Some(host_config.network_mode.as_deref() == Some("none"));
    body.host_config = Some(host_config);
    let (exit_code, output) = engine
        .run_to_completion(&name, body, Duration::from_secs(180), 1024 * 1024)
        .await?;
    Ok(ProbeRun {
        exit_code,
        output: String::from_utf8_lossy(&output).replace('\r', ""),
    })
}

/// The `verify` command on a connected engine: the process exit code (0 when every check
/// passed), or why the probe could not run.
pub async fn run(
    engine: &DockerEngine,
    config: Config,
    probe: Option<PathBuf>,
    profile: SecurityProfile,
    network: Option<&RestrictedNet>,
) -> Result<i32, StartError> {
    let probe = probe.unwrap_or_else(|| {
        image::programs::locate(image::programs::PROBE, config.sandbox_programs.as_deref())
    });
    image::build_probe(engine, PROBE_IMAGE, &probe).await?;
    let user = format!("{}:{}", profile.uid, profile.gid);
    let mut env = probe_env(&profile);
    if let Some(net) = network {
        // The probe checks the restricted network's enforcement from inside.
        env.push(format!(
            "TERMCELL_PROBE_NETWORK=restricted:{}",
            net.info.gateway
        ));
    }
    let run = run_probe(
        engine,
        profile.host_config(),
        &user,
        env,
        &config.session.deployment,
    )
    .await
    .map_err(StartError::Probe)?;
    print!("{}", run.output);
    let failed = run.count("FAIL");
    let noted = run.count("NOTE");
    if run.exit_code == 0 && failed == 0 && run.count("PASS") > 0 {
        if noted > 0 {
            println!(
                "verify: the server's sandbox profile holds on this host, with {noted} difference(s) of the runtime stated above"
            );
        } else {
            println!("verify: the server's sandbox profile holds on this host");
        }
        Ok(0)
    } else {
        println!(
            "verify: {failed} check(s) failed (probe exit code {})",
            run.exit_code
        );
        Ok(1)
    }
}
