//! Configuration: command-line flags > environment (`TERMCELL_*`, then the original
//! server's names) > TOML file > defaults, validated once into an immutable `Config`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use serde::Deserialize;
use termcell_actors::audit::AuditConfig;
use termcell_actors::profile::{SecurityProfile, BUNDLED_SECCOMP};
use termcell_actors::ratelimit::RateLimitConfig;
use termcell_actors::SessionSettings;

use crate::protocol::AuthPolicy;

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
        /// The statically linked probe binary (built by docker/build-probe.sh).
        #[arg(long, env = "TERMCELL_PROBE")]
        probe: Option<PathBuf>,
    },
    /// Build the default sandbox image from the host's busybox and exit.
    BuildImage,
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
    /// Command run in the sandbox (space separated); default: the image's command.
    #[arg(long, env = "TERMCELL_SHELL", global = true)]
    pub shell: Option<String>,
    /// Busybox the default image is built from: statically linked, or dynamically linked
    /// with its libraries on this host. Default /usr/lib/termcell/busybox (scripts/setup.sh).
    #[arg(long, env = "TERMCELL_BUSYBOX", global = true)]
    pub busybox: Option<PathBuf>,
    /// Name of this server's containers (label termcell.deployment); unique per host.
    #[arg(long, env = "TERMCELL_DEPLOYMENT", global = true)]
    pub deployment: Option<String>,
    /// At start, remove only leftover containers older than this many seconds (default:
    /// all leftovers of this deployment).
    #[arg(long, env = "TERMCELL_REAP_OLDER_THAN", global = true)]
    pub reap_older_than: Option<u64>,
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
    pub max_connections_per_ip: Option<usize>,
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
    /// Seconds of warning before an idle or max-duration end. Default 60.
    #[arg(long, env = "TERMCELL_WARN_BEFORE", global = true)]
    pub warn_before: Option<u64>,
    /// Bytes of output kept per session for replay on resume. Default 262144.
    #[arg(long, env = "TERMCELL_REPLAY_BYTES", global = true)]
    pub replay_bytes: Option<usize>,
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
    /// Docker network mode of sandboxes (`none`, or a restricted network's name; never
    /// `host`). Default none.
    #[arg(long, env = "TERMCELL_NETWORK", global = true)]
    pub network: Option<String>,
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
    /// Audit log file (JSON lines). Default ./termcell-audit.log.
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
    /// Seconds a shutdown waits for sessions to end before exiting. Default 20.
    #[arg(long, env = "TERMCELL_SHUTDOWN_TIMEOUT", global = true)]
    pub shutdown_timeout: Option<u64>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub admin_token: Option<String>,
    pub busybox: PathBuf,
    pub default_image: bool,
    pub reap_older_than: Option<Duration>,
    pub auth_policy: AuthPolicy,
    pub auth_timeout: Duration,
    pub max_auth_bytes: usize,
    pub max_message_bytes: usize,
    pub allowed_origins: Vec<String>,
    /// The page's own origin (`scheme://host[:port]`, lower case), when configured.
    pub public_origin: Option<String>,
    pub max_connections_per_ip: usize,
    /// `None`: derived from the file descriptor limit at start.
    pub max_connections: Option<usize>,
    pub trusted_proxies: Vec<IpAddr>,
    pub heartbeat_interval: Duration,
    pub client_timeout: Duration,
    pub session: SessionSettings,
    pub audit: AuditConfig,
    pub shutdown_timeout: Duration,
}

pub const DEFAULT_IMAGE: &str = "termcell-sandbox:latest";

/// The original server's environment names, read below the `TERMCELL_*` ones.
struct Legacy;

impl Legacy {
    fn var(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }

