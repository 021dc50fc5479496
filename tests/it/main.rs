//! The integration tests: one binary, a module per surface.

#[macro_use]
mod helpers;
mod api;
mod bins;
mod browser;
mod cdp;
mod cluster;
mod contract;
mod e2e;
mod fuzz;
mod history;
mod hostile;
mod inbox;
mod ingest;
mod migrate;
mod operations;
mod redis_only;
mod statistics;
mod worker;
