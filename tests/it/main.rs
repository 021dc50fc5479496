//! The integration tests: one binary, a module per surface.

mod api;
mod bins;
mod contract;
mod e2e;
mod fuzz;
mod helpers;
mod hostile;
mod operations;
mod redis_only;
mod worker;
