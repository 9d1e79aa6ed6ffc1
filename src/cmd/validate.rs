//! `cglimit validate`: the check users run in CI on their policy repository.

use std::process::ExitCode;

use crate::cli::ValidateArgs;
use crate::policy::{self, PolicyErrors};

pub fn run(args: &ValidateArgs) -> ExitCode {
    let mut errors = Vec::new();
    let mut policies = Vec::new();
    let mut files = 0;
    for path in &args.paths {
        let opened = match policy::files::open(path, false) {
            Ok(o) => o,
            Err(e) => {
                errors.push(e.into());
                continue;
            }
        };
        files += opened.files.len();
        match policy::load_files(&opened) {
            Ok(mut p) => policies.append(&mut p),
            Err(PolicyErrors(mut e)) => errors.append(&mut e),
        }
    }
    // Names must be unique across everything validated together, as they
    // are across one policy directory.
    if errors.is_empty()
        && let Err(mut e) = policy::check_names(&policies)
    {
        errors.append(&mut e);
    }
    for e in &errors {
        eprintln!("{e}");
    }
    // Files in a checkout belong to whoever checked them out: a warning
    // here, a refusal where policies are enforced.
    for path in &args.paths {
        if let Err(e) = policy::files::check_policies(path) {
            eprintln!("warning: the hook and apply would refuse this: {e}");
        }
    }
    if !errors.is_empty() {
        eprintln!("{} error(s)", errors.len());
        return ExitCode::from(1);
    }
    if !policies.iter().any(|p| p.selector == Default::default()) {
        eprintln!(
            "warning: no catch-all policy (`match: {{}}`): containers that match no policy are refused"
        );
    }
    println!("{} policies in {files} files: ok", policies.len());
    ExitCode::SUCCESS
}
