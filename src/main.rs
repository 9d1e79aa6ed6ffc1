//! cglimit: memory limits for every container, enforced in its cgroup.

use std::process::ExitCode;

use cglimit::cli;
use cglimit::cmd::{
    apply, diagnose, doctor, events, explain, hook, recommend, runtime, setup, sync, top, validate,
    watch,
};
use cglimit::sys::logger;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: cglimit::sys::arena::Arena<{ cglimit::sys::arena::ARENA_BYTES }> =
    cglimit::sys::arena::Arena::new();

fn main() -> ExitCode {
    cglimit::sys::phase::mark("main");
    // The runtime wrapper parses its own argv: everything after its options
    // belongs to runc and must reach it unchanged.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv0 = args.first().map(std::path::Path::new);
    let link = argv0.and_then(|p| p.file_name());
    if link.is_some_and(|n| n == "cglimit-runtime") {
        return runtime::run(&args[1..]);
    }
    // podman passes its runtime neither arguments nor environment: the
    // name of the link says which configuration is podman's.
    if link.is_some_and(|n| n == runtime::config::PODMAN_LINK) {
        let mut a: Vec<std::ffi::OsString> =
            vec!["--config".into(), runtime::config::PODMAN_PATH.into()];
        a.extend(args[1..].iter().cloned());
        return runtime::run(&a);
    }
    if args.get(1).is_some_and(|a| a == "runtime") {
        return runtime::run(&args[2..]);
    }
    if args.get(1).is_some_and(|a| a == "hook") {
        let c = cli::HookCli::parse_plain(&args[2..]).unwrap_or_else(|| {
            let argv = std::iter::once("cglimit hook".into()).chain(args[2..].iter().cloned());
            cli::HookCli::parse_from(argv)
        });
        if let Err(code) = init_log(&c.log) {
            return code;
        }
        cglimit::sys::phase::mark("parsed");
        return hook::run(&c.hook);
    }
    let cli = cli::Cli::parse();
    if let Err(code) = init_log(&cli.log) {
        return code;
    }
    match &cli.command {
        cli::Command::Validate(a) => validate::run(a),
        cli::Command::Explain(a) => explain::run(a),
        cli::Command::Hook(a) => hook::run(a),
        cli::Command::Apply(a) => apply::run(a),
        cli::Command::Watch(a) => watch::run(a),
        cli::Command::Events(a) => events::run(a),
        cli::Command::Top(a) => top::run(a),
        cli::Command::Diagnose(a) => diagnose::run(a),
        cli::Command::Recommend(a) => recommend::run(a),
        cli::Command::Setup(a) => setup::run(a),
        cli::Command::Doctor(a) => doctor::run(a),
        cli::Command::SyncPolicies(a) => sync::run(a),
        cli::Command::Probe => doctor::probe(),
        cli::Command::Runtime { args } => {
            runtime::run(&args.iter().map(Into::into).collect::<Vec<_>>())
        }
    }
}

fn init_log(a: &cli::LogArgs) -> Result<(), ExitCode> {
    logger::init(a.log_file.as_deref(), a.log_level).map_err(|e| {
        eprintln!(
            "cglimit: cannot open log file {}: {e}",
            a.log_file.as_deref().unwrap_or("-".as_ref()).display()
        );
        ExitCode::from(1)
    })
}
