//! The process and the world outside it: where logs go, which privileges
//! the process keeps, the Docker engine's API, and systemd's.

pub mod engine;
pub mod logger;
pub mod privilege;
pub mod systemd;
