//! The cache file's bytes in memory: a read-only mapping of the file.

/// The cache file's bytes, mapped rather than read: a hook reads the
/// header, the index and the few records a container could match, so only
/// the pages those lie on are ever mapped (from the page cache), not the
/// whole file read into fresh memory.
///
/// A mapping is only sound while nobody changes the file. The cache is
/// written to a new file and renamed into place, never changed in place,
/// and lives in a directory only its owner can write; a truncation behind
/// our back (by root) would end the hook with SIGBUS, which fails closed.
pub(super) struct Mapping {
    at: std::ptr::NonNull<std::ffi::c_void>,
    len: usize,
}

impl Mapping {
    pub(super) fn of(f: &std::fs::File, len: u64) -> Option<Mapping> {
        use nix::sys::mman::{MapFlags, ProtFlags, mmap};
        let len = std::num::NonZeroUsize::new(usize::try_from(len).ok()?)?;
        // SAFETY: a private read-only mapping of a regular file; see above
        // for why its contents do not change while it exists.
        let at =
            unsafe { mmap(None, len, ProtFlags::PROT_READ, MapFlags::MAP_PRIVATE, f, 0) }.ok()?;
        Some(Mapping { at, len: len.get() })
    }

    /// Test data, in a mapping of its own like a real cache file's.
    #[cfg(test)]
    pub(super) fn copy_of(bytes: &[u8]) -> Mapping {
        let f = tempfile_with(bytes);
        Mapping::of(&f, bytes.len() as u64).expect("map")
    }
}

#[cfg(test)]
fn tempfile_with(bytes: &[u8]) -> std::fs::File {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let p = std::env::temp_dir().join(format!("cglimit-map-{}-{n}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    let f = std::fs::File::open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    f
}

impl std::ops::Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `at` maps `len` readable bytes until `drop`.
        unsafe { std::slice::from_raw_parts(self.at.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped by `of` with this length, unmapped once.
        let _ = unsafe { nix::sys::mman::munmap(self.at, self.len) };
    }
}
