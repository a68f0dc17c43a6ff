//! Turns the layered `Settings` into a validated `Config`, one function per part. Every
//! error names the setting it is about; defaults are taken from the types they configure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use termcell_actors::audit::AuditConfig;
use termcell_actors::monitor::MonitorConfig;
use termcell_actors::network::allow::EgressAllow;
use termcell_actors::network::RestrictedNetwork;
use termcell_actors::profile::{SecurityProfile, BUNDLED_SECCOMP};
use termcell_actors::ratelimit::RateLimitConfig;
use termcell_actors::SessionSettings;

use super::{invalid, Config, ConfigError, Settings, DEFAULT_IMAGE};
use crate::protocol::AuthPolicy;

/// Scrollback rows a session may keep: at the largest terminal (1000 columns) a row costs
/// up to 32 KB, so this bounds the model of one session to about 320 MB at worst.
const MAX_SCROLLBACK_LINES: usize = 10_000;

pub(super) fn config(s: &Settings) -> Result<Config, ConfigError> {
    let (listen, admin_listen, admin_token) = listeners(s)?;
    let (image, deployment, mut profile) = sandbox(s)?;
    let restricted = restricted_network(s, &profile.network_mode)?;
    if restricted.is_some() {
        // The network's name and its resolver are known once it exists (at start).
        profile.network_mode = RESTRICTED.to_string();
    }
    let (mut session, client_timeout) = session(s, image.clone(), deployment, profile)?;
    session.max_viewers = super::recording::max_viewers(s)?;
    let (auth_policy, max_message_bytes, max_auth_bytes) = auth(s)?;
    let (allowed_origins, public_origin) = origins(s)?;
    let (max_connections_per_ip, max_connections) = connections(s)?;
    let audit = audit(s)?;
    Ok(Config {
        listen,
        admin_listen,
        admin_token,
        busybox: s
            .busybox
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::image::DEFAULT_BUSYBOX)),
        sandbox_programs: s.sandbox_programs.clone(),
        default_image: image == DEFAULT_IMAGE,
        reap_older_than: s
            .reap_older_than
            .map(|v| seconds("reap-older-than", v))
            .transpose()?,
        lock_dir: s
            .lock_dir
            .clone()
            .unwrap_or_else(crate::deployment_lock::default_dir),
        auth_policy,
        auth_timeout: positive_seconds("auth-timeout", s.auth_timeout.unwrap_or(10))?,
        max_auth_bytes,
        max_message_bytes,
        allowed_origins,
        public_origin,
        max_connections_per_ip,
        max_connections,
        trusted_proxies: s.trusted_proxies.clone().unwrap_or_default(),
        heartbeat_interval: positive_seconds(
            "heartbeat-interval",
            s.heartbeat_interval.unwrap_or(15),
        )?,
        client_timeout,
        session,
        restricted,
        audit,
        recording: super::recording::config(s)?,
        shutdown_timeout: seconds("shutdown-timeout", s.shutdown_timeout.unwrap_or(20))?,
        monitor: monitor(s)?,
    })
}

/// The resource monitor's interval and thresholds.
fn monitor(s: &Settings) -> Result<MonitorConfig, ConfigError> {
    let d = MonitorConfig::default();
    let percent = |setting, value: Option<u8>, default| match value.unwrap_or(default) {
        p @ 1..=100 => Ok(p),
        _ => Err(invalid(setting, "a percent between 1 and 100")),
    };
    let config = MonitorConfig {
        interval: positive_seconds(
            "monitor-interval",
            s.monitor_interval.unwrap_or(d.interval.as_secs()),
        )?,
        memory_percent: percent(
            "alert-memory-percent",
            s.alert_memory_percent,
            d.memory_percent,
        )?,
        pids_percent: percent("alert-pids-percent", s.alert_pids_percent, d.pids_percent)?,
        sustained: positive_seconds(
            "alert-sustained",
            s.alert_sustained.unwrap_or(d.sustained.as_secs()),
        )?,
        output_bytes_per_second: positive(
            "alert-output-bytes-per-second",
            s.alert_output_bytes_per_second
                .unwrap_or(d.output_bytes_per_second),
        )?,
    };
    if config.sustained < config.interval {
        return Err(invalid(
            "alert-sustained",
            "at least --monitor-interval (a window needs a sample in it)",
        ));
    }
    Ok(config)
}

