//! `chatstats-worker`: see [`chatstats::startup::run_worker`].

use std::process::ExitCode;

use chatstats::startup::{self, AppError};
use chatstats::{config, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: startup::WorkerCli = config::parse();
    telemetry::init(cli.log.log_format);
    match startup::run_worker(cli, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(AppError::Config(err)) => config::fail(err),
        Err(err) => {
            tracing::error!(error = %err, "chatstats-worker stopped");
            ExitCode::FAILURE
        }
    }
}
