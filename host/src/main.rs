use std::process::ExitCode;

use clap::Parser;
use ember::cli::{CheckCommand, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check {
            what: CheckCommand::Config { syntax_only, files },
        }) => ember::cli::check::check_config(&files, syntax_only),
        None => {
            ember::telemetry::logging::init(cli.server.log_level, cli.server.log_format);
            ember::server::run(cli.server)
        }
    }
}
