//! Writes cglimit's man pages and shell completions from the same clap
//! definitions as the binary (`src/cli.rs`), so they never disagree with
//! it and cost the binary nothing:
//!
//!     cargo run --features gen --bin cglimit-gen -- OUT_DIR
//!
//! OUT_DIR/man/cglimit.1 and cglimit-SUBCOMMAND.1;
//! OUT_DIR/completions/cglimit.bash, _cglimit (zsh), cglimit.fish.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .unwrap_or_else(|| "target/gen".into()),
    );
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = cglimit::cli::Cli::command();
    page(&cmd, "cglimit", &man)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names are &'static str; this program ends right after.
        let name: &'static str = Box::leak(format!("cglimit-{}", sub.get_name()).into_boxed_str());
        page(&sub.clone().name(name), name, &man)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(
            shell,
            &mut cglimit::cli::Cli::command(),
            "cglimit",
            &completions,
        )?;
    }
    Ok(())
}

fn page(cmd: &clap::Command, name: &str, dir: &Path) -> std::io::Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.1")), buf)
}