/// The public and admin listeners and the admin token.
fn listeners(
    s: &Settings,
) -> Result<(SocketAddr, Option<SocketAddr>, Option<String>), ConfigError> {
    let listen = socket_addr("listen", s.listen.as_deref().unwrap_or("127.0.0.1:8080"))?;
    let admin_listen = match s.admin_listen.as_deref().unwrap_or("127.0.0.1:8081") {
        "off" | "none" | "" => None,
        v => Some(socket_addr("admin-listen", v)?),
    };
    let admin_token = match (&s.admin_token_file, s.admin_token_env.clone().ok_or(())) {
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

    Ok((listen, admin_listen, admin_token))
}

/// The image, the deployment name and the container's security profile.
fn sandbox(s: &Settings) -> Result<(String, String, SecurityProfile), ConfigError> {
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

    let d = SecurityProfile::default();
    let default_user = format!("{}:{}", d.uid, d.gid);
    let (uid, gid) = match s.user.as_deref().unwrap_or(&default_user).split_once(':') {
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
    let runtime = s.runtime.clone().unwrap_or_else(|| d.runtime.clone());
    if runtime.is_empty()
        || !runtime
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(invalid(
            "runtime",
            "a runtime name the engine lists (letters, digits, '.', '_', '-'), e.g. runc or runsc",
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
    let (seccomp_json, killed_syscalls) = if s.syscall_audit.unwrap_or(false) {
        termcell_actors::monitor::seccomp::killing_profile(&seccomp_json)
            .map_err(|e| invalid("syscall-audit", e.to_string()))?
    } else {
        (seccomp_json, Vec::new())
    };
    let cpus = s.cpus.unwrap_or(d.nano_cpus as f64 / 1e9);
    if !(0.01..=64.0).contains(&cpus) {
        return Err(invalid("cpus", "between 0.01 and 64"));
    }
    let memory_mb = s.memory_mb.unwrap_or(d.memory_bytes / (1024 * 1024));
    if !(16..=65536).contains(&memory_mb) {
        return Err(invalid("memory-mb", "between 16 and 65536"));
    }
    let pids_limit = s.pids_limit.unwrap_or(d.pids_limit);
    if !(5..=100_000).contains(&pids_limit) {
        return Err(invalid("pids-limit", "between 5 and 100000"));
    }
    let config_dir = match s
        .config_dir
        .as_deref()
        .or(d.config_dir.as_deref())
        .unwrap_or("off")
    {
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
            s.tmp_size.clone().unwrap_or_else(|| d.tmp_size.clone()),
        )?,
        run_size: tmpfs_size(
            "run-size",
            s.run_size.clone().unwrap_or_else(|| d.run_size.clone()),
        )?,
        config_dir,
        uid,
        gid,
        seccomp_json,
        killed_syscalls,
        apparmor_profile: Some(
            s.apparmor_profile
                .clone()
                .unwrap_or_else(|| "termcell-sandbox".into()),
        ),
        network_mode: network,
        log_max_size: s.log_max_size.clone(),
        runtime,
        ..SecurityProfile::default()
    };

    Ok((image, deployment, profile))
}

/// The network mode that asks for termcell's own restricted bridge.
pub const RESTRICTED: &str = "restricted";

/// `--network restricted` and its allowlist and resolver settings; the allowlist
/// settings are refused with any other network mode, where nothing would enforce them.
fn restricted_network(
    s: &Settings,
    network: &str,
) -> Result<Option<RestrictedNetwork>, ConfigError> {
    let egress = s.egress_allow.as_deref().unwrap_or("");
    if network != RESTRICTED {
        if !egress.trim().is_empty() {
            return Err(invalid(
                "egress-allow",
                "takes effect only with --network restricted",
            ));
        }
        return Ok(None);
    }
    let allow =
        EgressAllow::parse_list(egress).map_err(|e| invalid("egress-allow", e.to_string()))?;
    if allow.is_empty() {
        return Err(invalid(
            "egress-allow",
            "--network restricted needs at least one HOST[:PORT][/udp] to allow (or use --network none)",
        ));
    }
    let upstream = s
        .dns_upstream
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<SocketAddr>()
                .or_else(|_| {
                    a.parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                })
                .map_err(|_| invalid("dns-upstream", format!("{a:?} is not ADDR or ADDR:PORT")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ttl_min = seconds("dns-ttl-min", s.dns_ttl_min.unwrap_or(30))?;
    let ttl_max = positive_seconds("dns-ttl-max", s.dns_ttl_max.unwrap_or(300))?;
    if ttl_min > ttl_max || ttl_max > Duration::from_secs(86_400) {
        return Err(invalid(
            "dns-ttl-max",
            "at least --dns-ttl-min and at most 86400 seconds",
        ));
    }
    Ok(Some(RestrictedNetwork {
        allow,
        upstream,
        ttl_min,
        ttl_max,
    }))
}

/// The session's timers, sizes, capacity and limits; and the client timeout.
fn session(
    s: &Settings,
    image: String,
    deployment: String,
    profile: SecurityProfile,
) -> Result<(SessionSettings, Duration), ConfigError> {
    let d = SessionSettings::default();
    let default_size = format!("{}x{}", d.default_cols, d.default_rows);
    let (default_cols, default_rows) = match s
        .default_size
        .as_deref()
        .unwrap_or(&default_size)
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
        command_burst: positive(
            "command-burst",
            s.command_burst.unwrap_or(defaults.command_burst).into(),
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

    let client_timeout = positive_seconds(
        "client-timeout",
        s.client_timeout.unwrap_or(d.client_stall_timeout.as_secs()),
    )?;
    let resume_grace = seconds(
        "resume-grace",
        s.resume_grace.unwrap_or(d.resume_grace.as_secs()),
    )?;
    let session = SessionSettings {
        image: image.clone(),
        cmd: shell_command(s.shell.as_deref()),
        profile,
        deployment,
        idle_timeout: positive_seconds(
            "idle-timeout",
            s.idle_timeout.unwrap_or(d.idle_timeout.as_secs()),
        )?,
        max_duration: positive_seconds(
            "max-session-duration",
            s.max_session_duration.unwrap_or(d.max_duration.as_secs()),
        )?,
        resume_grace,
        // A closed page never waits longer than a dropped one.
        closed_page_grace: seconds(
            "closed-page-grace",
            s.closed_page_grace.unwrap_or(d.closed_page_grace.as_secs()),
        )?
        .min(resume_grace),
        warn_before: seconds(
            "warn-before",
            s.warn_before.unwrap_or(d.warn_before.as_secs()),
        )?,
        screen_model: s.screen_model.unwrap_or(d.screen_model),
        scrollback_lines: s.scrollback_lines.unwrap_or(d.scrollback_lines),
        default_cols,
        default_rows,
        client_stall_timeout: client_timeout,
        max_sessions: positive(
            "max-sessions",
            s.max_sessions.unwrap_or(d.max_sessions) as u64,
        )? as usize,
        pool_size: s.pool_size.unwrap_or(d.pool_size),
        reap_interval: positive_seconds(
            "reap-interval",
            s.reap_interval.unwrap_or(d.reap_interval.as_secs()),
        )?,
        limits,
        ..SessionSettings::default()
    };
    if session.scrollback_lines > MAX_SCROLLBACK_LINES {
        return Err(invalid(
            "scrollback-lines",
            format!("at most {MAX_SCROLLBACK_LINES} rows"),
        ));
    }

    Ok((session, client_timeout))
}

/// The word of `--shell` that names the restricted shell.
pub const RESTRICTED_SHELL: &str = "restricted";

/// The sandbox's command from `--shell`: its words, with `restricted` (as the first word)
/// standing for the restricted shell's fixed path; `None` for the image's own command.
fn shell_command(shell: Option<&str>) -> Option<Vec<String>> {
    let mut words: Vec<String> = shell?.split_whitespace().map(String::from).collect();
    if words.first().map(String::as_str) == Some(RESTRICTED_SHELL) {
        words[0] = crate::image::programs::RSH.path.to_string();
    }
    (!words.is_empty()).then_some(words)
}

/// Who may authenticate with what, and the frame size limits.
fn auth(s: &Settings) -> Result<(AuthPolicy, usize, usize), ConfigError> {
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

    Ok((auth_policy, max_message_bytes, max_auth_bytes))
}

/// The browser origins allowed to open sessions.
fn origins(s: &Settings) -> Result<(Vec<String>, Option<String>), ConfigError> {
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
    Ok((allowed_origins, public_origin))
}

/// The per-address and total connection caps.
fn connections(s: &Settings) -> Result<(u32, Option<usize>), ConfigError> {
    let max_connections_per_ip = positive(
        "max-connections-per-ip",
        s.max_connections_per_ip.unwrap_or(64).into(),
    )? as u32;
    let max_connections = s
        .max_connections
        .map(|n| positive("max-connections", n as u64).map(|n| n as usize))
        .transpose()?;

    Ok((max_connections_per_ip, max_connections))
}

/// Where the audit log goes and how big it may grow.
fn audit(s: &Settings) -> Result<AuditConfig, ConfigError> {
    let defaults = AuditConfig::default();
    let max_file_bytes = s
        .audit_max_bytes
        .or(defaults.max_file_bytes)
        .unwrap_or(u64::MAX);
    let max_total_bytes = s
        .audit_max_total_bytes
        .or(defaults.max_total_bytes)
        .unwrap_or(u64::MAX);
    if max_total_bytes < max_file_bytes.saturating_mul(2) {
        return Err(invalid(
            "audit-max-total-bytes",
            format!("{max_total_bytes} is less than twice --audit-max-bytes ({max_file_bytes})"),
        ));
    }
    let audit = AuditConfig {
        enabled: s.audit_logging.unwrap_or(defaults.enabled),
        path: s.audit_log.clone().unwrap_or(defaults.path),
        max_file_bytes: Some(max_file_bytes),
        rotate_daily: defaults.rotate_daily,
        retention_days: s.audit_retention_days.unwrap_or(defaults.retention_days),
        max_total_bytes: Some(max_total_bytes),
        repeat_window: s
            .audit_repeat_window
            .map(|secs| positive_seconds("audit-repeat-window", secs))
            .transpose()?
            .unwrap_or(defaults.repeat_window),
    };

    Ok(audit)
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

/// The longest duration any setting takes: a year. Longer values would overflow the
/// timers' `Instant + Duration` instead of meaning anything.
const MAX_SECONDS: u64 = 366 * 24 * 60 * 60;

fn seconds(setting: &'static str, value: u64) -> Result<Duration, ConfigError> {
    if value > MAX_SECONDS {
        return Err(invalid(
            setting,
            format!("{value} seconds is more than a year ({MAX_SECONDS})"),
        ));
    }
    Ok(Duration::from_secs(value))
}

fn positive_seconds(setting: &'static str, value: u64) -> Result<Duration, ConfigError> {
    seconds(setting, positive(setting, value)?)
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
