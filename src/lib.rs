//! cglimit as a library: the modules behind the `cglimit` binary, public so
//! that fuzz targets and benchmarks reach the parsers and the decision code.

pub mod apply;
pub mod cgroup;
pub mod cli;
pub mod config;
pub mod decision;
pub mod engine;
pub mod events;
pub mod explain;
pub mod facts;
pub mod glob;
pub mod hook;
pub mod logger;
pub mod oci;
pub mod policy;
pub mod privilege;
pub mod record;
pub mod runtime;
pub mod select;
pub mod size;
pub mod top;
pub mod validate;
pub mod watch;
