//! `chatstats-sim`: the simulated upstream, served over HTTP or written to a file; see
//! [`chatstats::sim::serve`] and [`chatstats::sim::write_file`].

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use chatstats::config::LogArgs;
use chatstats::sim::{self, SimSettings};
use chatstats::{config, shutdown, telemetry};
use clap::Parser;

/// Serves a simulated Twitch-like chat stream in the upstream's format (`GET /`, an endless
/// `text/event-stream` body), or writes a fixed number of its events to a file.
#[derive(Debug, Parser)]
#[command(
    name = "chatstats-sim",
    version,
    after_help = "Every option can be set by the environment variable named in capitals, also from a .env file.\n\
                  The same seed always gives the same bytes; every HTTP client gets the stream from its start."
)]
struct Cli {
    /// Address to listen on. The default accepts local clients only; a container needs
    /// 0.0.0.0 (docker-compose.yml passes it).
    #[arg(
        long,
        env = "SIM_HOST",
        value_name = "SIM_HOST",
        default_value = "127.0.0.1"
    )]
    host: IpAddr,
    /// Port to listen on.
    #[arg(
        long,
        env = "SIM_PORT",
        value_name = "SIM_PORT",
        default_value_t = 7000
    )]
    port: u16,
    /// Events per second per connection; 0 streams as fast as the client reads.
    #[arg(long, env = "SIM_RATE", value_name = "SIM_RATE", default_value_t = 200.0,
          value_parser = config::parse_rate, allow_hyphen_values = true)]
    rate: f64,
    /// Seed of the stream.
    #[arg(long, env = "SIM_SEED", value_name = "SIM_SEED", default_value_t = 1)]
    seed: u64,
    /// Write exactly this many framed events to --out and exit, instead of serving.
    #[arg(long, env = "SIM_COUNT", value_name = "SIM_COUNT")]
    count: Option<u64>,
    /// File written with --count (`-` for stdout).
    #[arg(long, env = "SIM_OUT", value_name = "SIM_OUT", default_value = "-")]
    out: String,
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = config::parse();
    telemetry::init(cli.log.log_format);
    if let Some(count) = cli.count {
        let (out, seed) = (cli.out.clone(), cli.seed);
        let written = tokio::task::spawn_blocking(move || sim::write_file(&out, count, seed)).await;
        return match written {
            Ok(Ok(())) => {
                tracing::info!(count, seed, out = %cli.out, "events written");
                ExitCode::SUCCESS
            }
            // A reader that stops early (`| head`) is not an error.
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::BrokenPipe && cli.out == "-" => {
                ExitCode::SUCCESS
            }
            Ok(Err(err)) => {
                tracing::error!(error = %err, out = %cli.out, "cannot write the events");
                ExitCode::FAILURE
            }
            Err(err) => {
                tracing::error!(error = %err, "the writer stopped");
                ExitCode::FAILURE
            }
        };
    }
    let address = SocketAddr::new(cli.host, cli.port);
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(%address, error = %err, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let settings = SimSettings {
        rate: cli.rate,
        seed: cli.seed,
    };
    match sim::serve(listener, settings, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "chatstats-sim stopped");
            ExitCode::FAILURE
        }
    }
}
