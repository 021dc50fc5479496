//! `chatstats-api`: see [`chatstats::startup::run_api`].

use std::process::ExitCode;

use chatstats::startup::{self, AppError};
use chatstats::{config, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: startup::ApiCli = config::parse();
    telemetry::init(cli.log.log_format);
    match startup::run_api(cli, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(AppError::Config(err)) => config::fail(err),
        Err(err) => {
            tracing::error!(error = %err, "chatstats-api stopped");
            ExitCode::FAILURE
        }
    }
}
