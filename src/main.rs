//! The termcell binary: parses the command line and runs a command.

use std::io::Write;

use clap::Parser;
use termcell::config::{Cli, Command, Config};

fn main() {
    let cli = Cli::parse();
    termcell::logging::init();
    let config = match Config::from_settings(cli.settings) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("termcell: {e}");
            std::process::exit(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::CheckConfig = command {
        // Piped into `head`: a closed stdout is not an error.
        let _ = writeln!(std::io::stdout(), "{}", config.redacted());
        std::process::exit(0);
    }
    let prefix = match command {
        Command::Verify { .. } => "termcell verify",
        _ => "termcell",
    };
    // Kept until `exit`: dropping the runtime after a failed start would drop actors' timers
    // outside it (a panic message after the real error).
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        match command {
            Command::Serve => termcell::server::serve(config).await.map(|()| 0),
            Command::Verify { probe } => termcell::server::verify(config, probe).await,
            Command::BuildImage => termcell::server::build_image(config).await.map(|()| 0),
            Command::CheckConfig => unreachable!("handled before the runtime starts"),
        }
    });
    // The one place a start-up error is printed.
    let code = result.unwrap_or_else(|e| {
        eprintln!("{prefix}: {e}");
        1
    });
    std::process::exit(code);
}
