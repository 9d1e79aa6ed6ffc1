//! The process and the world outside it: where logs go, which privileges
//! the process keeps, and the Docker engine's API.

pub mod engine;
pub mod logger;
pub mod privilege;
