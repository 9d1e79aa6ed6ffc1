//! Puts the commit cglimit is built from into `cglimit --version` (and the
//! watcher's build_info), or "unknown" outside a git checkout; and, on
//! Linux, gathers the functions of a container start at the front of the
//! binary's text (`link/hook-text.ld`, written by `bench/hook-text.sh`):
//! the hook then touches a few 64 KiB windows of its text instead of ~30,
//! each a page fault at every container start.

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CGLIMIT_COMMIT={commit}");
    for p in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        println!("cargo:rerun-if-changed={p}");
    }
    // An ordering only: a linker that is not told, or a function the file
    // does not name, changes where code lies, never what it does.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
        let script = std::path::Path::new(&dir).join("link/hook-text.ld");
        if script.is_file() {
            println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
        }
        println!("cargo:rerun-if-changed=link/hook-text.ld");
    }
}