    fn parse<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, ConfigError> {
        Self::var(name)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| invalid(name, format!("{v:?} is not a valid number")))
            })
            .transpose()
    }

    fn millis_as_secs(name: &'static str) -> Result<Option<u64>, ConfigError> {
        Ok(Self::parse::<u64>(name)?.map(|ms| ms.div_ceil(1000)))
    }

    fn bool(name: &'static str) -> Result<Option<bool>, ConfigError> {
        Self::var(name)
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
    fn layer(mut self) -> Result<Settings, ConfigError> {
        macro_rules! below {
            ($field:ident, $value:expr) => {
                if self.$field.is_none() {
                    self.$field = $value;
                }
            };
        }
        below!(
            listen,
            Legacy::parse::<u16>("PORT")?.map(|p| format!("127.0.0.1:{p}"))
        );
        below!(image, Legacy::var("DOCKER_IMAGE_NAME"));
        below!(idle_timeout, Legacy::millis_as_secs("SESSION_TIMEOUT_MS")?);
        below!(
            max_session_duration,
            Legacy::millis_as_secs("MAX_SESSION_DURATION_MS")?
        );
        below!(
            max_sessions_per_ip,
            Legacy::parse("MAX_CONCURRENT_CONNECTIONS")?
        );
        below!(
            commands_per_minute,
            Legacy::parse("MAX_COMMANDS_PER_MINUTE")?
        );
        below!(resume_max_attempts, Legacy::parse("RESUME_MAX_ATTEMPTS")?);
        below!(audit_logging, Legacy::bool("AUDIT_LOGGING")?);
        below!(
            audit_retention_days,
            Legacy::parse("AUDIT_LOG_RETENTION_DAYS")?
        );
        below!(max_sessions, Legacy::parse("MAX_SESSIONS")?);
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
            deployment,
            reap_older_than,
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
            warn_before,
            replay_bytes,
            heartbeat_interval,
            client_timeout,
            default_size,
            max_sessions,
            max_sessions_per_ip,
            connections_per_minute,
            connection_burst,
            commands_per_minute,
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
            seccomp_profile,
            apparmor_profile,
            log_max_size,
            audit_logging,
            audit_log,
            audit_max_bytes,
            audit_max_total_bytes,
            audit_repeat_window,
            audit_retention_days,
            shutdown_timeout,
        )
    }
}

fn socket_addr(setting: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    value
        .parse()
        .map_err(|_| invalid(setting, format!("{value:?} is not ADDR:PORT")))
}

/// `scheme://host[:port]` of a public URL, as a browser writes it in `Origin`.
fn public_origin(url: &str) -> Result<String, ConfigError> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| invalid("public-url", format!("{url:?} is not an http(s) URL")))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Err(invalid("public-url", format!("{url:?} has no host")));
    }
    let scheme = if lower.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    // A browser leaves the default port out of an Origin.
    let host = match (scheme, host.rsplit_once(':')) {
        ("https", Some((h, "443"))) | ("http", Some((h, "80"))) => h,
        _ => host,
    };
    Ok(format!("{scheme}://{host}"))
}

fn positive(setting: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        Err(invalid(setting, "must be greater than 0"))
    } else {
        Ok(value)
    }
}

fn tmpfs_size(setting: &'static str, value: String) -> Result<String, ConfigError> {
    let digits = value.trim_end_matches(['k', 'm', 'g', 'K', 'M', 'G']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            setting,
            format!("{value:?} is not a size like 64m"),
        ));
    }
    Ok(value)
}

