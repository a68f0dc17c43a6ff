//! Unit tests of configuration: defaults, validation messages, layering of flags, the
//! original server's names (through an injected environment) and the TOML file.

use super::*;
use termcell_actors::network::allow::Port;

/// Flags with an empty environment (the original server's names and the admin token are
/// read through `env`; nothing of the test process's own environment leaks in).
fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    parse_in(args, &[])
}

fn parse_in(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let cli = Cli::try_parse_from(std::iter::once("termcell").chain(args.iter().copied()))
        .expect("flags parse");
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    Config::from_settings_in(cli.settings, &lookup)
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.admin_listen, Some("127.0.0.1:8081".parse().unwrap()));
    assert_eq!(c.session.idle_timeout, Duration::from_secs(600));
    assert_eq!(c.session.max_duration, Duration::from_secs(1800));
    assert_eq!(c.session.resume_grace, Duration::from_secs(300));
    assert_eq!(c.session.closed_page_grace, Duration::from_secs(15));
    assert_eq!(c.session.limits.command_burst, 100);
    assert!(c.session.screen_model);
    assert_eq!(c.session.scrollback_lines, 80);
    assert_eq!(c.session.profile.memory_bytes, 256 * 1024 * 1024);
    assert_eq!(c.session.profile.pids_limit, 50);
    assert_eq!(c.session.limits.max_sessions_per_ip, 5);
    assert_eq!(c.session.limits.commands_per_minute, 30);
    assert_eq!(c.session.limits.resume_attempts_per_minute, 3);
    assert_eq!(c.audit.retention_days, 365);
    assert!(c.default_image);
}

