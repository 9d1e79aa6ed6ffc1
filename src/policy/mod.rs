//! Policies: what limits a selected container gets, and where they come
//! from.
//!
//! [`open`] is the one way an entry point gets its policies: it opens the
//! directory and its files once ([`files`]), refusing what others could
//! write ([`perms`]), then loads the set from those descriptors, from the
//! compiled cache when it is current ([`cache`], an implementation detail)
//! or from the YAML ([`yaml`], which names file, line and field for every
//! mistake). `validate` and `explain` read the YAML alone ([`load_path`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::facts::Facts;
use crate::policy::select::Chosen;
use crate::size::Limit;

mod cache;
pub mod files;
pub mod perms;
pub mod select;
mod yaml;

pub use cache::RACY;
pub use yaml::{MemoryPlaces, check_names, load_files, load_path, memory_places, parse_file};

/// The policies of one directory (or file), ready to choose from.
pub struct PolicySet {
    loaded: cache::Loaded,
    path: PathBuf,
    cache_dir: Option<PathBuf>,
    check_perms: bool,
}

/// Why no policy set could be had.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The files, or a directory on the way to them, could be changed by
    /// someone other than root or this user.
    #[error("untrusted policy: {0}")]
    Untrusted(#[source] perms::Unsafe),
    #[error("invalid policy:\n{0}")]
    Invalid(#[source] PolicyErrors),
}

impl From<files::OpenError> for LoadError {
    fn from(e: files::OpenError) -> Self {
        match e {
            files::OpenError::Unsafe(e) => LoadError::Untrusted(e),
            files::OpenError::Io(e) => LoadError::Invalid(PolicyErrors(vec![e])),
        }
    }
}

impl From<PolicyErrors> for LoadError {
    fn from(e: PolicyErrors) -> Self {
        LoadError::Invalid(e)
    }
}

/// Opens the policies at `path`: checks who could have written them
/// (unless `check_perms` is false), then loads them through the cache in
/// `cache_dir` when one is given.
pub fn open(
    path: &Path,
    cache_dir: Option<&Path>,
    check_perms: bool,
) -> Result<PolicySet, LoadError> {
    let opened = files::open(path, check_perms)?;
    Ok(PolicySet {
        loaded: cache::load(&opened, cache_dir, RACY)?,
        path: path.to_path_buf(),
        cache_dir: cache_dir.map(Path::to_path_buf),
        check_perms,
    })
}

impl PolicySet {
    /// How many policies the set holds.
    pub fn len(&self) -> usize {
        self.loaded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The policy for a container, by the rules of
    /// [`crate::policy::select`]. A damaged cache is removed and the YAML
    /// read instead; only then can this fail.
    pub fn choose(&self, facts: &Facts) -> Result<Option<Chosen>, PolicyErrors> {
        match self.loaded.choose(facts) {
            Ok(c) => Ok(c),
            Err(cache::Damaged) => {
                log::warn!(
                    "the policy cache for {} is damaged; removing it and reading the YAML",
                    self.path.display()
                );
                if let Some(dir) = &self.cache_dir {
                    cache::remove(dir, &self.path);
                }
                let opened = files::open(&self.path, self.check_perms)
                    .map_err(|e| PolicyErrors(vec![e.into()]))?;
                Ok(crate::policy::select::choose(
                    &yaml::load_files(&opened)?,
                    facts,
                ))
            }
        }
    }
}

/// What to do when a container asks for more (or less) than a policy allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Set the value to the nearest bound.
    #[default]
    Clamp,
    /// Refuse to start the container.
    Deny,
    /// Keep what was asked and record the violation.
    Audit,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Clamp => "clamp",
            Action::Deny => "deny",
            Action::Audit => "audit",
        })
    }
}

/// Default, minimum and maximum of one quantity (memory, or swap on top of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Given to containers that ask for nothing; `None` falls back to `max`,
    /// as a Kubernetes LimitRange does.
    pub default: Option<Limit>,
    pub min: u64,
    pub max: Limit,
}

/// The `memory.high` (v2) / `memory.soft_limit_in_bytes` (v1) setting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum High {
    /// A share of the final memory limit, in percent (0 < p <= 100).
    Percent(f64),
    Size(u64),
}

/// Which containers a policy applies to. Every key given must match; within a
/// key, any of the globs may match. An empty selector matches every container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub names: Vec<String>,
    pub images: Vec<String>,
    pub ids: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cgroups: Vec<String>,
    /// Kubernetes: the pod's namespace, the pod's name, `sandbox` or
    /// `container` (`facts::pod`).
    pub namespaces: Vec<String>,
    pub pods: Vec<String>,
    pub container_types: Vec<String>,
}

/// Where a policy was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Shared by every policy of a file (a policy set may hold thousands).
    pub file: std::sync::Arc<Path>,
    pub line: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub name: String,
    pub priority: i64,
    pub selector: Selector,
    pub memory: Bounds,
    pub swap: Bounds,
    pub high: Option<High>,
    pub on_violation: Action,
    /// Shown to the user when `deny` refuses a container.
    pub message: Option<String>,
    /// Label and annotation keys of the selector that the operator vouches
    /// for: whoever starts a container sets its labels and annotations, so
    /// a policy selected through any other such key cannot grant more than
    /// the policy that would apply without it (see [`crate::policy::select`]).
    pub trust: Vec<String>,
    pub origin: Origin,
}

/// A mistake in a policy file, located as precisely as the parser allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    /// Dotted path of the offending key (`memory.max`), empty when unknown.
    pub field: String,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PolicyError {}

/// Every error found while loading, so `validate` reports all of them at once.
#[derive(Debug)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {
    /// The first mistake; the message lists them all.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.first().map(|e| e as _)
    }
}
