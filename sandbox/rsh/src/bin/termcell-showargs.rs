//! termcell-showargs: prints its arguments and environment, one per line, each value in
//! Rust's debug quoting (so spaces, quotes and control characters show exactly). A test
//! program for termcell-rsh: tests allow it as a command and compare what it received with
//! what was typed. Never part of the default sandbox image.

fn main() {
    for (i, arg) in std::env::args_os().enumerate() {
        println!("argv[{i}]={arg:?}");
    }
    let mut vars: Vec<_> = std::env::vars_os().collect();
    vars.sort();
    for (name, value) in vars {
        println!("env {name:?}={value:?}");
    }
}
