use std::io::Write;
use std::os::unix::net::UnixStream;

use proptest::prelude::*;

use super::*;

/// The line without its newline, as `read_line` returns it.
fn encode(vars: &[(&str, &[u8])]) -> Vec<u8> {
    let mut line = super::encode(vars.iter().copied());
    assert_eq!(line.pop(), Some(b'\n'));
    line
}

#[test]
fn a_line_sets_its_variables_in_order() {
    let line = encode(&[("ABLY_API_KEY", b"app.key:s3cr et\n"), ("_X1", b"")]);
    let vars = parse(&line).unwrap();
    assert_eq!(
        vars,
        vec![
            (
                "ABLY_API_KEY".to_string(),
                OsString::from("app.key:s3cr et\n")
            ),
            ("_X1".to_string(), OsString::new()),
        ]
    );
    assert_eq!(parse(VERSION.as_bytes()).unwrap(), vec![]);
}

#[test]
fn malformed_lines_are_refused() {
    let cases: &[(&[u8], LineError)] = &[
        (b"", LineError::Version),
        (b"termcell-env/2 A=61", LineError::Version),
        (b"export A=61", LineError::Version),
        (b"termcell-env/1 A", LineError::Malformed(1)),
        (b"termcell-env/1  A=61", LineError::Malformed(1)),
        (b"termcell-env/1 A=61 ", LineError::Malformed(2)),
        (b"termcell-env/1 =61", LineError::Name(1)),
        (b"termcell-env/1 1A=61", LineError::Name(1)),
        (b"termcell-env/1 A-B=61", LineError::Name(1)),
        (b"termcell-env/1 A=6", LineError::Value(1)),
        (b"termcell-env/1 A=6g", LineError::Value(1)),
        (b"termcell-env/1 A=6A", LineError::Value(1)),
        (b"termcell-env/1 A=6100", LineError::Value(1)),
        (b"termcell-env/1 A=61 A=62", LineError::Repeated(2)),
        (b"termcell-env/1 A=61\r", LineError::Value(1)),
    ];
    for (line, error) in cases {
        assert_eq!(
            parse(line).unwrap_err(),
            *error,
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn too_long_or_too_many_is_refused() {
    let long = encode(&[("A", &vec![b'a'; MAX_LINE / 2])]);
    assert_eq!(parse(&long).unwrap_err(), LineError::TooLong);
    let names: Vec<String> = (0..=MAX_VARS).map(|i| format!("V{i}")).collect();
    let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    assert_eq!(parse(&encode(&many)).unwrap_err(), LineError::TooMany);
}

#[test]
fn reading_stops_at_the_newline_and_leaves_the_rest() {
    let (mut server, entry) = UnixStream::pair().unwrap();
    server.write_all(b"termcell-env/1 A=61\nls -l\r").unwrap();
    let line = read_line(&entry, Duration::from_secs(5)).unwrap();
    assert_eq!(line, b"termcell-env/1 A=61");
    let mut rest = [0u8; 16];
    let n = rustix::io::read(&entry, &mut rest).unwrap();
    assert_eq!(&rest[..n], b"ls -l\r");
}

#[test]
fn reading_refuses_silence_eof_and_overlong_lines() {
    let (server, entry) = UnixStream::pair().unwrap();
    assert_eq!(
        read_line(&entry, Duration::from_millis(200)).unwrap_err(),
        LineError::Timeout(0)
    );
    let (mut server2, entry2) = UnixStream::pair().unwrap();
    server2.write_all(b"termcell-env/1 A=").unwrap();
    drop(server2);
    assert_eq!(
        read_line(&entry2, Duration::from_secs(5)).unwrap_err(),
        LineError::Eof
    );
    drop(server);
    let (mut server3, entry3) = UnixStream::pair().unwrap();
    let writer = std::thread::spawn(move || {
        // Fails with EPIPE once the reader gives up: that is the point.
        let _ = server3.write_all(&vec![b'a'; MAX_LINE + 10]);
    });
    assert_eq!(
        read_line(&entry3, Duration::from_secs(5)).unwrap_err(),
        LineError::TooLong
    );
    drop(entry3);
    writer.join().unwrap();
}

proptest! {
    #[test]
    fn any_encoded_environment_parses_back(
        vars in proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,12}", proptest::collection::vec(1u8..=255, 0..40), 0..8)
    ) {
        let list: Vec<(&str, &[u8])> = vars.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let parsed = parse(&encode(&list)).unwrap();
        prop_assert_eq!(parsed.len(), vars.len());
        for ((name, value), (pname, pvalue)) in vars.iter().zip(parsed) {
            prop_assert_eq!(name, &pname);
            prop_assert_eq!(value.as_slice(), pvalue.as_encoded_bytes());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&line);
    }
}
