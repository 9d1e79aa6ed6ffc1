//! `cglimit sync-policies FROM TO`: publishes the policies of one directory
//! (a Kubernetes ConfigMap volume, a checkout) into the node's policy
//! directory, whole and only when valid.
//!
//! The hook and the wrapper run on the node, outside any pod: they cannot
//! read a ConfigMap volume, and must keep their policies when the pod that
//! delivers them is gone. So the set is copied to `TO` in the ConfigMap's
//! own layout — a new `..TIMESTAMP/` directory, `..data` swapped to it in
//! one rename, `NAME -> ..data/NAME` links — which `policy::files` reads as
//! one version. A set that does not validate is not published: the node
//! keeps the last good one, and the error (file, line, field) is logged.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::SyncArgs;
use crate::policy;

pub fn run(args: &SyncArgs) -> ExitCode {
    let mut last: Option<BTreeMap<String, String>> = None;
    loop {
        let ok = match read_valid(&args.from) {
            Ok(set) if last.as_ref() == Some(&set) => true,
            Ok(set) => match publish(&args.to, &set) {
                Ok(version) => {
                    log::info!(
                        "published {} policy files from {} to {} ({version})",
                        set.len(),
                        args.from.display(),
                        args.to.display()
                    );
                    last = Some(set);
                    true
                }
                Err(e) => {
                    log::error!("cannot publish to {}: {e}", args.to.display());
                    false
                }
            },
            Err(errors) => {
                for e in &errors {
                    log::error!("{e}");
                }
                log::error!(
                    "{}: not published, {} keeps its last valid policies",
                    args.from.display(),
                    args.to.display()
                );
                false
            }
        };
        if args.once {
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        std::thread::sleep(args.interval);
    }
}

/// The policy files of `from` by name, when together they validate as a
/// policy directory does.
fn read_valid(from: &Path) -> Result<BTreeMap<String, String>, Vec<policy::PolicyError>> {
    let opened = policy::files::open(from, false).map_err(|e| vec![e.into()])?;
    let mut set = BTreeMap::new();
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    for f in &opened.files {
        let text = f.text().map_err(|e| vec![e])?;
        match policy::parse_file(&f.path, &text) {
            Ok(mut p) => policies.append(&mut p),
            Err(mut e) => errors.append(&mut e),
        }
        let name = f.path.file_name().unwrap_or_default();
        set.insert(name.to_string_lossy().into_owned(), text);
    }
    if errors.is_empty()
        && let Err(mut e) = policy::check_names(&policies)
    {
        errors.append(&mut e);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if policies.is_empty() {
        return Err(vec![policy::PolicyError {
            file: from.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: "no policy: a node without one refuses every container".into(),
        }]);
    }
    Ok(set)
}

/// Writes `set` into `to` as a new version and makes it the current one;
/// returns the version's directory name.
pub fn publish(to: &Path, set: &BTreeMap<String, String>) -> std::io::Result<String> {
    std::fs::create_dir_all(to)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let version = format!("..{}.{:09}", now.as_secs(), now.subsec_nanos());
    let dir = to.join(&version);
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    for (name, text) in set {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
        std::fs::File::open(&p)?.sync_all()?;
    }
    std::fs::File::open(&dir)?.sync_all()?;
    let swap = |link: &str, target: &str| -> std::io::Result<()> {
        let tmp = to.join(format!("{link}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp)?;
        std::fs::rename(&tmp, to.join(link))
    };
    // The new version becomes current here, in one rename.
    swap(policy::files::CONFIGMAP_DATA, &version)?;
    for name in set.keys() {
        let target = format!("{}/{name}", policy::files::CONFIGMAP_DATA);
        if std::fs::read_link(to.join(name)).is_ok_and(|t| t == Path::new(&target)) {
            continue;
        }
        swap(name, &target)?;
    }
    // Links to files the new version lacks, and older versions, go.
    for e in std::fs::read_dir(to)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_link = e.file_type().is_ok_and(|t| t.is_symlink());
        if is_link && policy::files::is_policy_name(&name) && !set.contains_key(&name) {
            let _ = std::fs::remove_file(e.path());
        } else if name.starts_with("..")
            && name != version
            && name != policy::files::CONFIGMAP_DATA
            && e.file_type().is_ok_and(|t| t.is_dir())
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(version)
}
