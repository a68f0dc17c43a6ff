use super::*;

/// The names of `list` that the default allowlist keeps, in order.
fn kept(list: &[(&str, &str)]) -> Vec<String> {
    let vars = list
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    EnvAllow::default()
        .filter(vars)
        .into_iter()
        .map(|(k, _)| k.into_string().unwrap())
        .collect()
}

#[test]
fn loaders_and_interpreter_hooks_never_pass_by_default() {
    let kept = kept(&[
        ("HOME", "/home/user"),
        ("PATH", "/bin"),
        ("TERM", "xterm-256color"),
        ("LD_PRELOAD", "/tmp/x.so"),
        ("LD_LIBRARY_PATH", "/tmp"),
        ("LD_AUDIT", "/tmp/a.so"),
        ("BASH_ENV", "/tmp/rc"),
        ("ENV", "/tmp/rc"),
        ("NODE_OPTIONS", "--require /tmp/x.js"),
        ("PYTHONSTARTUP", "/tmp/x.py"),
        ("PYTHONPATH", "/tmp"),
        ("PERL5OPT", "-Mx"),
        ("PERL5LIB", "/tmp"),
        ("RUBYOPT", "-rx"),
        ("GCONV_PATH", "/tmp"),
        ("LOCPATH", "/tmp"),
        ("HOSTALIASES", "/tmp/h"),
        ("TERMINFO", "/tmp"),
        ("IFS", "x"),
        ("SHELLOPTS", "xtrace"),
        ("BASH_FUNC_ls%%", "() { sh; }"),
        ("ABLY_API_KEY", "k"),
        ("LC_ALL", "C.UTF-8"),
    ]);
    assert_eq!(
        kept,
        ["HOME", "PATH", "TERM", "ABLY_API_KEY", "LC_ALL"],
        "only allowlisted names"
    );
}

#[test]
fn locale_and_terminal_values_that_are_paths_are_dropped() {
    let kept = kept(&[
        ("LANG", "../../tmp/evil"),
        ("LC_CTYPE", "/tmp/locale"),
        ("TERM", "../../tmp/term"),
        ("LANGUAGE", "de:en"),
        ("HOME", "/home/user"),
    ]);
    assert_eq!(kept, ["LANGUAGE", "HOME"]);
}

#[test]
fn operator_patterns_are_checked() {
    let allow = EnvAllow::parse(vec!["MY_CLI_*".into(), "TZ".into()]).unwrap();
    assert!(allow.allows("MY_CLI_MODE") && allow.allows("TZ"));
    assert!(!allow.allows("HOME"), "the list replaces the default");
    for bad in ["", "*", "1X", "A-B", "LD_*X", "A B"] {
        assert!(EnvAllow::parse(vec![bad.into()]).is_err(), "{bad:?}");
    }
}
