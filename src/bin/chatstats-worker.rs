//! `chatstats-worker`: see [`chatstats::startup::run_worker`].

#[global_allocator]
static ALLOCATOR: chatstats::Allocator = chatstats::Allocator;

fn main() -> std::process::ExitCode {
    chatstats::startup::main(chatstats::startup::run_worker)
}
