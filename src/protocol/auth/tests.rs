//! Unit tests of the auth frame: parsing, validation, the environment policy, JWT expiry.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::json;

use super::*;

const NOW: i64 = 1_700_000_000;

fn base64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn jwt(claims: &Value) -> String {
    format!(
        "{}.{}.{}",
        base64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        base64url(claims.to_string().as_bytes()),
        base64url(b"signature-not-checked")
    )
}

fn auth(json: &str) -> Result<AuthFrame, Close> {
    parse_auth_frame(json.as_bytes(), DEFAULT_MAX_AUTH_FRAME)
}

fn frame_with_env(env: &[(&str, &str)]) -> AuthFrame {
    AuthFrame {
        environment_variables: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..AuthFrame::default()
    }
}

#[test]
fn the_original_client_auth_frame_is_accepted_with_both_env_vars() {
    let token = jwt(&json!({"sub": "u", "exp": NOW + 3600}));
    let text = format!(
        r#"{{"apiKey":"a.b:c","accessToken":"{token}","environmentVariables":{{"ABLY_WEB_CLI_MODE":"true","PS1":"$ "}}}}"#
    );
    let frame = auth(&text).unwrap();
    assert_eq!(frame.api_key.as_deref(), Some("a.b:c"));
    assert_eq!(frame.access_token.as_deref(), Some(token.as_str()));
    let policy = AuthPolicy {
        require_credentials: true,
        ..AuthPolicy::default()
    };
    let ok = validate_auth(frame, &policy, NOW).unwrap();
    assert_eq!(ok.api_key.as_deref(), Some("a.b:c"));
    assert_eq!(ok.access_token.as_deref(), Some(token.as_str()));
    assert_eq!(
        ok.env,
        vec![
            ("ABLY_WEB_CLI_MODE".to_owned(), "true".to_owned()),
            ("PS1".to_owned(), "$ ".to_owned())
        ]
    );
    assert!(ok.rejected_env.is_empty());
    assert_eq!(ok.session_id, None);
    assert!(!ok.resume_requested_invalid);
    assert!(!ok.announces_client);
}

#[test]
fn all_fields_are_read_and_unknown_fields_ignored() {
    let id = Uuid::new_v4();
    let frame = auth(&format!(
        r#"{{"type":"auth","apiKey":"k","sessionId":"{id}","ciAuthToken":"ci","client":"termcell-web/1","usage":true,"extra":[1,{{}}]}}"#
    ))
    .unwrap();
    assert!(frame.usage);
    assert_eq!(frame.session_id, Some(id.to_string()));
    assert_eq!(frame.ci_auth_token.as_deref(), Some("ci"));
    assert_eq!(frame.client.as_deref(), Some("termcell-web/1"));
    let ok = validate_auth(frame, &AuthPolicy::default(), NOW).unwrap();
    assert_eq!(ok.session_id, Some(id));
    assert!(ok.announces_client);
    assert_eq!(ok.client.as_deref(), Some("termcell-web/1"));
    assert_eq!(ok.ci_auth_token.as_deref(), Some("ci"));
    assert!(ok.usage);
}

#[test]
fn empty_and_null_fields_count_as_absent() {
    let frame = auth(
        r#"{"apiKey":"","accessToken":null,"environmentVariables":null,"sessionId":"","client":"","usage":null}"#,
    )
    .unwrap();
    assert_eq!(frame, AuthFrame::default());
    assert_eq!(auth("{}").unwrap(), AuthFrame::default());
    assert_eq!(auth(" \n{}\t").unwrap(), AuthFrame::default());
}

#[test]
fn a_frame_that_is_not_a_json_object_is_invalid_auth_format() {
    for text in [
        "",
        "null",
        "[]",
        "\"x\"",
        "42",
        "{",
        "not json",
        "{\"apiKey\":\"a\"} x",
    ] {
        assert_eq!(auth(text), Err(Close::invalid_auth()), "{text:?}");
    }
    assert_eq!(
        parse_auth_frame(b"{\"apiKey\":\"\xff\"}", 100),
        Err(Close::invalid_auth())
    );
}

#[test]
fn a_known_field_of_the_wrong_type_is_invalid_auth_format() {
    let wrong = [
        r#"{"apiKey":1}"#,
        r#"{"apiKey":{}}"#,
        r#"{"accessToken":true}"#,
        r#"{"sessionId":["x"]}"#,
        r#"{"ciAuthToken":1.5}"#,
        r#"{"client":{}}"#,
        r#"{"usage":"yes"}"#,
        r#"{"usage":1}"#,
        r#"{"type":1}"#,
        r#"{"environmentVariables":"PS1=x"}"#,
        r#"{"environmentVariables":[]}"#,
        r#"{"environmentVariables":{"PS1":1}}"#,
        r#"{"environmentVariables":{"PS1":null}}"#,
    ];
    for text in wrong {
        assert_eq!(auth(text), Err(Close::invalid_auth()), "{text}");
    }
}

