//! What identifies a policy directory's contents without reading them:
//! device, inode, size, mtime and ctime (in ns) of the directory and of
//! every policy file, in the order they are read.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::codec::Enc;
use crate::policy::files::Opened;

pub(super) struct Fingerprint {
    pub bytes: Vec<u8>,
    /// A file changed within the racy window: a second change in the same
    /// timestamp tick could keep this fingerprint, so it is not cached.
    pub racy: bool,
}

/// The fingerprint of the opened directory (or file) and its policy files.
pub(super) fn of(opened: &Opened, racy_window: Duration) -> Fingerprint {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let horizon = now.saturating_sub(racy_window).as_nanos() as i128;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    let mut e = Enc::default();
    let mut racy = false;
    let mut add = |e: &mut Enc, p: &Path, m: &std::fs::Metadata| {
        e.str(&p.to_string_lossy());
        for v in [m.dev(), m.ino(), m.size()] {
            e.u64(v);
        }
        for v in [m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()] {
            e.i64(v);
        }
        racy |=
            ns(m.mtime(), m.mtime_nsec()) >= horizon || ns(m.ctime(), m.ctime_nsec()) >= horizon;
    };
    add(&mut e, &opened.path, &opened.meta);
    if opened.meta.is_dir() {
        for f in &opened.files {
            add(&mut e, &f.path, &f.meta);
        }
    }
    Fingerprint { bytes: e.0, racy }
}
