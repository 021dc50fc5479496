//! `chatstats-sim`: the simulated upstream, served over HTTP or written to a file; see
//! [`chatstats::startup::run_sim`].

chatstats::allocator!();

fn main() -> std::process::ExitCode {
    chatstats::startup::main(chatstats::startup::run_sim)
}
