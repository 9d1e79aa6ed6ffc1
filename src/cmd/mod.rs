//! The commands: each parses nothing itself (flags are in [`crate::cli`]),
//! gathers facts its own way, calls the core, and prints.

pub mod apply;
pub mod diagnose;
pub mod doctor;
pub mod events;
pub mod explain;
pub mod hook;
pub mod recommend;
pub mod runtime;
pub mod setup;
pub mod sync;
pub mod top;
pub mod validate;
pub mod watch;

/// Prints rows as left-aligned columns two spaces apart, as `docker ps`
/// does; the first row is the header.
pub fn print_table<R: AsRef<[String]>>(rows: &[R]) {
    for line in table_lines(rows) {
        println!("{line}");
    }
}

/// The lines [`print_table`] prints.
pub fn table_lines<R: AsRef<[String]>>(rows: &[R]) -> Vec<String> {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.as_ref().iter().enumerate() {
            if i == widths.len() {
                widths.push(0);
            }
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .as_ref()
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

/// The policies the `--policy-dir` and `--insecure-policy-perms` flags
/// name, for the commands that take them.
impl crate::cli::PolicyArgs {
    /// Refuses policies others could have written, unless told not to.
    pub fn check_perms(&self) -> Result<(), crate::policy::perms::Unsafe> {
        if self.insecure_policy_perms {
            return Ok(());
        }
        crate::policy::files::check_policies(&self.policy_dir)
    }

    /// The policy set these flags name, through the cache in `cache_dir`
    /// when one is given.
    pub fn open(
        &self,
        cache_dir: Option<&std::path::Path>,
    ) -> Result<crate::policy::PolicySet, crate::policy::LoadError> {
        crate::policy::open(&self.policy_dir, cache_dir, !self.insecure_policy_perms)
    }
}
