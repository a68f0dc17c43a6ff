//! Configuration: command-line flags > environment (`TERMCELL_*`, then the original
//! server's names) > TOML file > defaults, validated once into an immutable `Config`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use serde::Deserialize;
use termcell_actors::audit::AuditConfig;
use termcell_actors::monitor::MonitorConfig;
use termcell_actors::network::RestrictedNetwork;
use termcell_actors::recording::RecordingConfig;
use termcell_actors::SessionSettings;

use crate::protocol::AuthPolicy;

mod build;
mod recording;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for {setting}: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
    #[error("cannot read config file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML for termcell: {message}")]
    Toml { path: PathBuf, message: String },
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

/// termcell: a web terminal server that gives every browser session its own freshly
/// created, hardened Docker container.
#[derive(Debug, Parser)]
#[command(name = "termcell", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve terminals (the default).
    Serve,
    /// Create a sandbox with exactly the server's security profile, run the probe in it
    /// and print one PASS/FAIL line per property; exits non-zero on any FAIL.
    Verify {
        /// The statically linked probe binary (built by docker/build-programs.sh); default:
        /// termcell-probe in the --sandbox-programs directory.
        #[arg(long, env = "TERMCELL_PROBE")]
        probe: Option<PathBuf>,
    },
    /// Build the default sandbox image from the host's busybox and termcell's
    /// in-container programs (docker/build-programs.sh), and exit.
    BuildImage,
    /// Validate the flags, environment and --config file, print the configuration the
    /// server would run with (no secrets) and exit; starts nothing.
    CheckConfig,
}

