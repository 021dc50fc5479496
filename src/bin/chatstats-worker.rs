//! `chatstats-worker`: see [`chatstats::startup::run_worker`].

chatstats::allocator!();

fn main() -> std::process::ExitCode {
    chatstats::startup::main(chatstats::startup::run_worker)
}
