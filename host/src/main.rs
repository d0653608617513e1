use std::process::ExitCode;

// Ingestion allocates many small, short-lived objects on several threads;
// mimalloc handles that far better than glibc's malloc (measured: the
// allocator was over half of the remote-write profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use ember::cli::{BackfillSource, CheckCommand, Cli, Command, PluginCommand, TsdbCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { what }) => match what {
            CheckCommand::Config { syntax_only, files } => {
                ember::cli::check::check_config(&files, syntax_only)
            }
            CheckCommand::Rules { files } => ember::cli::check::check_rules(&files),
        },
        Some(Command::Tsdb { what }) => match what {
            TsdbCommand::CreateBlocksFrom {
                source:
                    BackfillSource::Openmetrics {
                        block_duration,
                        human_readable,
                        quiet,
                        input,
                        output,
                    },
            } => ember::cli::tsdb::create_blocks_from_openmetrics(
                &input,
                &output,
                block_duration,
                human_readable,
                quiet,
            ),
            TsdbCommand::List {
                human_readable,
                dir,
            } => ember::cli::tsdb::list(&dir, human_readable),
            TsdbCommand::Analyze { limit, dir, block } => {
                ember::cli::tsdb::analyze(&dir, block.as_deref(), limit)
            }
        },
        Some(Command::Plugin { what }) => {
            ember::telemetry::logging::init(cli.server.log_level, cli.server.log_format);
            match what {
                PluginCommand::List {
                    plugins_dir,
                    config_file,
                } => ember::cli::plugin::list(plugins_dir.as_deref(), &config_file),
                PluginCommand::Check { file } => ember::cli::plugin::check(&file),
                PluginCommand::NotifyTest { file, config } => {
                    ember::cli::plugin::notify_test(&file, config.as_deref())
                }
            }
        }
        None => {
            ember::telemetry::logging::init(cli.server.log_level, cli.server.log_format);
            ember::server::run(cli.server)
        }
    }
}