/// Every setting. Each flag is also an environment variable and a key of the TOML file
/// (the flag name with `_` for `-`).
#[derive(Debug, Default, Clone, ClapArgs, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Settings {
    /// TOML configuration file (flags and environment override it).
    #[arg(long, env = "TERMCELL_CONFIG", global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Public listener ADDR:PORT (terminal page, WebSocket, /health, /ready, /metrics).
    /// `PORT` alone is also accepted (on 127.0.0.1). Default 127.0.0.1:8080.
    #[arg(long, env = "TERMCELL_LISTEN", global = true)]
    pub listen: Option<String>,
    /// Admin API listener ADDR:PORT, or `off`. Default 127.0.0.1:8081.
    #[arg(long, env = "TERMCELL_ADMIN_LISTEN", global = true)]
    pub admin_listen: Option<String>,
    /// File holding the admin bearer token (or set TERMCELL_ADMIN_TOKEN).
    #[arg(long, env = "TERMCELL_ADMIN_TOKEN_FILE", global = true)]
    pub admin_token_file: Option<PathBuf>,
    /// Sandbox image (also DOCKER_IMAGE_NAME). Default termcell-sandbox:latest, built at
    /// start when missing.
    #[arg(long, env = "TERMCELL_IMAGE", global = true)]
    pub image: Option<String>,
    /// Command run in the sandbox (space separated), or `restricted`: the restricted
    /// shell termcell-rsh (/usr/local/bin/termcell-rsh, in the default image), which runs
    /// only the commands its /etc/termcell/rsh.conf allows, each directly (no shell) with
    /// an allowlisted environment, and refuses ; | & > < ` $ and control characters. An
    /// image of your own gets it by copying the static termcell-rsh (from
    /// docker/build-programs.sh) to that path and an rsh.conf naming its commands, e.g.
    /// `ably = "/usr/local/bin/ably"` under `[commands]` (docs/security.md, "The
    /// restricted shell"). Default: the image's command (a busybox shell in the default
    /// image).
    #[arg(long, env = "TERMCELL_SHELL", global = true)]
    pub shell: Option<String>,
    /// Busybox the default image is built from: statically linked, or dynamically linked
    /// with its libraries on this host. Default /usr/lib/termcell/busybox (scripts/setup.sh).
    #[arg(long, env = "TERMCELL_BUSYBOX", global = true)]
    pub busybox: Option<PathBuf>,
    /// Directory of the static in-container programs (termcell-rsh for the default image,
    /// termcell-probe for `verify`), as docker/build-programs.sh leaves them. Default:
    /// beside the termcell binary, else that script's output in the target directory.
    #[arg(long, env = "TERMCELL_SANDBOX_PROGRAMS", global = true)]
    pub sandbox_programs: Option<PathBuf>,
    /// Name of this server's containers (label termcell.deployment); unique per host.
    #[arg(long, env = "TERMCELL_DEPLOYMENT", global = true)]
    pub deployment: Option<String>,
    /// At start, remove only leftover containers older than this many seconds (default:
    /// all leftovers of this deployment).
    #[arg(long, env = "TERMCELL_REAP_OLDER_THAN", global = true)]
    pub reap_older_than: Option<u64>,
    /// Directory of the deployment locks (one live server per deployment and host).
    /// Default /run/termcell for root or where writable, else $XDG_RUNTIME_DIR/termcell,
    /// else /tmp/termcell-UID.
    #[arg(long, env = "TERMCELL_LOCK_DIR", global = true)]
    pub lock_dir: Option<PathBuf>,
    /// Seconds between sweeps for containers that no live session owns. Default 60.
    #[arg(long, env = "TERMCELL_REAP_INTERVAL", global = true)]
    pub reap_interval: Option<u64>,

    /// Refuse sessions without apiKey or accessToken (4001).
    #[arg(long, env = "TERMCELL_REQUIRE_CREDENTIALS", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub require_credentials: Option<bool>,
    /// Extra environment variable names a client may set (comma separated).
    #[arg(long, env = "TERMCELL_ENV_ALLOW", global = true, value_delimiter = ',')]
    pub env_allow: Option<Vec<String>>,
    /// Seconds a client has to send its auth frame (1008 after). Default 10.
    #[arg(long, env = "TERMCELL_AUTH_TIMEOUT", global = true)]
    pub auth_timeout: Option<u64>,
    /// Largest auth frame in bytes (1009 above). Default 65536.
    #[arg(long, env = "TERMCELL_MAX_AUTH_BYTES", global = true)]
    pub max_auth_bytes: Option<usize>,
    /// Largest WebSocket message in bytes (1009 above). Default 1048576.
    #[arg(long, env = "TERMCELL_MAX_MESSAGE_BYTES", global = true)]
    pub max_message_bytes: Option<usize>,
    /// Browser origins allowed to open sessions (comma separated, e.g.
    /// https://docs.example.com); empty: only clients that send no Origin, and same-host
    /// pages.
    #[arg(
        long,
        env = "TERMCELL_ALLOWED_ORIGINS",
        global = true,
        value_delimiter = ','
    )]
    pub allowed_origins: Option<Vec<String>>,
    /// The address users open the page at (e.g. https://term.example.com): a page whose
    /// Origin is this may open sessions. A same-host page counts only on this host, an IP
    /// address or localhost, so a DNS-rebinding page cannot pass as the server's own.
    #[arg(long, env = "TERMCELL_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Open connections (HTTP and WebSocket) one client address may hold; trusted proxies
    /// count only against the total. Default 64.
    #[arg(long, env = "TERMCELL_MAX_CONNECTIONS_PER_IP", global = true)]
    pub max_connections_per_ip: Option<u32>,
    /// Open client connections in total. Default: the process's file descriptor limit less
    /// a reserve for the engine, the audit log and every session's TTY.
    #[arg(long, env = "TERMCELL_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<usize>,
    /// Proxies (IP addresses) whose X-Forwarded-For is trusted, comma separated.
    #[arg(
        long,
        env = "TERMCELL_TRUSTED_PROXIES",
        global = true,
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<IpAddr>>,

    /// Idle timeout in seconds: no input for this long ends the session (also
    /// SESSION_TIMEOUT_MS). Default 600.
    #[arg(long, env = "TERMCELL_IDLE_TIMEOUT", global = true)]
    pub idle_timeout: Option<u64>,
    /// Maximum session duration in seconds (also MAX_SESSION_DURATION_MS). Default 1800.
    #[arg(long, env = "TERMCELL_MAX_SESSION_DURATION", global = true)]
    pub max_session_duration: Option<u64>,
    /// Seconds a dropped session waits for a resume. Default 300.
    #[arg(long, env = "TERMCELL_RESUME_GRACE", global = true)]
    pub resume_grace: Option<u64>,
    /// Seconds a session waits for a resume after its page said it was closing (a closed
    /// tab, or a reload, which resumes within it). At most the resume grace. Default 15.
    #[arg(long, env = "TERMCELL_CLOSED_PAGE_GRACE", global = true)]
    pub closed_page_grace: Option<u64>,
    /// Seconds of warning before an idle or max-duration end. Default 60.
    #[arg(long, env = "TERMCELL_WARN_BEFORE", global = true)]
    pub warn_before: Option<u64>,
    /// Keep a model of each session's screen and draw it again on a client that resumes
    /// (false: a resumed client is only cleared, and each session saves the model's
    /// memory). Default true.
    #[arg(long, env = "TERMCELL_SCREEN_MODEL", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub screen_model: Option<bool>,
    /// Rows of scrollback kept per session above its screen, drawn again when a client
    /// resumes (each row costs up to 32 bytes per column). Default 80, at most 10000.
    #[arg(long, env = "TERMCELL_SCROLLBACK_LINES", global = true)]
    pub scrollback_lines: Option<usize>,
    /// Seconds between WebSocket pings. Default 15.
    #[arg(long, env = "TERMCELL_HEARTBEAT_INTERVAL", global = true)]
    pub heartbeat_interval: Option<u64>,
    /// Seconds without any frame from the client (pongs included) before the socket
    /// counts as dropped; also how long a client may take no output before its session is
    /// detached and its connection dropped (TCP user timeout). Default 45.
    #[arg(long, env = "TERMCELL_CLIENT_TIMEOUT", global = true)]
    pub client_timeout: Option<u64>,
    /// Terminal size until the client resizes, COLSxROWS. Default 100x30.
    #[arg(long, env = "TERMCELL_DEFAULT_SIZE", global = true)]
    pub default_size: Option<String>,

    /// Sandboxes kept started and waiting for a session (the warm pool; needs the entry
    /// program in the image): a session takes one at once instead of starting a container.
    /// 0 turns the pool off. Default 2.
    #[arg(long, env = "TERMCELL_POOL_SIZE", global = true)]
    pub pool_size: Option<usize>,
    /// Live sessions on this server (also MAX_SESSIONS; 4009 above). Default 50.
    #[arg(long, env = "TERMCELL_MAX_SESSIONS", global = true)]
    pub max_sessions: Option<usize>,
    /// Live sessions per client address (also MAX_CONCURRENT_CONNECTIONS; 4003 above).
    /// Default 5.
    #[arg(long, env = "TERMCELL_MAX_SESSIONS_PER_IP", global = true)]
    pub max_sessions_per_ip: Option<u32>,
    /// New connections per client address per minute (HTTP 429 above). Default 30.
    #[arg(long, env = "TERMCELL_CONNECTIONS_PER_MINUTE", global = true)]
    pub connections_per_minute: Option<u32>,
    /// Burst of new connections per client address. Default 10.
    #[arg(long, env = "TERMCELL_CONNECTION_BURST", global = true)]
    pub connection_burst: Option<u32>,
    /// Enter presses per session per minute (also MAX_COMMANDS_PER_MINUTE). Default 30.
    #[arg(long, env = "TERMCELL_COMMANDS_PER_MINUTE", global = true)]
    pub commands_per_minute: Option<u32>,
    /// Enter presses a session may make at once before the per-minute rate applies (a
    /// pasted script of this many lines runs whole). Default 100.
    #[arg(long, env = "TERMCELL_COMMAND_BURST", global = true)]
    pub command_burst: Option<u32>,
    /// Input bytes per second per session. Default 65536.
    #[arg(long, env = "TERMCELL_INPUT_BYTES_PER_SECOND", global = true)]
    pub input_bytes_per_second: Option<u32>,
    /// Largest paste accepted at once, in bytes, before the per-second rate applies.
    /// Default 262144.
    #[arg(long, env = "TERMCELL_INPUT_BURST_BYTES", global = true)]
    pub input_burst_bytes: Option<u32>,
    /// Resizes per second per session. Default 10.
    #[arg(long, env = "TERMCELL_RESIZES_PER_SECOND", global = true)]
    pub resizes_per_second: Option<u32>,
    /// Resume attempts per session id per minute (also RESUME_MAX_ATTEMPTS). Default 3.
    #[arg(long, env = "TERMCELL_RESUME_MAX_ATTEMPTS", global = true)]
    pub resume_max_attempts: Option<u32>,

    /// Sandbox memory in MiB, swap off. Default 256.
    #[arg(long, env = "TERMCELL_MEMORY_MB", global = true)]
    pub memory_mb: Option<i64>,
    /// Sandbox CPUs (fractions allowed). Default 1.
    #[arg(long, env = "TERMCELL_CPUS", global = true)]
    pub cpus: Option<f64>,
    /// Sandbox process limit. Default 50.
    #[arg(long, env = "TERMCELL_PIDS_LIMIT", global = true)]
    pub pids_limit: Option<i64>,
    /// Size of the /tmp tmpfs (Docker units). Default 64m.
    #[arg(long, env = "TERMCELL_TMP_SIZE", global = true)]
    pub tmp_size: Option<String>,
    /// Size of the /run tmpfs. Default 32m.
    #[arg(long, env = "TERMCELL_RUN_SIZE", global = true)]
    pub run_size: Option<String>,
    /// The CLI config directory (a 0700 tmpfs owned by the user), or `off`. Default
    /// /home/user/.ably.
    #[arg(long, env = "TERMCELL_CONFIG_DIR", global = true)]
    pub config_dir: Option<String>,
    /// Sandbox uid:gid (never 0). Default 1000:1000.
    #[arg(long, env = "TERMCELL_USER", global = true)]
    pub user: Option<String>,
    /// Network of sandboxes: `none` (no network), `restricted` (termcell's own bridge:
    /// only the names of --egress-allow are reachable, enforced on the host with nftables;
    /// needs root and `nft`), or a Docker network the operator made; never `host`.
    /// Default none.
    #[arg(long, env = "TERMCELL_NETWORK", global = true)]
    pub network: Option<String>,
    /// With --network restricted: the destinations sessions may reach,
    /// `HOST[:PORT][/udp],…` (exact names or `*.example.com`; port default 443; TCP unless
    /// `/udp`), e.g. `rest.ably.io,*.ably-realtime.com`.
    #[arg(long, env = "TERMCELL_EGRESS_ALLOW", global = true)]
    pub egress_allow: Option<String>,
    /// With --network restricted: the DNS servers allowed names are looked up at,
    /// `ADDR[:PORT],…`. Default: the nameservers of /etc/resolv.conf.
    #[arg(long, env = "TERMCELL_DNS_UPSTREAM", global = true)]
    pub dns_upstream: Option<String>,
    /// Shortest time (seconds) an answered address stays allowed, whatever its TTL.
    /// Default 30.
    #[arg(long, env = "TERMCELL_DNS_TTL_MIN", global = true)]
    pub dns_ttl_min: Option<u64>,
    /// Longest time (seconds) an answered address stays allowed before it must be looked
    /// up again; longer TTLs are cut to this in the answer. Default 300.
    #[arg(long, env = "TERMCELL_DNS_TTL_MAX", global = true)]
    pub dns_ttl_max: Option<u64>,
    /// The OCI runtime of sessions: `runc` (the host kernel behind the seccomp allowlist)
    /// or a gVisor runtime registered in the engine's daemon.json (e.g. `runsc`: a
    /// user-space kernel between the session and the host; docs/security.md, "Isolation
    /// tiers"). Checked against the engine at start. Default runc.
    #[arg(long, env = "TERMCELL_RUNTIME", global = true)]
    pub runtime: Option<String>,
    /// A seccomp profile of your own (JSON file) instead of the bundled allowlist.
    #[arg(long, env = "TERMCELL_SECCOMP_PROFILE", global = true)]
    pub seccomp_profile: Option<PathBuf>,
    /// AppArmor profile applied when the host enforces AppArmor. Default termcell-sandbox.
    #[arg(long, env = "TERMCELL_APPARMOR_PROFILE", global = true)]
    pub apparmor_profile: Option<String>,
    /// Keep sandbox output in Docker's json-file log with this max-size (e.g. 1m);
    /// default: log driver none.
    #[arg(long, env = "TERMCELL_LOG_MAX_SIZE", global = true)]
    pub log_max_size: Option<String>,

    /// Write the audit log (also AUDIT_LOGGING). Default true.
    #[arg(long, env = "TERMCELL_AUDIT_LOGGING", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub audit_logging: Option<bool>,
    /// Audit log file (JSON lines). Default /var/log/termcell/audit.log.
    #[arg(long, env = "TERMCELL_AUDIT_LOG", global = true)]
    pub audit_log: Option<PathBuf>,
    /// Rotate the audit log above this many bytes. Default 104857600.
    #[arg(long, env = "TERMCELL_AUDIT_MAX_BYTES", global = true)]
    pub audit_max_bytes: Option<u64>,
    /// The audit files together stay under this many bytes (oldest rotated files are
    /// deleted first); at least twice --audit-max-bytes. Default 1073741824.
    #[arg(long, env = "TERMCELL_AUDIT_MAX_TOTAL_BYTES", global = true)]
    pub audit_max_total_bytes: Option<u64>,
    /// Seconds over which rejections without a session are counted per client and kind
    /// into one audit line. Default 60.
    #[arg(long, env = "TERMCELL_AUDIT_REPEAT_WINDOW", global = true)]
    pub audit_repeat_window: Option<u64>,
    /// Days rotated audit logs are kept (also AUDIT_LOG_RETENTION_DAYS). Default 365.
    #[arg(long, env = "TERMCELL_AUDIT_RETENTION_DAYS", global = true)]
    pub audit_retention_days: Option<u32>,
    /// Seconds between two samples of every session's resource use (cgroup CPU, memory,
    /// processes; WebSocket bytes), shown by the admin API and /metrics. Default 5.
    #[arg(long, env = "TERMCELL_MONITOR_INTERVAL", global = true)]
    pub monitor_interval: Option<u64>,
    /// A session's memory above this percent of its limit is audited (resource.memory),
    /// once per episode. Default 90.
    #[arg(long, env = "TERMCELL_ALERT_MEMORY_PERCENT", global = true)]
    pub alert_memory_percent: Option<u8>,
    /// A session's processes above this percent of its pids limit are audited
    /// (resource.pids), once per episode. Default 80.
    #[arg(long, env = "TERMCELL_ALERT_PIDS_PERCENT", global = true)]
    pub alert_pids_percent: Option<u8>,
    /// Seconds a session's CPU must be throttled in most scheduler periods, or its output
    /// stay above --alert-output-bytes-per-second, before it is audited (resource.cpu,
    /// resource.output). Default 60.
    #[arg(long, env = "TERMCELL_ALERT_SUSTAINED", global = true)]
    pub alert_sustained: Option<u64>,
    /// Output rate (bytes a second, averaged over --alert-sustained) above which a
    /// session is audited (resource.output). Default 1048576.
    #[arg(long, env = "TERMCELL_ALERT_OUTPUT_BYTES_PER_SECOND", global = true)]
    pub alert_output_bytes_per_second: Option<u64>,
    /// Make the most dangerous system calls the seccomp profile refuses (unshare, mount,
    /// ptrace, keyctl, bpf, …) kill the calling process instead of failing with EPERM,
    /// so that the kernel logs them and each is audited for its session
    /// (security.seccomp). Needs root (/dev/kmsg), no auditd, runc, and /bin/sh in the
    /// image (it becomes the entrypoint). Default false.
    #[arg(long, env = "TERMCELL_SYSCALL_AUDIT", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub syscall_audit: Option<bool>,
    /// Record every session to an asciicast v2 file `<session id>.cast` in this directory
    /// (output and resizes; input only with --record-input). Default: off. Tell users
    /// (docs/operations.md, "Session recording").
    #[arg(long, env = "TERMCELL_RECORD_DIR", global = true)]
    pub record_dir: Option<PathBuf>,
    /// Also record what users type (it can carry passwords and keys they type). Default
    /// false.
    #[arg(long, env = "TERMCELL_RECORD_INPUT", global = true, num_args = 0..=1, default_missing_value = "true")]
    pub record_input: Option<bool>,
    /// A session's recording stops at this many bytes and is marked truncated. Default
    /// 67108864.
    #[arg(long, env = "TERMCELL_RECORD_MAX_BYTES", global = true)]
    pub record_max_bytes: Option<u64>,
    /// Days finished recordings are kept (0 keeps them all). Default 30.
    #[arg(long, env = "TERMCELL_RECORD_RETENTION_DAYS", global = true)]
    pub record_retention_days: Option<u32>,
    /// The recordings together stay under this many bytes (the oldest finished ones are
    /// deleted first); at least twice --record-max-bytes. Default 10737418240.
    #[arg(long, env = "TERMCELL_RECORD_MAX_TOTAL_BYTES", global = true)]
    pub record_max_total_bytes: Option<u64>,
    /// Operators that may watch one session at once through the admin API's live
    /// read-only view (1..=64). Default 4.
    #[arg(long, env = "TERMCELL_MAX_VIEWERS", global = true)]
    pub max_viewers: Option<usize>,
    /// Seconds a shutdown waits for sessions to end before exiting. Default 20.
    #[arg(long, env = "TERMCELL_SHUTDOWN_TIMEOUT", global = true)]
    pub shutdown_timeout: Option<u64>,
    /// `TERMCELL_ADMIN_TOKEN`, read from the environment only (never a flag: a flag would
    /// show in the process list).
    #[arg(skip)]
    #[serde(skip)]
    pub admin_token_env: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub admin_token: Option<String>,
    pub busybox: PathBuf,
    /// `None`: looked for beside the binary and in the build script's output.
    pub sandbox_programs: Option<PathBuf>,
    pub default_image: bool,
    pub reap_older_than: Option<Duration>,
    /// Where the deployment lock is taken (`deployment_lock`).
    pub lock_dir: PathBuf,
    pub auth_policy: AuthPolicy,
    pub auth_timeout: Duration,
    pub max_auth_bytes: usize,
    pub max_message_bytes: usize,
    pub allowed_origins: Vec<String>,
    /// The page's own origin (`scheme://host[:port]`, lower case), when configured.
    pub public_origin: Option<String>,
    pub max_connections_per_ip: u32,
    /// `None`: derived from the file descriptor limit at start.
    pub max_connections: Option<usize>,
    pub trusted_proxies: Vec<IpAddr>,
    pub heartbeat_interval: Duration,
    pub client_timeout: Duration,
    pub session: SessionSettings,
    /// Set with `--network restricted`: the allowlist and its resolver's settings.
    pub restricted: Option<RestrictedNetwork>,
    pub audit: AuditConfig,
    /// `--record-dir`: how sessions are recorded; `None` records nothing.
    pub recording: Option<RecordingConfig>,
    pub shutdown_timeout: Duration,
    pub monitor: MonitorConfig,
}

