//! `chatstats-api`: see [`chatstats::startup::run_api`].

chatstats::allocator!(serving);

fn main() -> std::process::ExitCode {
    chatstats::startup::main(chatstats::startup::run_api)
}
