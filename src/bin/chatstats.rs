//! `chatstats`: worker and API in one process; see [`chatstats::startup::run_chatstats`].

chatstats::allocator!(serving);

fn main() -> std::process::ExitCode {
    chatstats::startup::main(chatstats::startup::run_chatstats)
}
