//! The plan engine of `setup`: the steps it takes (files written, links
//! made, an engine's configuration edited), shown as a diff under
//! `--dry-run`, performed, recorded in `STATE_DIR/setup-ENGINE.json`, and
//! undone exactly (`--undo`).

use super::*;

/// What setup did, for `--undo`.
#[derive(Serialize, Deserialize, Default, Debug)]
pub(super) struct Done {
    /// Files and symlinks setup created, with what it wrote (a symlink's
    /// target), so that undo removes only what is still setup's.
    created: Vec<(PathBuf, String)>,
    /// The engine's configuration file (daemon.json, config.toml) and where
    /// its original is: restored byte for byte (`None`: it did not exist,
    /// and is removed).
    #[serde(alias = "daemon_json")]
    edited: Option<(PathBuf, Option<PathBuf>)>,
}

pub(super) enum Step {
    Write {
        path: PathBuf,
        text: String,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    /// An engine's configuration file, changed in place.
    Edit {
        path: PathBuf,
        before: Option<Vec<u8>>,
        after: String,
        /// What must follow for the engine to see it.
        then: &'static str,
    },
}

/// Writes `text` to `path` unless it holds exactly that already; a file
/// with other contents is someone else's and is replaced only with
/// `force`.
pub(super) fn write_step(
    path: PathBuf,
    text: String,
    force: bool,
    steps: &mut Vec<Step>,
) -> Result<(), SetupError> {
    match std::fs::read_to_string(&path) {
        Ok(t) if t == text => {}
        Ok(_) if !force => {
            return Err(SetupError::Taken(format!(
                "{} exists with other contents (--force replaces it)",
                path.display()
            )));
        }
        _ => steps.push(Step::Write { path, text }),
    }
    Ok(())
}

pub(super) fn read_config(path: &Path) -> Result<Option<Vec<u8>>, SetupError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SetupError::file(path)(e)),
    }
}

pub(super) fn describe(s: &Step) -> String {
    match s {
        Step::Write { path, text } => format!(
            "would create {} ({} lines)\n",
            path.display(),
            text.lines().count()
        ),
        Step::Symlink { path, target } => {
            format!("would link {} -> {}\n", path.display(), target.display())
        }
        Step::Edit {
            path,
            before,
            after,
            then,
        } => {
            let old = before
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let mut out = format!(
                "would change {}, then {then}:\n--- {0}\n+++ {0}\n",
                path.display()
            );
            out.push_str(&diff(&old, after));
            out
        }
    }
}

pub(super) fn summary(s: &Step) -> String {
    match s {
        Step::Write { path, .. } => format!("created {}\n", path.display()),
        Step::Symlink { path, target } => {
            format!("linked {} -> {}\n", path.display(), target.display())
        }
        Step::Edit { path, before, .. } => match before {
            Some(_) => format!(
                "changed {} (the original is {})\n",
                path.display(),
                backup_of(path).display()
            ),
            None => format!("created {}\n", path.display()),
        },
    }
}

pub(super) fn backup_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".before-cglimit");
    path.with_file_name(name)
}

pub(super) fn perform(s: &Step, done: &mut Done) -> Result<(), SetupError> {
    let err = |p: &Path, e| SetupError::file(p)(e);
    match s {
        Step::Write { path, text } => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
            }
            crate::enforce::spec::write_atomically(path, text.as_bytes())
                .map_err(|e| err(path, e))?;
            done.created.push((path.clone(), text.clone()));
        }
        Step::Symlink { path, target } => {
            let _ = std::fs::remove_file(path);
            std::os::unix::fs::symlink(target, path).map_err(|e| err(path, e))?;
            done.created
                .push((path.clone(), target.display().to_string()));
        }
        Step::Edit {
            path,
            before,
            after,
            ..
        } => {
            let backup = match before {
                Some(b) => {
                    let bp = backup_of(path);
                    std::fs::write(&bp, b).map_err(|e| err(&bp, e))?;
                    Some(bp)
                }
                None => None,
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
            }
            crate::enforce::spec::write_atomically(path, after.as_bytes())
                .map_err(|e| err(path, e))?;
            done.edited = Some((path.clone(), backup));
        }
    }
    Ok(())
}

pub(super) fn undo(args: &SetupArgs) -> Result<(), SetupError> {
    let rp = record_path(args);
    let text = std::fs::read(&rp).map_err(|source| SetupError::NoRecord {
        path: rp.clone(),
        source,
    })?;
    let done: Done = serde_json::from_slice(&text).map_err(|source| SetupError::Record {
        path: rp.clone(),
        source,
    })?;
    if args.dry_run {
        if let Some((p, _)) = &done.edited {
            println!("would restore {}", p.display());
        }
        for (p, _) in &done.created {
            println!("would remove {}", p.display());
        }
        return Ok(());
    }
    if let Some((path, backup)) = &done.edited {
        match backup {
            Some(b) => {
                let bytes = std::fs::read(b).map_err(SetupError::file(b))?;
                crate::enforce::spec::write_atomically(path, &bytes)
                    .map_err(SetupError::file(path))?;
                let _ = std::fs::remove_file(b);
                println!("restored {}", path.display());
            }
            None => {
                let _ = std::fs::remove_file(path);
                println!("removed {}", path.display());
            }
        }
    }
    for (path, wrote) in done.created.iter().rev() {
        let still = match std::fs::read_link(path) {
            Ok(t) => t.display().to_string() == *wrote,
            Err(_) => std::fs::read_to_string(path).is_ok_and(|t| t == *wrote),
        };
        if still {
            let _ = std::fs::remove_file(path);
            println!("removed {}", path.display());
        } else if path.exists() {
            println!("kept {}: changed since setup", path.display());
        }
    }
    let _ = std::fs::remove_file(&rp);
    if done.edited.is_some() && args.engine == Engine::Containerd {
        restart_containerd(args.restart)?;
    }
    if done.edited.is_some() && args.engine == Engine::Docker {
        // dockerd's reload only applies keys present in the file: a
        // `runtimes` or `default-runtime` taken out stays until a restart.
        match reload_docker(args.docker_host.as_deref(), &args.daemon_json, false) {
            Ok(()) => println!("dockerd reloaded"),
            Err(_) => println!(
                "dockerd reloaded, but a reload keeps runtime settings that were removed: restart dockerd (systemctl restart docker) to stop using cglimit"
            ),
        }
    }
    Ok(())
}

/// A line diff of two small texts (`-` removed, `+` added, ` ` kept),
/// by their longest common subsequence.
pub fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!(" {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_diff_shows_what_changes() {
        assert_eq!(diff("a\nb\nc\n", "a\nc\nd\n"), " a\n-b\n c\n+d\n");
    }
}
