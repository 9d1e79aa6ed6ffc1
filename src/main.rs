//! cglimit: memory limits for every container, enforced in its cgroup.

mod cgroup;
mod cli;
mod decision;
mod explain;
mod facts;
mod glob;
mod hook;
mod logger;
mod oci;
mod policy;
mod record;
mod select;
mod size;
mod validate;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Err(e) = logger::init(cli.log_file.as_deref(), cli.log_level) {
        eprintln!(
            "cglimit: cannot open log file {}: {e}",
            cli.log_file.as_deref().unwrap_or("-".as_ref()).display()
        );
        return ExitCode::from(1);
    }
    match &cli.command {
        cli::Command::Validate(a) => validate::run(a),
        cli::Command::Explain(a) => explain::run(a),
        cli::Command::Hook(a) => hook::run(a),
    }
}
