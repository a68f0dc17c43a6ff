//! The termcell binary: parses the command line and runs a command.

use clap::Parser;
use termcell::config::{Cli, Command, Config};

fn init_logging() {
    // LOG_LEVEL (the original server's name: a level name or 0-4) or RUST_LOG.
    let level = std::env::var("LOG_LEVEL").ok().map(|v| match v.trim() {
        "0" => "error".to_string(),
        "1" => "warn".to_string(),
        "2" => "info".to_string(),
        "3" => "debug".to_string(),
        "4" => "trace".to_string(),
        other => other.to_ascii_lowercase(),
    });
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or(level)
        .unwrap_or_else(|| "info".into());
    env_logger::Builder::new()
        .parse_filters(&filter)
        .format_timestamp_millis()
        .init();
}

fn main() {
    let cli = Cli::parse();
    init_logging();
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