#[test]
fn monitor_settings_default_and_are_validated() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.monitor, MonitorConfig::default());
    assert_eq!(c.monitor.interval, Duration::from_secs(5));
    assert_eq!((c.monitor.memory_percent, c.monitor.pids_percent), (90, 80));
    let c = parse(&[
        "--alert-memory-percent",
        "75",
        "--monitor-interval",
        "2",
        "--alert-sustained",
        "4",
    ])
    .unwrap();
    assert_eq!(c.monitor.memory_percent, 75);
    assert_eq!(c.monitor.interval, Duration::from_secs(2));
    assert_eq!(c.monitor.sustained, Duration::from_secs(4));
    for (flag, value) in [
        ("--alert-memory-percent", "0"),
        ("--alert-pids-percent", "101"),
        ("--monitor-interval", "0"),
        ("--alert-output-bytes-per-second", "0"),
    ] {
        let err = parse(&[flag, value]).unwrap_err().to_string();
        assert!(err.contains(flag.trim_start_matches('-')), "{flag}: {err}");
    }
    let err = parse(&["--monitor-interval", "10", "--alert-sustained", "5"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("alert-sustained"), "{err}");
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
    let err = parse(&["--scrollback-lines", "10001"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("scrollback-lines") && err.contains("10000"),
        "{err}"
    );
    assert_eq!(
        parse(&["--scrollback-lines", "0"])
            .unwrap()
            .session
            .scrollback_lines,
        0
    );
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

#[test]
fn the_original_server_s_names_sit_below_termcell_flags() {
    let env = [
        ("PORT", "9000"),
        ("SESSION_TIMEOUT_MS", "90500"),
        ("MAX_CONCURRENT_CONNECTIONS", "7"),
        ("AUDIT_LOGGING", "no"),
        ("TERMCELL_ADMIN_TOKEN", "  0123456789abcdef  "),
    ];
    let c = parse_in(&[], &env).unwrap();
    assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.session.idle_timeout, Duration::from_secs(91));
    assert_eq!(c.session.limits.max_sessions_per_ip, 7);
    assert!(!c.audit.enabled);
    assert_eq!(c.admin_token.as_deref(), Some("0123456789abcdef"));
    let c = parse_in(&["--listen", "127.0.0.1:7000"], &env).unwrap();
    assert_eq!(c.listen, "127.0.0.1:7000".parse().unwrap());
    let e = parse_in(&[], &[("AUDIT_LOGGING", "maybe")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("AUDIT_LOGGING"), "{e}");
}

#[test]
fn durations_longer_than_a_year_are_refused_at_start() {
    for flag in [
        "--idle-timeout",
        "--max-session-duration",
        "--resume-grace",
        "--warn-before",
        "--auth-timeout",
        "--client-timeout",
        "--reap-older-than",
        "--shutdown-timeout",
    ] {
        let e = parse(&[flag, "18446744073709551615"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(flag.trim_start_matches("--")) && e.contains("more than a year"),
            "{flag}: {e}"
        );
    }
    assert!(parse(&["--max-session-duration", "31536000"]).is_ok());
}

#[test]
fn restricted_network_takes_an_allowlist_and_resolver_settings() {
    let c = parse(&[
        "--network",
        "restricted",
        "--egress-allow",
        "rest.ably.io,*.ably-realtime.com:443, realtime.ably.io:8443,time.ably.io:123/udp",
        "--dns-upstream",
        "127.0.0.1:5353,9.9.9.9",
        "--dns-ttl-min",
        "5",
    ])
    .unwrap();
    let r = c.restricted.expect("restricted");
    assert_eq!(r.allow.ports_for("rest.ably.io"), vec![Port::tcp(443)]);
    assert_eq!(
        r.allow.ports_for("main.ably-realtime.com"),
        vec![Port::tcp(443)]
    );
    assert_eq!(r.allow.ports_for("realtime.ably.io"), vec![Port::tcp(8443)]);
    assert_eq!(r.allow.ports_for("time.ably.io"), vec![Port::udp(123)]);
    assert_eq!(
        r.upstream,
        vec![
            "127.0.0.1:5353".parse().unwrap(),
            "9.9.9.9:53".parse().unwrap()
        ]
    );
    assert_eq!(r.ttl_min, Duration::from_secs(5));
    assert_eq!(r.ttl_max, Duration::from_secs(300));
    assert!(parse(&[]).unwrap().restricted.is_none());

    let c = parse_in(&["--network", "restricted"], &[]);
    let err = c.unwrap_err().to_string();
    assert!(err.contains("egress-allow"), "{err}");
    for (args, setting) in [
        (
            &["--network", "restricted", "--egress-allow", "10.0.0.1"][..],
            "egress-allow",
        ),
        (
            &["--network", "restricted", "--egress-allow", "a.test:0"][..],
            "egress-allow",
        ),
        (&["--egress-allow", "a.test"][..], "egress-allow"),
        (
            &[
                "--network",
                "restricted",
                "--egress-allow",
                "a.test",
                "--dns-upstream",
                "x",
            ][..],
            "dns-upstream",
        ),
        (
            &[
                "--network",
                "restricted",
                "--egress-allow",
                "a.test",
                "--dns-ttl-min",
                "60",
                "--dns-ttl-max",
                "10",
            ][..],
            "dns-ttl-max",
        ),
    ] {
        let err = parse(args).unwrap_err().to_string();
        assert!(err.contains(setting), "{args:?}: {err}");
    }
}

#[test]
fn shell_restricted_runs_the_restricted_shell_and_unset_keeps_the_image_command() {
    assert_eq!(
        parse(&[]).unwrap().session.cmd,
        None,
        "the image's own command"
    );
    assert_eq!(
        parse(&["--shell", "restricted"]).unwrap().session.cmd,
        Some(vec!["/usr/local/bin/termcell-rsh".to_string()])
    );
    assert_eq!(
        parse(&["--shell", "restricted --config /etc/my-rsh.conf"])
            .unwrap()
            .session
            .cmd,
        Some(
            [
                "/usr/local/bin/termcell-rsh",
                "--config",
                "/etc/my-rsh.conf"
            ]
            .map(String::from)
            .to_vec()
        )
    );
    assert_eq!(parse(&["--shell", "  "]).unwrap().session.cmd, None);
    assert_eq!(
        parse(&["--shell", "/bin/sh -l"]).unwrap().session.cmd,
        Some(vec!["/bin/sh".to_string(), "-l".to_string()])
    );
    // From the TOML file too.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("termcell.toml");
    std::fs::write(&file, "shell = \"restricted\"\n").unwrap();
    assert_eq!(
        parse(&["--config", file.to_str().unwrap()])
            .unwrap()
            .session
            .cmd,
        Some(vec!["/usr/local/bin/termcell-rsh".to_string()])
    );
}

/// A TOML file of the documented keys with values of any shape: the loader either builds
/// a configuration or answers with an error that names the file or a setting; it never
/// panics (an out-of-range number once overflowed a timer instead).
mod file_loader_properties {
    use proptest::prelude::*;

    use super::*;

    const KEYS: &[&str] = &[
        "listen",
        "admin_listen",
        "image",
        "deployment",
        "lock_dir",
        "idle_timeout",
        "max_session_duration",
        "resume_grace",
        "closed_page_grace",
        "command_burst",
        "warn_before",
        "scrollback_lines",
        "default_size",
        "require_credentials",
        "env_allow",
        "max_sessions",
        "max_sessions_per_ip",
        "connections_per_minute",
        "commands_per_minute",
        "input_bytes_per_second",
        "max_message_bytes",
        "max_auth_bytes",
        "auth_timeout",
        "heartbeat_interval",
        "reap_interval",
        "reap_older_than",
        "memory",
        "cpus",
        "pids_limit",
        "user",
        "network",
        "allowed_origins",
        "audit_max_file_bytes",
        "shutdown_timeout",
    ];

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (0u64..4_000_000_000).prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("TOML floats are finite here", |f| f.is_finite())
                .prop_map(|f| format!("{f:?}")),
            any::<bool>().prop_map(|b| b.to_string()),
            "[ -~]{0,24}".prop_map(|s| toml::Value::String(s).to_string()),
            proptest::collection::vec("[A-Za-z_*.:/0-9-]{0,12}", 0..4)
                .prop_map(|v| toml::Value::from(v).to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_file_of_known_keys_loads_or_names_what_is_wrong(
            pairs in proptest::collection::vec((0..KEYS.len(), value()), 0..8),
        ) {
            let text: String = pairs
                .iter()
                .map(|(k, v)| format!("{} = {v}\n", KEYS[*k]))
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("termcell.toml");
            std::fs::write(&path, &text).unwrap();
            match parse(&["--config", path.to_str().unwrap()]) {
                Ok(config) => {
                    // A configuration that loads is usable: its timers fit in an Instant.
                    let now = std::time::Instant::now();
                    for d in [
                        config.session.idle_timeout,
                        config.session.max_duration,
                        config.session.resume_grace,
                        config.auth_timeout,
                        config.heartbeat_interval,
                    ] {
                        prop_assert!(now.checked_add(d).is_some(), "{d:?} from {text}");
                    }
                }
                Err(e) => {
                    let said = e.to_string();
                    prop_assert!(
                        said.contains("termcell.toml")
                            || pairs.iter().any(|(k, _)| {
                                let key = KEYS[*k];
                                said.contains(key) || said.contains(&key.replace('_', "-"))
                            }),
                        "{said:?} names neither the file nor a setting of {text}"
                    );
                }
            }
        }

        #[test]
        fn any_bytes_as_a_file_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("termcell.toml");
            std::fs::write(&path, &bytes).unwrap();
            let _ = parse(&["--config", path.to_str().unwrap()]);
        }
    }
}

#[test]
fn recording_is_off_by_default_and_its_settings_are_checked() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.recording, None);
    assert_eq!(c.session.max_viewers, 4);
    let c = parse(&[
        "--record-dir",
        "/var/lib/termcell/rec",
        "--max-viewers",
        "2",
    ])
    .unwrap();
    let rec = c.recording.expect("recording on");
    assert_eq!(rec.dir, PathBuf::from("/var/lib/termcell/rec"));
    assert!(!rec.input, "input is not recorded unless asked");
    assert_eq!(rec.max_bytes, 64 * 1024 * 1024);
    assert_eq!(rec.retention_days, 30);
    assert_eq!(c.session.max_viewers, 2);
    let rec = parse(&["--record-dir", "/r", "--record-input"])
        .unwrap()
        .recording
        .unwrap();
    assert!(rec.input);
    for (args, setting) in [
        (
            &["--record-dir", "/r", "--record-max-bytes", "100"][..],
            "record-max-bytes",
        ),
        (
            &[
                "--record-dir",
                "/r",
                "--record-max-bytes",
                "10000",
                "--record-max-total-bytes",
                "19999",
            ][..],
            "record-max-total-bytes",
        ),
        (&["--max-viewers", "0"][..], "max-viewers"),
        (&["--max-viewers", "65"][..], "max-viewers"),
    ] {
        let e = parse(args).unwrap_err().to_string();
        assert!(e.contains(setting), "{args:?}: {e}");
    }
}
