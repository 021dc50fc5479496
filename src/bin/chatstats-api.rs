//! `chatstats-api`: see [`chatstats::startup::run_api`].

#[global_allocator]
static ALLOCATOR: chatstats::Allocator = chatstats::Allocator;

fn main() -> std::process::ExitCode {
    chatstats::startup::main(chatstats::startup::run_api)
}
