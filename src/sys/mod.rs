//! The process and the world outside it: where logs go, which privileges
//! the process keeps, the Docker engine's API, systemd's, and the size of
//! a shared `/dev/shm` on the host.

pub mod arena;
pub mod engine;
pub mod events;
pub mod kmsg;
pub mod logger;
pub mod phase;
pub mod privilege;
pub mod shm;
pub mod systemd;
pub mod watchdog;
