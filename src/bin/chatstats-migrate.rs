//! `chatstats-migrate`: see [`chatstats::startup::run_migrate`].

chatstats::allocator!();

fn main() -> std::process::ExitCode {
    chatstats::startup::main(chatstats::startup::run_migrate)
}
