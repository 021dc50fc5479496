//! `chatstats`: worker and API in one process; see [`chatstats::startup::run_chatstats`].

#[global_allocator]
static ALLOCATOR: chatstats::Allocator = chatstats::Allocator;

fn main() -> std::process::ExitCode {
    chatstats::startup::main(chatstats::startup::run_chatstats)
}
