//! `chatstats-migrate`: see [`chatstats::startup::run_migrate`].

#[global_allocator]
static ALLOCATOR: chatstats::Allocator = chatstats::Allocator;

fn main() -> std::process::ExitCode {
    chatstats::startup::main(chatstats::startup::run_migrate)
}
