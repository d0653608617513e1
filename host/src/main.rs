use std::process::ExitCode;

use clap::Parser;
use ember::cli::{CheckCommand, Cli, Command, TsdbCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check {
            what: CheckCommand::Config { syntax_only, files },
        }) => ember::cli::check::check_config(&files, syntax_only),
        Some(Command::Tsdb {
            what:
                TsdbCommand::List {
                    human_readable,
                    dir,
                },
        }) => ember::cli::tsdb::list(&dir, human_readable),
        Some(Command::Tsdb {
            what: TsdbCommand::Analyze { limit, dir, block },
        }) => ember::cli::tsdb::analyze(&dir, block.as_deref(), limit),
        None => {
            ember::telemetry::logging::init(cli.server.log_level, cli.server.log_format);
            ember::server::run(cli.server)
        }
    }
}