impl Config {
    /// Resolves and validates every setting; the error names the setting.
    pub fn from_settings(settings: Settings) -> Result<Config, ConfigError> {
        let s = settings.layer()?;
        let listen = socket_addr("listen", s.listen.as_deref().unwrap_or("127.0.0.1:8080"))?;
        let admin_listen = match s.admin_listen.as_deref().unwrap_or("127.0.0.1:8081") {
            "off" | "none" | "" => None,
            v => Some(socket_addr("admin-listen", v)?),
        };
        let admin_token = match (&s.admin_token_file, std::env::var("TERMCELL_ADMIN_TOKEN")) {
            (Some(path), _) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| invalid("admin-token-file", format!("{}: {e}", path.display())))?
                    .trim()
                    .to_string(),
            ),
            (None, Ok(token)) => Some(token.trim().to_string()),
            (None, Err(_)) => None,
        }
        .filter(|t| !t.is_empty());
        if let (Some(token), Some(_)) = (&admin_token, &admin_listen) {
            if token.len() < 16 {
                return Err(invalid("admin token", "use at least 16 characters"));
            }
        }
        if let Some(addr) = admin_listen {
            if !addr.ip().is_loopback() && admin_token.is_none() {
                return Err(invalid(
                    "admin-listen",
                    format!("{addr} is not a loopback address: set TERMCELL_ADMIN_TOKEN or --admin-token-file"),
                ));
            }
        }

        let image = s.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.to_string());
        let deployment = s.deployment.clone().unwrap_or_else(|| "termcell".into());
        if deployment.is_empty()
            || !deployment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(invalid(
                "deployment",
                "use letters, digits, '-', '_' or '.' only",
            ));
        }

        let (uid, gid) = match s.user.as_deref().unwrap_or("1000:1000").split_once(':') {
            Some((u, g)) => (
                u.parse::<u32>()
                    .map_err(|_| invalid("user", "uid:gid, numbers"))?,
                g.parse::<u32>()
                    .map_err(|_| invalid("user", "uid:gid, numbers"))?,
            ),
            None => return Err(invalid("user", "uid:gid, e.g. 1000:1000")),
        };
        if uid == 0 || gid == 0 {
            return Err(invalid("user", "the sandbox user is never root (0)"));
        }
        let network = s.network.clone().unwrap_or_else(|| "none".into());
        if network == "host" || network.starts_with("container:") {
            return Err(invalid(
                "network",
                "sandboxes never share the host's or another container's network",
            ));
        }
        let seccomp_json = match &s.seccomp_profile {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| invalid("seccomp-profile", format!("{}: {e}", path.display())))?;
                serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                    invalid(
                        "seccomp-profile",
                        format!("{} is not JSON: {e}", path.display()),
                    )
                })?;
                text
            }
            None => termcell_actors::profile::seccomp_for_native_arch(BUNDLED_SECCOMP)
                .map_err(|e| invalid("seccomp-profile", e.to_string()))?,
        };
        // Compact: the profile travels inside a create request.
        let seccomp_json = serde_json::to_string(
            &serde_json::from_str::<serde_json::Value>(&seccomp_json)
                .map_err(|e| invalid("seccomp-profile", e.to_string()))?,
        )
        .map_err(|e| invalid("seccomp-profile", e.to_string()))?;
        let cpus = s.cpus.unwrap_or(1.0);
        if !(0.01..=64.0).contains(&cpus) {
            return Err(invalid("cpus", "between 0.01 and 64"));
        }
        let memory_mb = s.memory_mb.unwrap_or(256);
        if !(16..=65536).contains(&memory_mb) {
            return Err(invalid("memory-mb", "between 16 and 65536"));
        }
        let pids_limit = s.pids_limit.unwrap_or(50);
        if !(5..=100_000).contains(&pids_limit) {
            return Err(invalid("pids-limit", "between 5 and 100000"));
        }
        let config_dir = match s.config_dir.as_deref().unwrap_or("/home/user/.ably") {
            "off" | "none" | "" => None,
            dir if dir.starts_with('/') && !dir.contains("..") => Some(dir.to_string()),
            dir => {
                return Err(invalid(
                    "config-dir",
                    format!("{dir:?} is not an absolute path"),
                ))
            }
        };
        let profile = SecurityProfile {
            memory_bytes: memory_mb * 1024 * 1024,
            nano_cpus: (cpus * 1e9) as i64,
            pids_limit,
            tmp_size: tmpfs_size(
                "tmp-size",
                s.tmp_size.clone().unwrap_or_else(|| "64m".into()),
            )?,
            run_size: tmpfs_size(
                "run-size",
                s.run_size.clone().unwrap_or_else(|| "32m".into()),
            )?,
            config_dir,
            uid,
            gid,
            seccomp_json,
            apparmor_profile: Some(
                s.apparmor_profile
                    .clone()
                    .unwrap_or_else(|| "termcell-sandbox".into()),
            ),
            network_mode: network,
            log_max_size: s.log_max_size.clone(),
            ..SecurityProfile::default()
        };

        let (default_cols, default_rows) = match s
            .default_size
            .as_deref()
            .unwrap_or("100x30")
            .split_once('x')
        {
            Some((c, r)) => (
                c.parse::<u16>()
                    .ok()
                    .filter(|c| (1..=1000).contains(c))
                    .ok_or_else(|| invalid("default-size", "COLSxROWS within 1..1000 x 1..500"))?,
                r.parse::<u16>()
                    .ok()
                    .filter(|r| (1..=500).contains(r))
                    .ok_or_else(|| invalid("default-size", "COLSxROWS within 1..1000 x 1..500"))?,
            ),
            None => return Err(invalid("default-size", "COLSxROWS, e.g. 100x30")),
        };

        let defaults = RateLimitConfig::default();
        let limits = RateLimitConfig {
            connections_per_minute: positive(
                "connections-per-minute",
                s.connections_per_minute
                    .unwrap_or(defaults.connections_per_minute)
                    .into(),
            )? as u32,
            connection_burst: positive(
                "connection-burst",
                s.connection_burst
                    .unwrap_or(defaults.connection_burst)
                    .into(),
            )? as u32,
            max_sessions_per_ip: positive(
                "max-sessions-per-ip",
                s.max_sessions_per_ip
                    .unwrap_or(defaults.max_sessions_per_ip)
                    .into(),
            )? as u32,
            resume_attempts_per_minute: positive(
                "resume-max-attempts",
                s.resume_max_attempts
                    .unwrap_or(defaults.resume_attempts_per_minute)
                    .into(),
            )? as u32,
            commands_per_minute: positive(
                "commands-per-minute",
                s.commands_per_minute
                    .unwrap_or(defaults.commands_per_minute)
                    .into(),
            )? as u32,
            input_bytes_per_second: positive(
                "input-bytes-per-second",
                s.input_bytes_per_second
                    .unwrap_or(defaults.input_bytes_per_second)
                    .into(),
            )? as u32,
            input_burst_bytes: positive(
                "input-burst-bytes",
                s.input_burst_bytes
                    .unwrap_or(defaults.input_burst_bytes)
                    .into(),
            )? as u32,
            resizes_per_second: positive(
                "resizes-per-second",
                s.resizes_per_second
                    .unwrap_or(defaults.resizes_per_second)
                    .into(),
            )? as u32,
            ..defaults
        };

        let client_timeout =
            Duration::from_secs(positive("client-timeout", s.client_timeout.unwrap_or(45))?);
        let session = SessionSettings {
            image: image.clone(),
            cmd: s
                .shell
                .as_deref()
                .map(|c| c.split_whitespace().map(String::from).collect::<Vec<_>>())
                .filter(|c| !c.is_empty()),
            profile,
            deployment,
            idle_timeout: Duration::from_secs(positive(
                "idle-timeout",
                s.idle_timeout.unwrap_or(600),
            )?),
            max_duration: Duration::from_secs(positive(
                "max-session-duration",
                s.max_session_duration.unwrap_or(1800),
            )?),
            resume_grace: Duration::from_secs(s.resume_grace.unwrap_or(300)),
            warn_before: Duration::from_secs(s.warn_before.unwrap_or(60)),
            replay_bytes: s.replay_bytes.unwrap_or(256 * 1024),
            default_cols,
            default_rows,
            client_stall_timeout: client_timeout,
            max_sessions: positive("max-sessions", s.max_sessions.unwrap_or(50) as u64)? as usize,
            reap_interval: Duration::from_secs(positive(
                "reap-interval",
                s.reap_interval.unwrap_or(60),
            )?),
            limits,
            ..SessionSettings::default()
        };
        if session.replay_bytes > 64 * 1024 * 1024 {
            return Err(invalid("replay-bytes", "at most 64 MiB"));
        }

        let mut auth_policy = AuthPolicy {
            require_credentials: s.require_credentials.unwrap_or(false),
            ..AuthPolicy::default()
        };
        if let Some(extra) = &s.env_allow {
            auth_policy.env_allow_names.extend(
                extra
                    .iter()
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty()),
            );
        }
        let max_message_bytes = s.max_message_bytes.unwrap_or(1024 * 1024);
        if !(1024..=16 * 1024 * 1024).contains(&max_message_bytes) {
            return Err(invalid("max-message-bytes", "between 1024 and 16777216"));
        }
        let max_auth_bytes = s.max_auth_bytes.unwrap_or(64 * 1024).min(max_message_bytes);

        let allowed_origins = s
            .allowed_origins
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect::<Vec<_>>();
        for origin in &allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://") || origin == "*") {
                return Err(invalid(
                    "allowed-origins",
                    format!("{origin:?} is not an http(s) origin"),
                ));
            }
        }

        let public_origin = match s.public_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => Some(public_origin(url)?),
        };
        let max_connections_per_ip = positive(
            "max-connections-per-ip",
            s.max_connections_per_ip.unwrap_or(64) as u64,
        )? as usize;
        let max_connections = s
            .max_connections
            .map(|n| positive("max-connections", n as u64).map(|n| n as usize))
            .transpose()?;

        let max_file_bytes = s.audit_max_bytes.unwrap_or(100 * 1024 * 1024);
        let max_total_bytes = s.audit_max_total_bytes.unwrap_or(1024 * 1024 * 1024);
        if max_total_bytes < 2 * max_file_bytes {
            return Err(invalid(
                "audit-max-total-bytes",
                format!(
                    "{max_total_bytes} is less than twice --audit-max-bytes ({max_file_bytes})"
                ),
            ));
        }
        let audit = AuditConfig {
            enabled: s.audit_logging.unwrap_or(true),
            path: s
                .audit_log
                .clone()
                .unwrap_or_else(|| PathBuf::from("termcell-audit.log")),
            max_file_bytes: Some(max_file_bytes),
            rotate_daily: true,
            retention_days: s.audit_retention_days.unwrap_or(365),
            max_total_bytes: Some(max_total_bytes),
            repeat_window: Duration::from_secs(positive(
                "audit-repeat-window",
                s.audit_repeat_window.unwrap_or(60),
            )?),
        };

        Ok(Config {
            listen,
            admin_listen,
            admin_token,
            busybox: s
                .busybox
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::image::DEFAULT_BUSYBOX)),
            default_image: image == DEFAULT_IMAGE,
            reap_older_than: s.reap_older_than.map(Duration::from_secs),
            auth_policy,
            auth_timeout: Duration::from_secs(positive(
                "auth-timeout",
                s.auth_timeout.unwrap_or(10),
            )?),
            max_auth_bytes,
            max_message_bytes,
            allowed_origins,
            public_origin,
            max_connections_per_ip,
            max_connections,
            trusted_proxies: s.trusted_proxies.clone().unwrap_or_default(),
            heartbeat_interval: Duration::from_secs(positive(
                "heartbeat-interval",
                s.heartbeat_interval.unwrap_or(15),
            )?),
            client_timeout,
            session,
            audit,
            shutdown_timeout: Duration::from_secs(s.shutdown_timeout.unwrap_or(20)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("termcell").chain(args.iter().copied()))
            .expect("flags parse");
        Config::from_settings(cli.settings)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.admin_listen, Some("127.0.0.1:8081".parse().unwrap()));
        assert_eq!(c.session.idle_timeout, Duration::from_secs(600));
        assert_eq!(c.session.max_duration, Duration::from_secs(1800));
        assert_eq!(c.session.resume_grace, Duration::from_secs(300));
        assert_eq!(c.session.profile.memory_bytes, 256 * 1024 * 1024);
        assert_eq!(c.session.profile.pids_limit, 50);
        assert_eq!(c.session.limits.max_sessions_per_ip, 5);
        assert_eq!(c.session.limits.commands_per_minute, 30);
        assert_eq!(c.session.limits.resume_attempts_per_minute, 3);
        assert_eq!(c.audit.retention_days, 365);
        assert!(c.default_image);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = parse(&["--user", "0:0"]).unwrap_err().to_string();
        assert!(err.contains("user"), "{err}");
        let err = parse(&["--listen", "nowhere"]).unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
        let err = parse(&["--network", "host"]).unwrap_err().to_string();
        assert!(err.contains("network"), "{err}");
        let err = parse(&["--idle-timeout", "0"]).unwrap_err().to_string();
        assert!(err.contains("idle-timeout"), "{err}");
        let err = parse(&["--admin-listen", "0.0.0.0:8081"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("admin-listen") && err.contains("TOKEN"),
            "{err}"
        );
        let err = parse(&["--allowed-origins", "evil"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("allowed-origins"), "{err}");
    }

    #[test]
    fn file_values_sit_below_flags() {
        let dir = std::env::temp_dir().join(format!("termcell-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("termcell.toml");
        std::fs::write(&path, "idle_timeout = 42\nmax_sessions = 7\n").unwrap();
        let c = parse(&["--config", path.to_str().unwrap(), "--max-sessions", "9"]).unwrap();
        assert_eq!(c.session.idle_timeout, Duration::from_secs(42));
        assert_eq!(c.session.max_sessions, 9);
        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        let err = parse(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_setting"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_shipped_example_file_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/termcell.toml");
        let c = parse(&["--config", path]).unwrap();
        assert_eq!(c.session.limits.input_burst_bytes, 262_144);
        assert_eq!(c.session.idle_timeout, Duration::from_secs(600));
    }

    #[test]
    fn a_port_alone_listens_on_loopback() {
        let c = parse(&["--listen", "9999"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9999".parse().unwrap());
    }

    #[test]
    fn the_public_url_becomes_the_origin_a_browser_sends() {
        let c = parse(&["--public-url", "https://Term.Example.com:443/shell/"]).unwrap();
        assert_eq!(c.public_origin.as_deref(), Some("https://term.example.com"));
        let c = parse(&["--public-url", "http://10.1.2.3:8080"]).unwrap();
        assert_eq!(c.public_origin.as_deref(), Some("http://10.1.2.3:8080"));
        for bad in ["term.example.com", "https://", "ftp://x", "https://u@x"] {
            let e = parse(&["--public-url", bad]).unwrap_err().to_string();
            assert!(e.contains("public-url"), "{bad}: {e}");
        }
    }

    #[test]
    fn connection_and_audit_caps_are_validated() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.max_connections_per_ip, 64);
        assert_eq!(c.max_connections, None);
        assert_eq!(c.audit.max_total_bytes, Some(1024 * 1024 * 1024));
        assert_eq!(c.audit.repeat_window, Duration::from_secs(60));
        let e = parse(&[
            "--audit-max-bytes",
            "1000",
            "--audit-max-total-bytes",
            "1999",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("audit-max-total-bytes"), "{e}");
        assert!(parse(&["--max-connections-per-ip", "0"]).is_err());
        assert!(parse(&["--max-connections", "0"]).is_err());
    }
}