pub const DEFAULT_IMAGE: &str = "termcell-sandbox:latest";

/// Reads an environment variable: the process's, or a test's own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The original server's environment names, read below the `TERMCELL_*` ones.
struct Legacy<'a>(Env<'a>);

impl Legacy<'_> {
    fn var(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, name: &'static str) -> Result<Option<T>, ConfigError> {
        self.var(name)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| invalid(name, format!("{v:?} is not a valid number")))
            })
            .transpose()
    }

    fn millis_as_secs(&self, name: &'static str) -> Result<Option<u64>, ConfigError> {
        Ok(self.parse::<u64>(name)?.map(|ms| ms.div_ceil(1000)))
    }

    fn bool(&self, name: &'static str) -> Result<Option<bool>, ConfigError> {
        self.var(name)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(invalid(name, format!("{v:?} is not true or false"))),
            })
            .transpose()
    }
}

impl Settings {
    /// Fills what flags and `TERMCELL_*` left unset from the original server's names, then
    /// from the file.
    fn layer(mut self, env: Env<'_>) -> Result<Settings, ConfigError> {
        let legacy = Legacy(env);
        self.admin_token_env = env("TERMCELL_ADMIN_TOKEN");
        macro_rules! below {
            ($field:ident, $value:expr) => {
                if self.$field.is_none() {
                    self.$field = $value;
                }
            };
        }
        below!(
            listen,
            legacy
                .parse::<u16>("PORT")?
                .map(|p| format!("127.0.0.1:{p}"))
        );
        below!(image, legacy.var("DOCKER_IMAGE_NAME"));
        below!(idle_timeout, legacy.millis_as_secs("SESSION_TIMEOUT_MS")?);
        below!(
            max_session_duration,
            legacy.millis_as_secs("MAX_SESSION_DURATION_MS")?
        );
        below!(
            max_sessions_per_ip,
            legacy.parse("MAX_CONCURRENT_CONNECTIONS")?
        );
        below!(
            commands_per_minute,
            legacy.parse("MAX_COMMANDS_PER_MINUTE")?
        );
        below!(resume_max_attempts, legacy.parse("RESUME_MAX_ATTEMPTS")?);
        below!(audit_logging, legacy.bool("AUDIT_LOGGING")?);
        below!(
            audit_retention_days,
            legacy.parse("AUDIT_LOG_RETENTION_DAYS")?
        );
        below!(max_sessions, legacy.parse("MAX_SESSIONS")?);
        if let Some(path) = self.config.clone() {
            let file = Settings::from_file(&path)?;
            self = self.or(file);
        }
        Ok(self)
    }

    fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Toml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Every field unset here taken from `other`.
    fn or(self, other: Settings) -> Settings {
        macro_rules! merge {
            ($($field:ident),* $(,)?) => {
                Settings { $($field: self.$field.or(other.$field),)* }
            };
        }
        merge!(
            config,
            listen,
            admin_listen,
            admin_token_file,
            image,
            shell,
            busybox,
            sandbox_programs,
            deployment,
            reap_older_than,
            lock_dir,
            reap_interval,
            require_credentials,
            env_allow,
            auth_timeout,
            max_auth_bytes,
            max_message_bytes,
            allowed_origins,
            public_url,
            max_connections_per_ip,
            max_connections,
            trusted_proxies,
            idle_timeout,
            max_session_duration,
            resume_grace,
            closed_page_grace,
            warn_before,
            screen_model,
            scrollback_lines,
            heartbeat_interval,
            client_timeout,
            default_size,
            pool_size,
            max_sessions,
            max_sessions_per_ip,
            connections_per_minute,
            connection_burst,
            commands_per_minute,
            command_burst,
            input_bytes_per_second,
            input_burst_bytes,
            resizes_per_second,
            resume_max_attempts,
            memory_mb,
            cpus,
            pids_limit,
            tmp_size,
            run_size,
            config_dir,
            user,
            network,
            egress_allow,
            dns_upstream,
            dns_ttl_min,
            dns_ttl_max,
            runtime,
            seccomp_profile,
            apparmor_profile,
            log_max_size,
            audit_logging,
            audit_log,
            audit_max_bytes,
            audit_max_total_bytes,
            audit_repeat_window,
            audit_retention_days,
            monitor_interval,
            alert_memory_percent,
            alert_pids_percent,
            alert_sustained,
            alert_output_bytes_per_second,
            syscall_audit,
            record_dir,
            record_input,
            record_max_bytes,
            record_retention_days,
            record_max_total_bytes,
            max_viewers,
            shutdown_timeout,
            admin_token_env,
        )
    }
}

impl Config {
    /// Resolves and validates every setting; the error names the setting.
    pub fn from_settings(settings: Settings) -> Result<Config, ConfigError> {
        Self::from_settings_in(settings, &|name| std::env::var(name).ok())
    }

    /// The configuration as `check-config` prints it: the admin token only as set or
    /// unset, the seccomp profile by its size.
    pub fn redacted(&self) -> String {
        let mut shown = self.clone();
        shown.admin_token = self.admin_token.as_ref().map(|_| "<set>".to_string());
        let seccomp = &mut shown.session.profile.seccomp_json;
        *seccomp = format!("<{} bytes of JSON>", seccomp.len());
        format!("{shown:#?}")
    }

    /// The same with the environment read through `env` (tests pass their own).
    pub fn from_settings_in(settings: Settings, env: Env<'_>) -> Result<Config, ConfigError> {
        build::config(&settings.layer(env)?)
    }
}

#[cfg(test)]
mod tests;
