use clap::Parser;

use carteiro::cli::{self, Cli, LogFormat};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    carteiro::telemetry::init(matches!(cli.log_format, LogFormat::Json));
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("carteiro: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