#[test]
fn an_oversize_auth_frame_is_1009() {
    let text = format!(r#"{{"apiKey":"{}"}}"#, "k".repeat(100));
    assert!(parse_auth_frame(text.as_bytes(), text.len()).is_ok());
    assert_eq!(
        parse_auth_frame(text.as_bytes(), text.len() - 1),
        Err(Close::too_big())
    );
    // Size is checked before parsing: even garbage over the limit is 1009.
    assert_eq!(parse_auth_frame(&[0xff; 10], 9), Err(Close::too_big()));
}

#[test]
fn missing_credentials_only_when_required() {
    let required = AuthPolicy {
        require_credentials: true,
        ..AuthPolicy::default()
    };
    let empty = auth(r#"{"apiKey":"","accessToken":""}"#).unwrap();
    assert_eq!(
        validate_auth(empty.clone(), &required, NOW),
        Err(Close::missing_credentials())
    );
    assert!(validate_auth(empty, &AuthPolicy::default(), NOW).is_ok());
    let key_only = auth(r#"{"apiKey":"a.b:c"}"#).unwrap();
    assert!(validate_auth(key_only, &required, NOW).is_ok());
    let token_only = auth(r#"{"accessToken":"opaque"}"#).unwrap();
    assert!(validate_auth(token_only, &required, NOW).is_ok());
}

#[test]
fn missing_credentials_is_checked_before_the_token() {
    let required = AuthPolicy {
        require_credentials: true,
        ..AuthPolicy::default()
    };
    let expired = jwt(&json!({"exp": NOW - 1}));
    let frame = AuthFrame {
        access_token: Some(expired),
        ..AuthFrame::default()
    };
    assert_eq!(
        validate_auth(frame, &required, NOW),
        Err(Close::expired_token())
    );
    assert_eq!(
        validate_auth(AuthFrame::default(), &required, NOW),
        Err(Close::missing_credentials())
    );
}

#[test]
fn an_expired_jwt_is_rejected_an_unexpired_one_passes() {
    let expired = jwt(&json!({"exp": NOW - 60}));
    let frame = AuthFrame {
        api_key: Some("a.b:c".into()),
        access_token: Some(expired),
        ..AuthFrame::default()
    };
    assert_eq!(
        validate_auth(frame, &AuthPolicy::default(), NOW),
        Err(Close::expired_token())
    );
    let fresh = jwt(&json!({"exp": NOW + 60}));
    let frame = AuthFrame {
        access_token: Some(fresh.clone()),
        ..AuthFrame::default()
    };
    let ok = validate_auth(frame, &AuthPolicy::default(), NOW).unwrap();
    assert_eq!(ok.access_token, Some(fresh));
}

#[test]
fn jwt_expiry_rules() {
    assert!(
        jwt_expired(&jwt(&json!({"exp": NOW})), NOW),
        "exp == now is expired"
    );
    assert!(jwt_expired(&jwt(&json!({"exp": NOW - 1})), NOW));
    assert!(jwt_expired(&jwt(&json!({"exp": 1.5})), NOW));
    assert!(!jwt_expired(&jwt(&json!({"exp": NOW + 1})), NOW));
    assert!(!jwt_expired(&jwt(&json!({"exp": 1e300})), NOW));
    // Not a JWT, or no numeric exp: passed through to the container.
    assert!(!jwt_expired(&jwt(&json!({"sub": "x"})), NOW));
    assert!(!jwt_expired(&jwt(&json!({"exp": "1"})), NOW));
    assert!(!jwt_expired(&jwt(&json!([1, 2])), NOW));
    assert!(!jwt_expired("opaque-ably-token", NOW));
    assert!(!jwt_expired("a.b", NOW));
    assert!(!jwt_expired("a.b.c.d", NOW));
    assert!(!jwt_expired("a.!!!.c", NOW));
    assert!(!jwt_expired("a.A.c", NOW));
    assert!(!jwt_expired("", NOW));
    // Padded and standard-alphabet payloads are tolerated.
    let padded = format!("h.{}==.s", base64url(br#"{"exp":1}"#));
    assert!(jwt_expired(&padded, NOW));
}

#[test]
fn base64url_decodes_every_length() {
    for len in 0..20 {
        let data: Vec<u8> = (0..len).map(|i| (i * 37 + 200) as u8).collect();
        assert_eq!(base64url_decode(&base64url(&data)), Some(data));
    }
    assert_eq!(base64url_decode("-_-_"), Some(vec![0xfb, 0xff, 0xbf]));
    assert_eq!(base64url_decode("+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
}

#[test]
fn base64url_tolerates_padding_the_standard_alphabet_and_stray_bits() {
    for text in ["QQ", "QQ=", "QQ==", "QQ====", "QR"] {
        assert_eq!(base64url_decode(text), Some(vec![0x41]), "{text}");
    }
    assert_eq!(base64url_decode("-/+_"), Some(vec![0xfb, 0xff, 0xbf]));
    assert_eq!(base64url_decode(""), Some(vec![]));
    for text in ["A", "AAAAA", "QQ=Q", "=QQ", "Q Q", "QQ\n", "é"] {
        assert_eq!(base64url_decode(text), None, "{text:?}");
    }
}

#[test]
fn dangerous_env_names_are_dropped_into_rejected_env() {
    let policy = AuthPolicy {
        // Even a misconfigured catch-all prefix does not let them through.
        env_allow_prefixes: vec!["ABLY_".into(), "".into()],
        env_allow_names: vec!["PATH".into(), "PS1".into(), "BASH_ENV".into()],
        ..AuthPolicy::default()
    };
    let names = [
        "BASH_ENV",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PATH",
        "path",
        "HOME",
        "SHELL",
        "USER",
        "IFS",
        "PS4",
        "ENV",
        "NODE_OPTIONS",
        "PROMPT_COMMAND",
        "PYTHONSTARTUP",
        "PERL5OPT",
        "RUBYOPT",
        "DYLD_INSERT_LIBRARIES",
        "ABLY_API_KEY",
        "ABLY_ACCESS_TOKEN",
    ];
    let mut env: Vec<(&str, &str)> = names.iter().map(|n| (*n, "x")).collect();
    env.push(("PS1", "$ "));
    let ok = validate_auth(frame_with_env(&env), &policy, NOW).unwrap();
    assert_eq!(ok.env, vec![("PS1".to_owned(), "$ ".to_owned())]);
    let mut rejected = ok.rejected_env.clone();
    rejected.sort();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(rejected, expected);
}

#[test]
fn the_default_allowlist_and_ably_prefix() {
    let env = [
        ("TERM", "xterm-256color"),
        ("LANG", "C.UTF-8"),
        ("COLUMNS", "100"),
        ("LINES", "30"),
        ("ABLY_ENDPOINT", "x"),
        ("ABLY_", "bare prefix"),
        ("EDITOR", "vim"),
        ("BAD-NAME", "x"),
        ("1ABC", "x"),
        ("", "x"),
        ("PS1\n", "x"),
    ];
    let ok = validate_auth(frame_with_env(&env), &AuthPolicy::default(), NOW).unwrap();
    let names: Vec<&str> = ok.env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ABLY_ENDPOINT", "COLUMNS", "LANG", "LINES", "TERM"]);
    let mut rejected = ok.rejected_env;
    rejected.sort();
    assert_eq!(
        rejected,
        ["", "1ABC", "ABLY_", "BAD-NAME", "EDITOR", "PS1\n"]
    );
}

#[test]
fn env_values_too_long_or_with_nul_are_rejected() {
    let policy = AuthPolicy {
        env_max_value_len: 4,
        ..AuthPolicy::default()
    };
    let env = [("PS1", "1234"), ("TERM", "12345"), ("LANG", "a\0b")];
    let ok = validate_auth(frame_with_env(&env), &policy, NOW).unwrap();
    assert_eq!(ok.env, vec![("PS1".to_owned(), "1234".to_owned())]);
    assert_eq!(ok.rejected_env, ["LANG", "TERM"]);
}

#[test]
fn env_vars_beyond_the_limit_are_rejected() {
    let policy = AuthPolicy {
        env_max_vars: 2,
        ..AuthPolicy::default()
    };
    let env = [
        ("ABLY_A", "1"),
        ("ABLY_B", "2"),
        ("ABLY_C", "3"),
        ("PATH", "/"),
    ];
    let ok = validate_auth(frame_with_env(&env), &policy, NOW).unwrap();
    let names: Vec<&str> = ok.env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ABLY_A", "ABLY_B"]);
    assert_eq!(ok.rejected_env, ["ABLY_C", "PATH"]);
}

#[test]
fn an_invalid_session_id_asks_for_a_rejected_resume() {
    let frame = auth(r#"{"sessionId":"../../etc/passwd"}"#).unwrap();
    let ok = validate_auth(frame, &AuthPolicy::default(), NOW).unwrap();
    assert_eq!(ok.session_id, None);
    assert!(ok.resume_requested_invalid);
}

#[test]
fn debug_output_never_shows_secrets() {
    let frame = auth(
        r#"{"apiKey":"app.key:SECRET1","accessToken":"SECRET2","ciAuthToken":"SECRET3","environmentVariables":{"PS1":"SECRET4"}}"#,
    )
    .unwrap();
    let shown = format!("{frame:?}");
    assert!(shown.contains("PS1"), "{shown}");
    let validated = validate_auth(frame, &AuthPolicy::default(), NOW).unwrap();
    let shown = format!("{shown} {validated:?}");
    for secret in ["SECRET1", "SECRET2", "SECRET3", "SECRET4"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}
proptest! {
    #[test]
    fn parse_and_validate_auth_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        max_len in 0usize..600,
        now in any::<i64>(),
    ) {
        if let Ok(frame) = parse_auth_frame(&bytes, max_len) {
            let _ = validate_auth(frame, &AuthPolicy::default(), now);
        }
    }

    #[test]
    fn validate_auth_never_panics_and_keeps_only_allowed_env(
        env in proptest::collection::btree_map("[A-Za-z_0-9=\\-]{0,12}", "[ -~\\x00é]{0,8}", 0..80),
        api_key in proptest::option::of(".{0,20}"),
        access_token in proptest::option::of("[A-Za-z0-9_.=-]{0,40}"),
        session_id in proptest::option::of(".{0,40}"),
        client in proptest::option::of(".{0,100}"),
        require_credentials in any::<bool>(),
        now in any::<i64>(),
    ) {
        let total = env.len();
        let frame = AuthFrame {
            api_key,
            access_token,
            environment_variables: env,
            session_id,
            ci_auth_token: None,
            client,
            usage: false,
        };
        let policy = AuthPolicy { require_credentials, env_max_value_len: 6, ..AuthPolicy::default() };
        if let Ok(ok) = validate_auth(frame, &policy, now) {
            prop_assert_eq!(ok.env.len() + ok.rejected_env.len(), total);
            prop_assert!(ok.env.len() <= policy.env_max_vars);
            for (name, value) in &ok.env {
                prop_assert!(env_name_allowed(name, &policy));
                prop_assert!(value.len() <= 6 && !value.contains('\0'));
            }
            prop_assert!(ok.client.as_ref().is_none_or(|c| c.len() <= MAX_CLIENT_LABEL));
        }
    }

    #[test]
    fn jwt_expired_never_panics(token in ".{0,200}", now in any::<i64>()) {
        let _ = jwt_expired(&token, now);
    }

    #[test]
    fn jwt_expired_matches_exp(exp in any::<i64>(), now in any::<i64>()) {
        let token = jwt(&json!({"exp": exp}));
        prop_assert_eq!(jwt_expired(&token, now), (exp as f64) <= (now as f64));
    }
}

proptest! {
    /// Whatever an operator allows (any names, any prefixes, the empty prefix included),
    /// the names that change what runs before the shell never reach the sandbox, and
    /// every name that does is one the policy allows.
    #[test]
    fn the_environment_allowlist_never_passes_the_dangerous_names(
        allow_names in proptest::collection::vec("[A-Z_]{0,10}", 0..4),
        allow_prefixes in proptest::collection::vec("[A-Z_]{0,3}", 0..4),
        suffix in "[A-Z0-9_]{0,6}",
        lower in any::<bool>(),
    ) {
        let policy = AuthPolicy {
            env_allow_names: allow_names.clone(),
            env_allow_prefixes: allow_prefixes.clone(),
            ..AuthPolicy::default()
        };
        let mut env = std::collections::BTreeMap::new();
        for name in NEVER_ACCEPTED {
            env.insert(name.to_string(), "x".to_string());
        }
        for prefix in NEVER_ACCEPTED_PREFIXES {
            let name = format!("{prefix}{suffix}");
            env.insert(if lower { name.to_ascii_lowercase() } else { name }, "x".to_string());
        }
        for name in allow_names.iter().chain(&allow_prefixes) {
            env.insert(format!("{name}{suffix}"), "x".to_string());
        }
        let frame = AuthFrame {
            api_key: Some("k".into()),
            access_token: None,
            environment_variables: env,
            session_id: None,
            ci_auth_token: None,
            client: None,
            usage: false,
        };
        let auth = validate_auth(frame, &policy, NOW).unwrap();
        for (name, _) in &auth.env {
            let upper = name.to_ascii_uppercase();
            prop_assert!(!NEVER_ACCEPTED.contains(&upper.as_str()), "{name} passed");
            prop_assert!(
                !NEVER_ACCEPTED_PREFIXES.iter().any(|p| upper.starts_with(p)),
                "{name} passed"
            );
            prop_assert!(
                allow_names.contains(name)
                    || allow_prefixes.iter().any(|p| name.len() > p.len() && name.starts_with(p.as_str())),
                "{name} is not allowed by the policy"
            );
        }
    }
}
