//! The wrapper's own settings: its flags (before runc's), then the config
//! file ([`super::config`]), then defaults.

use std::path::PathBuf;
use std::time::Duration;

use super::config;
use crate::enforce::OnError;
use crate::time::parse_duration;

/// The wrapper's settings: flags first, then the config file, then defaults.
#[derive(Debug)]
pub struct Options {
    pub policy_dir: PathBuf,
    pub runtime: String,
    pub on_error: OnError,
    pub log_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub engine_timeout: Duration,
    pub docker_host: Option<String>,
    pub insecure_policy_perms: bool,
    /// Labels an image carries may select a policy that trusts them.
    pub trust_image_labels: bool,
    /// The engine's hook decides creates; the wrapper, updates.
    pub creates_by_hook: bool,
}

/// The wrapper's own flags, and whether each takes a value. The one list:
/// parsing, the missing-value check and [`options`] all read it.
const FLAGS: &[(&str, bool)] = &[
    ("--config", true),
    ("--policy-dir", true),
    ("--runtime", true),
    ("--on-error", true),
    ("--log-file", true),
    ("--state-dir", true),
    ("--cache-dir", true),
    ("--engine-timeout", true),
    ("--docker-host", true),
    ("--no-cache", false),
    ("--trust-image-labels", false),
    ("--insecure-policy-perms", false),
];

/// The wrapper's own flags at the front of argv, and where runc's begin.
pub fn own_flags(args: &[String]) -> (Vec<(&str, Option<&str>)>, usize) {
    let mut flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let (name, inline) = match args[i].split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (args[i].as_str(), None),
        };
        let Some(&(_, takes_value)) = FLAGS.iter().find(|(n, _)| *n == name) else {
            break;
        };
        let value = match (takes_value, inline) {
            (false, _) => None,
            (true, Some(v)) => Some(v),
            (true, None) => {
                i += 1;
                args.get(i).map(String::as_str)
            }
        };
        flags.push((name, value));
        i += 1;
    }
    (flags, i.min(args.len()))
}

/// The settings from the wrapper's flags, the config file and defaults.
/// The settings when the config file does not load: the defaults, and the
/// runtime the flags or (leniently) the file name. Used only to pass verbs
/// that touch existing containers through, so a broken file never leaves
/// containers that can be neither stopped nor removed.
pub fn fallback(flags: &[(&str, Option<&str>)]) -> Options {
    let flag = |name: &str| {
        flags
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| *v)
    };
    let runtime = flag("--runtime")
        .map(String::from)
        .or_else(|| config::runtime_despite_errors(flag("--config").map(std::path::Path::new)))
        .unwrap_or_else(|| "runc".into());
    Options {
        policy_dir: "/etc/cglimit/policies".into(),
        runtime,
        on_error: OnError::Deny,
        log_file: flag("--log-file").map(PathBuf::from),
        state_dir: None,
        cache_dir: None,
        engine_timeout: Duration::from_millis(250),
        docker_host: None,
        insecure_policy_perms: false,
        trust_image_labels: false,
        creates_by_hook: false,
    }
}

pub fn options(flags: &[(&str, Option<&str>)]) -> Result<Options, config::ConfigError> {
    let takes_value = |name: &str| FLAGS.iter().any(|(n, v)| *n == name && *v);
    if let Some((name, _)) = flags.iter().find(|(n, v)| v.is_none() && takes_value(n)) {
        return Err(config::ConfigError::NoValue(name.to_string()));
    }
    let config_path = flags
        .iter()
        .rev()
        .find(|(n, _)| *n == "--config")
        .and_then(|(_, v)| v.map(PathBuf::from));
    let insecure = flags.iter().any(|(n, _)| *n == "--insecure-policy-perms");
    let file = config::load(config_path.as_deref(), insecure)?;
    let mut o = Options {
        policy_dir: file
            .policy_dir
            .unwrap_or_else(|| "/etc/cglimit/policies".into()),
        runtime: file.runtime.unwrap_or_else(|| "runc".into()),
        on_error: file.on_error.unwrap_or(OnError::Deny),
        log_file: file.log_file,
        state_dir: file.state_dir,
        cache_dir: Some(
            file.cache_dir
                .unwrap_or_else(|| "/run/cglimit/cache".into()),
        ),
        engine_timeout: match file.engine_timeout {
            Some(t) => parse_duration(&t)?,
            None => Duration::from_millis(250),
        },
        docker_host: file.docker_host,
        insecure_policy_perms: insecure || file.insecure_policy_perms.unwrap_or(false),
        trust_image_labels: file.trust_image_labels.unwrap_or(false),
        creates_by_hook: file.creates_by_hook.unwrap_or(false),
    };
    for &(name, value) in flags {
        let v = value.unwrap_or_default();
        match name {
            "--config" => {}
            "--policy-dir" => o.policy_dir = v.into(),
            "--runtime" => o.runtime = v.into(),
            "--on-error" => {
                o.on_error = match v {
                    "deny" => OnError::Deny,
                    "allow" => OnError::Allow,
                    _ => return Err(config::ConfigError::OnError(v.to_string())),
                }
            }
            "--log-file" => o.log_file = Some(v.into()),
            "--state-dir" => o.state_dir = Some(v.into()),
            "--cache-dir" => o.cache_dir = Some(v.into()),
            "--no-cache" => o.cache_dir = None,
            "--trust-image-labels" => o.trust_image_labels = true,
            "--insecure-policy-perms" => {}
            "--engine-timeout" => o.engine_timeout = parse_duration(v)?,
            "--docker-host" => o.docker_host = Some(v.into()),
            _ => unreachable!("listed above"),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (Vec<(String, Option<String>)>, Vec<String>) {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        let (f, n) = own_flags(&args);
        let f = f
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.map(String::from)))
            .collect();
        (f, args[n..].to_vec())
    }

    #[test]
    fn own_flags_stop_at_runcs() {
        let (f, rest) = split(
            "--policy-dir /p --no-cache --runtime=/usr/bin/crun --root /r create --bundle /b c1",
        );
        assert_eq!(f.len(), 3);
        assert_eq!(f[2], ("--runtime".into(), Some("/usr/bin/crun".into())));
        assert_eq!(rest[0], "--root");
        let (f, rest) = split("--version");
        assert!(f.is_empty());
        assert_eq!(rest, ["--version"]);
        // runc's own --log is not the wrapper's --log-file.
        let (f, rest) = split("--log /l create c1");
        assert!(f.is_empty() && rest.len() == 4);
    }

    #[test]
    fn a_missing_value_is_an_error() {
        let args: Vec<String> = vec!["--policy-dir".into()];
        let (f, n) = own_flags(&args);
        assert_eq!(n, 1);
        assert!(
            options(&f)
                .unwrap_err()
                .to_string()
                .contains("--policy-dir needs a value")
        );
    }
}
