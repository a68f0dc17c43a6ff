//! The termcell binary: parses the command line and runs a command.

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
    let code = actix_rt::System::new().block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => termcell::server::serve(config).await,
            Command::Verify { probe } => termcell::server::verify(config, probe).await,
            Command::BuildImage => termcell::server::build_image(config).await,
        }
    });
    std::process::exit(code);
}
