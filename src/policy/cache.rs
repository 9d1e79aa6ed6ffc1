//! A compiled cache of a policy directory, so the hook does not parse YAML
//! on every container start.
//!
//! Parsing 1,000 policies takes ~18 ms; the hook's budget is 1 ms. The cache
//! holds the policies in a compact binary form, keyed by a fingerprint of
//! every policy file (device, inode, size, mtime and ctime in ns) and of the
//! directory itself. A hook run stats the files, compares the fingerprint,
//! and decodes; any mismatch or damage falls back to parsing the YAML, which
//! also rewrites the cache. `validate` never uses it, so diagnostics always
//! come from the YAML.
//!
//! Two rules keep the cache from ever being trusted wrongly:
//! - a file changed within the last [`RACY`] is not cached (timestamps have
//!   a coarse granularity, so a second edit in the same tick could keep the
//!   same fingerprint: git's "racy clean" problem);
//! - the cache file must belong to this user and not be writable by group or
//!   others (it decides container limits, like the policies themselves).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use super::{Action, Bounds, High, Origin, Policy, PolicyErrors, Selector};
use crate::facts::Facts;
use crate::select::{self, Candidate, Chosen};
use crate::size::Limit;

/// Names the format; a new layout gets a new number, so an old cache is
/// simply not recognised (and rewritten).
const MAGIC: &[u8; 8] = b"CGLPOL\x00\x04";
/// Files changed more recently than this are not cached.
pub const RACY: Duration = Duration::from_secs(2);

/// The policies a hook decides with: parsed from YAML, or the compiled
/// cache's bytes, matched without decoding.
pub enum PolicySet {
    Parsed(Vec<Policy>),
    Compiled(Compiled),
}

/// A verified cache file: fingerprint matched, owner and mode checked,
/// string table checked to be UTF-8.
pub struct Compiled {
    data: Mapping,
    files: Vec<Arc<Path>>,
    /// Where the string table lies in `data`.
    table: std::ops::Range<usize>,
    /// Where the policy records start, and how many there are.
    records: usize,
    count: usize,
}

/// The cache file's bytes, mapped rather than read: with 1,000 policies a
/// read into fresh memory costs ~40 page faults, about 0.06 ms of a hook
/// run here, while a populated mapping of the page cache costs one call.
///
/// A mapping is only sound while nobody changes the file. The cache is
/// written to a new file and renamed into place, never changed in place,
/// and lives in a directory only its owner can write; a truncation behind
/// our back (by root) would end the hook with SIGBUS, which fails closed.
struct Mapping {
    at: std::ptr::NonNull<std::ffi::c_void>,
    len: usize,
}

impl Mapping {
    fn of(f: &std::fs::File, len: u64) -> Option<Mapping> {
        use nix::sys::mman::{MapFlags, ProtFlags, mmap};
        let len = std::num::NonZeroUsize::new(usize::try_from(len).ok()?)?;
        // SAFETY: a private read-only mapping of a regular file; see above
        // for why its contents do not change while it exists.
        let at = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_POPULATE,
                f,
                0,
            )
        }
        .ok()?;
        Some(Mapping { at, len: len.get() })
    }

    /// Test data, in a mapping of its own like a real cache file's.
    #[cfg(test)]
    fn copy_of(bytes: &[u8]) -> Mapping {
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

/// The cache's bytes are damaged (they passed the fingerprint check but do
/// not decode): the caller reparses the YAML.
#[derive(Debug)]
pub struct Damaged;

impl PolicySet {
    #[cfg(test)]
    fn len(&self) -> usize {
        match self {
            PolicySet::Parsed(p) => p.len(),
            PolicySet::Compiled(c) => c.count,
        }
    }

    /// The policy for a container, by the rules of [`select`].
    pub fn choose(&self, facts: &Facts) -> Result<Option<Chosen>, Damaged> {
        match self {
            PolicySet::Parsed(p) => Ok(select::choose(p, facts)),
            PolicySet::Compiled(c) => c.choose(facts),
        }
    }
}

impl Compiled {
    fn table(&self) -> Table<'_> {
        // Checked by `read_cache`; an empty table if that ever changes.
        Table(std::str::from_utf8(&self.data[self.table.clone()]).unwrap_or_default())
    }

    fn records<'a, 'f>(
        &'a self,
        table: Table<'a>,
        damaged: &'f std::cell::Cell<bool>,
    ) -> Records<'a, 'f> {
        Records {
            d: Dec {
                b: &self.data,
                i: self.records,
            },
            table,
            left: self.count,
            damaged,
        }
    }

    /// Ranks the records as they are scanned: nothing is collected, and
    /// only the winner (and its baseline) is decoded.
    fn choose(&self, facts: &Facts) -> Result<Option<Chosen>, Damaged> {
        let damaged = std::cell::Cell::new(false);
        let t = self.table();
        let ranking = select::rank(self.records(t, &damaged), facts);
        if damaged.get() {
            return Err(Damaged);
        }
        ranking.chosen(|e| decode_record(e.record, t, &self.files).ok_or(Damaged))
    }

    #[cfg(test)]
    fn decode_all(&self) -> Option<Vec<Policy>> {
        let damaged = std::cell::Cell::new(false);
        let t = self.table();
        let all: Option<Vec<Policy>> = self
            .records(t, &damaged)
            .map(|e| decode_record(e.record, t, &self.files))
            .collect();
        if damaged.get() { None } else { all }
    }
}

/// Loads the policies at `path`, through the cache in `cache_dir` when one is given.
pub fn load(path: &Path, cache_dir: Option<&Path>) -> Result<PolicySet, PolicyErrors> {
    load_with(path, cache_dir, RACY)
}

/// Chooses the policy for a container, through the cache; a damaged cache
/// is logged and the YAML read instead.
pub fn choose(
    path: &Path,
    cache_dir: Option<&Path>,
    facts: &Facts,
) -> Result<Option<Chosen>, PolicyErrors> {
    choose_from(&load(path, cache_dir)?, path, cache_dir, facts)
}

/// Chooses from policies [`load`]ed from `path` through `cache_dir`; a
/// damaged cache is removed and the YAML read instead.
pub fn choose_from(
    set: &PolicySet,
    path: &Path,
    cache_dir: Option<&Path>,
    facts: &Facts,
) -> Result<Option<Chosen>, PolicyErrors> {
    match set.choose(facts) {
        Ok(c) => Ok(c),
        Err(Damaged) => {
            log::warn!(
                "the policy cache for {} is damaged; removing it and reading the YAML",
                path.display()
            );
            // The next run writes a fresh one.
            if let Some(dir) = cache_dir {
                let _ = std::fs::remove_file(dir.join(cache_name(path)));
            }
            Ok(select::choose(&super::load_path(path)?, facts))
        }
    }
}

fn load_with(
    path: &Path,
    cache_dir: Option<&Path>,
    racy_window: Duration,
) -> Result<PolicySet, PolicyErrors> {
    let Some(cache_dir) = cache_dir else {
        return super::load_path(path).map(PolicySet::Parsed);
    };
    let Ok(fp) = fingerprint(path, racy_window) else {
        return super::load_path(path).map(PolicySet::Parsed);
    };
    let cache_file = cache_dir.join(cache_name(path));
    if let Some(c) = read_cache(&cache_file, &fp.bytes) {
        return Ok(PolicySet::Compiled(c));
    }
    let policies = super::load_path(path)?;
    if !fp.racy
        && let Err(e) = write_cache(cache_dir, &cache_file, &fp.bytes, &policies)
    {
        log::debug!("cannot write policy cache {}: {e}", cache_file.display());
    }
    Ok(PolicySet::Parsed(policies))
}

fn cache_name(path: &Path) -> String {
    // FNV-1a of the path as given: one cache per policy directory.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("policies-{h:016x}.bin")
}

struct Fingerprint {
    bytes: Vec<u8>,
    racy: bool,
}

fn fingerprint(path: &Path, racy_window: Duration) -> std::io::Result<Fingerprint> {
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
    let meta = std::fs::metadata(path)?;
    add(&mut e, path, &meta);
    if meta.is_dir() {
        let files = super::policy_files(path).map_err(|e| std::io::Error::other(e.message))?;
        for f in files {
            let m = std::fs::metadata(&f)?;
            add(&mut e, &f, &m);
        }
    }
    Ok(Fingerprint { bytes: e.0, racy })
}

fn read_cache(file: &Path, fp: &[u8]) -> Option<Compiled> {
    let f = std::fs::File::open(file).ok()?;
    let m = f.metadata().ok()?;
    if m.uid() != nix::unistd::geteuid().as_raw() || m.permissions().mode() & 0o022 != 0 {
        log::warn!(
            "ignoring policy cache {}: not owned by this user or writable by others",
            file.display()
        );
        return None;
    }
    let data = Mapping::of(&f, m.len())?;
    let mut d = Dec { b: &data, i: 0 };
    if d.take(8)? != MAGIC || d.bytes()? != fp {
        return None;
    }
    let nfiles = d.u32()? as usize;
    let files: Vec<Arc<Path>> = (0..nfiles)
        .map(|_| d.str().map(|s| Path::new(&s).into()))
        .collect::<Option<_>>()?;
    let text = d.bytes()?;
    std::str::from_utf8(text).ok()?;
    let table = d.i - text.len()..d.i;
    let count = d.u32()? as usize;
    let records = d.i;
    Some(Compiled {
        data,
        files,
        table,
        records,
        count,
    })
}

fn write_cache(dir: &Path, file: &Path, fp: &[u8], policies: &[Policy]) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut e = Enc::default();
    e.0.extend_from_slice(MAGIC);
    e.bytes(fp);
    encode(&mut e, policies);
    let tmp: PathBuf = dir.join(format!(".{}.{}", cache_name(file), std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let r = f.write_all(&e.0).and_then(|_| std::fs::rename(&tmp, file));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

// ---- codec ------------------------------------------------------------------

#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn limit(&mut self, l: Limit) {
        match l {
            Limit::Bytes(b) => {
                self.u8(0);
                self.u64(b);
            }
            Limit::Unlimited => self.u8(1),
        }
    }
    fn bounds(&mut self, b: &Bounds) {
        match b.default {
            None => self.u8(0),
            Some(l) => {
                self.u8(1);
                self.limit(l);
            }
        }
        self.u64(b.min);
        self.limit(b.max);
    }
}

/// The string table being built: every distinct string once, referred to
/// by offset and length.
#[derive(Default)]
struct Strings<'p> {
    text: String,
    seen: std::collections::HashMap<&'p str, (u32, u32)>,
}

impl<'p> Strings<'p> {
    fn add(&mut self, e: &mut Enc, s: &'p str) {
        let (at, len) = *self.seen.entry(s).or_insert_with(|| {
            let at = self.text.len() as u32;
            self.text.push_str(s);
            (at, s.len() as u32)
        });
        e.u32(at);
        e.u32(len);
    }
    fn list(&mut self, e: &mut Enc, v: &'p [String]) {
        e.u32(v.len() as u32);
        v.iter().for_each(|s| self.add(e, s));
    }
    fn pairs(&mut self, e: &mut Enc, m: &'p std::collections::BTreeMap<String, String>) {
        e.u32(m.len() as u32);
        for (k, v) in m {
            self.add(e, k);
            self.add(e, v);
        }
    }
}

struct Dec<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Option<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_owned)
    }
    /// A string of the table, by reference.
    fn text(&mut self, t: Table<'a>) -> Option<&'a str> {
        let at = self.u32()? as usize;
        let len = self.u32()? as usize;
        t.0.get(at..at.checked_add(len)?)
    }
    /// Skips over a list of `arity`-tuples of string references, checking
    /// each lands inside the table on character boundaries, and returns it.
    fn list(&mut self, t: Table<'a>, arity: u32) -> Option<List<'a>> {
        let start = self.i;
        let n = self.u32()?;
        for _ in 0..n.checked_mul(arity)? {
            self.text(t)?;
        }
        Some(List {
            refs: &self.b[start..self.i],
            table: t,
        })
    }
    fn strs(&mut self, t: Table<'a>) -> Option<Vec<String>> {
        let n = self.u32()? as usize;
        (0..n).map(|_| self.text(t).map(str::to_owned)).collect()
    }
    fn map(&mut self, t: Table<'a>) -> Option<std::collections::BTreeMap<String, String>> {
        let n = self.u32()? as usize;
        (0..n)
            .map(|_| Some((self.text(t)?.to_owned(), self.text(t)?.to_owned())))
            .collect()
    }
    fn limit(&mut self) -> Option<Limit> {
        match self.u8()? {
            0 => Some(Limit::Bytes(self.u64()?)),
            1 => Some(Limit::Unlimited),
            _ => None,
        }
    }
    fn bounds(&mut self) -> Option<Bounds> {
        let default = match self.u8()? {
            0 => None,
            1 => Some(self.limit()?),
            _ => return None,
        };
        Some(Bounds {
            default,
            min: self.u64()?,
            max: self.limit()?,
        })
    }
}

/// The cache's string table, checked to be UTF-8 once when the file is
/// read: selection then slices it without checking each string again.
#[derive(Clone, Copy)]
struct Table<'a>(&'a str);

/// Layout: file table, string table, count, then one length-prefixed
/// record per policy: priority, name and selector first (what selection
/// reads in place), then the limits (decoded only for the chosen policy).
/// Strings are (offset, length) into the string table, so skipping over a
/// record costs nothing per byte.
fn encode(e: &mut Enc, policies: &[Policy]) {
    // Origins share a few file names: store each once.
    let mut files: Vec<&Path> = Vec::new();
    for p in policies {
        if !files.contains(&&*p.origin.file) {
            files.push(&p.origin.file);
        }
    }
    e.u32(files.len() as u32);
    files.iter().for_each(|f| e.str(&f.to_string_lossy()));
    let mut strings = Strings::default();
    let mut r = Enc::default();
    for p in policies {
        let at = r.0.len();
        r.u32(0);
        r.i64(p.priority);
        strings.add(&mut r, &p.name);
        let s = &p.selector;
        strings.list(&mut r, &s.names);
        strings.list(&mut r, &s.images);
        strings.list(&mut r, &s.ids);
        strings.list(&mut r, &s.cgroups);
        strings.pairs(&mut r, &s.labels);
        strings.pairs(&mut r, &s.annotations);
        strings.list(&mut r, &p.trust);
        r.bounds(&p.memory);
        r.bounds(&p.swap);
        match p.high {
            None => r.u8(0),
            Some(High::Percent(v)) => {
                r.u8(1);
                r.u64(v.to_bits());
            }
            Some(High::Size(v)) => {
                r.u8(2);
                r.u64(v);
            }
        }
        r.u8(match p.on_violation {
            Action::Clamp => 0,
            Action::Deny => 1,
            Action::Audit => 2,
        });
        match &p.message {
            None => r.u8(0),
            Some(m) => {
                r.u8(1);
                strings.add(&mut r, m);
            }
        }
        let fi = files
            .iter()
            .position(|f| *f == &*p.origin.file)
            .unwrap_or(0);
        r.u32(fi as u32);
        r.u64(p.origin.line);
        let len = (r.0.len() - at - 4) as u32;
        r.0[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    e.str(&strings.text);
    e.u32(policies.len() as u32);
    e.0.extend_from_slice(&r.0);
}

/// A policy record read in place: selection needs no allocation.
#[derive(Clone, Copy)]
struct Entry<'a> {
    priority: i64,
    name: &'a str,
    names: List<'a>,
    images: List<'a>,
    ids: List<'a>,
    cgroups: List<'a>,
    labels: List<'a>,
    annotations: List<'a>,
    trusted: List<'a>,
    record: &'a [u8],
}

/// An encoded list of string references (or of key/value pairs), already
/// checked by [`Entry::scan`].
#[derive(Clone, Copy)]
struct List<'a> {
    refs: &'a [u8],
    table: Table<'a>,
}

impl<'a> List<'a> {
    fn strs(self) -> impl Iterator<Item = &'a str> {
        let mut d = Dec { b: self.refs, i: 0 };
        let n = d.u32().unwrap_or(0);
        (0..n).map_while(move |_| d.text(self.table))
    }

    fn pairs(self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let mut d = Dec { b: self.refs, i: 0 };
        let n = d.u32().unwrap_or(0);
        (0..n).map_while(move |_| Some((d.text(self.table)?, d.text(self.table)?)))
    }
}

impl<'a> Entry<'a> {
    fn scan(record: &'a [u8], t: Table<'a>) -> Option<Entry<'a>> {
        let mut d = Dec { b: record, i: 0 };
        Some(Entry {
            priority: d.i64()?,
            name: d.text(t)?,
            names: d.list(t, 1)?,
            images: d.list(t, 1)?,
            ids: d.list(t, 1)?,
            cgroups: d.list(t, 1)?,
            labels: d.list(t, 2)?,
            annotations: d.list(t, 2)?,
            trusted: d.list(t, 1)?,
            record,
        })
    }
}

impl Candidate for Entry<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn priority(&self) -> i64 {
        self.priority
    }
    fn names(&self) -> impl Iterator<Item = &str> {
        self.names.strs()
    }
    fn images(&self) -> impl Iterator<Item = &str> {
        self.images.strs()
    }
    fn ids(&self) -> impl Iterator<Item = &str> {
        self.ids.strs()
    }
    fn cgroups(&self) -> impl Iterator<Item = &str> {
        self.cgroups.strs()
    }
    fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.pairs()
    }
    fn annotations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.annotations.pairs()
    }
    fn trusted(&self) -> impl Iterator<Item = &str> {
        self.trusted.strs()
    }
}

/// The records one after another, scanned in place; damage ends the walk
/// and is remembered, so a ranking over a damaged cache is never used.
struct Records<'a, 'f> {
    d: Dec<'a>,
    table: Table<'a>,
    left: usize,
    damaged: &'f std::cell::Cell<bool>,
}

impl<'a> Iterator for Records<'a, '_> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        if self.left == 0 {
            if self.d.i != self.d.b.len() {
                self.damaged.set(true);
            }
            return None;
        }
        self.left -= 1;
        let e = self.d.bytes().and_then(|r| Entry::scan(r, self.table));
        if e.is_none() {
            self.damaged.set(true);
            self.left = 0;
            self.d.i = self.d.b.len();
        }
        e
    }
}

fn decode_record(record: &[u8], t: Table<'_>, files: &[Arc<Path>]) -> Option<Policy> {
    let mut d = Dec { b: record, i: 0 };
    let priority = d.i64()?;
    let name = d.text(t)?.to_owned();
    let mut selector = Selector {
        names: d.strs(t)?,
        images: d.strs(t)?,
        ids: d.strs(t)?,
        cgroups: d.strs(t)?,
        ..Default::default()
    };
    selector.labels = d.map(t)?;
    selector.annotations = d.map(t)?;
    let trust = d.strs(t)?;
    let memory = d.bounds()?;
    let swap = d.bounds()?;
    let high = match d.u8()? {
        0 => None,
        1 => Some(High::Percent(f64::from_bits(d.u64()?))),
        2 => Some(High::Size(d.u64()?)),
        _ => return None,
    };
    let on_violation = match d.u8()? {
        0 => Action::Clamp,
        1 => Action::Deny,
        2 => Action::Audit,
        _ => return None,
    };
    let message = match d.u8()? {
        0 => None,
        1 => Some(d.text(t)?.to_owned()),
        _ => return None,
    };
    let file = Arc::clone(files.get(d.u32()? as usize)?);
    let line = d.u64()?;
    (d.i == d.b.len()).then_some(Policy {
        name,
        priority,
        selector,
        memory,
        swap,
        high,
        on_violation,
        message,
        trust,
        origin: Origin { file, line },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cglimit-cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("p")).unwrap();
        d
    }

    /// A policy dir with one policy, "real", and its cache written: the
    /// test dir, the policy and cache dirs, and the cache file.
    fn cached_real(name: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
        let d = tmp(name);
        let (p, c) = (d.join("p"), d.join("cache"));
        std::fs::write(p.join("a.yaml"), "name: real\n").unwrap();
        load_now(&p, &c).unwrap();
        let cf = c.join(cache_name(&p));
        (d, p, c, cf)
    }

    const TEXT: &str = "name: a\npriority: 3\nmatch: {names: [web-*], labels: {t: x}, annotations: {k: v}, images: [i], ids: [d], cgroups: [c]}\nmemory: {default: 1g, min: 16m, max: max}\nswap: {max: 1g}\nhigh: 90%\nonViolation: deny\nmessage: m\n---\nname: b\nhigh: 256m\nonViolation: audit\n";

    /// Loads with no racy window, as if every file were old enough.
    fn load_now(p: &Path, c: &Path) -> Result<PolicySet, PolicyErrors> {
        load_with(p, Some(c), Duration::ZERO)
    }

    fn all(set: PolicySet) -> Vec<Policy> {
        match set {
            PolicySet::Parsed(p) => p,
            PolicySet::Compiled(c) => c.decode_all().unwrap(),
        }
    }

    fn compiled(policies: &[Policy]) -> (Vec<u8>, Option<Compiled>) {
        let mut e = Enc::default();
        e.0.extend_from_slice(MAGIC);
        e.bytes(b"fp");
        encode(&mut e, policies);
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("cglimit-enc-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.bin");
        std::fs::write(&f, &e.0).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = read_cache(&f, b"fp");
        std::fs::remove_dir_all(&dir).unwrap();
        (e.0, c)
    }

    #[test]
    fn round_trips_every_field() {
        let d = tmp("rt");
        std::fs::write(d.join("p/a.yaml"), TEXT).unwrap();
        let parsed = super::super::load_path(&d.join("p")).unwrap();
        let (_, c) = compiled(&parsed);
        assert_eq!(c.unwrap().decode_all().unwrap(), parsed);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn damage_is_detected_never_a_panic() {
        let parsed = super::super::parse_file(Path::new("x.yaml"), TEXT).unwrap();
        let (bytes, _) = compiled(&parsed);
        let facts = Facts::default();
        for cut in 0..bytes.len() {
            let truncated = &bytes[..cut];
            let mut d = Dec { b: truncated, i: 0 };
            let header = (|| {
                d.take(8)?;
                d.bytes()?;
                let n = d.u32()?;
                for _ in 0..n {
                    d.str()?;
                }
                let text = d.bytes()?;
                std::str::from_utf8(text).ok()?;
                let table = d.i - text.len()..d.i;
                let count = d.u32()? as usize;
                Some((table, count))
            })();
            let Some((table, count)) = header else {
                continue;
            };
            let c = Compiled {
                data: Mapping::copy_of(truncated),
                files: vec![Path::new("x.yaml").into()],
                table,
                records: d.i,
                count,
            };
            assert!(c.choose(&facts).is_err(), "truncated at {cut}");
        }
    }

    #[test]
    fn a_string_reference_outside_the_table_or_inside_a_character_is_damage() {
        let parsed = super::super::parse_file(Path::new("x.yaml"), "name: é\n").unwrap();
        let (bytes, c) = compiled(&parsed);
        let c = c.unwrap();
        assert_eq!(c.table().0, "é", "each string once");
        let facts = Facts::default();
        assert_eq!(c.choose(&facts).unwrap().unwrap().policy.name, "é");
        // The name's reference is the record's first after its priority.
        let name_ref = c.records + 4 + 8;
        for (at, len) in [(0u32, 1u32), (0, 3), (9, 1)] {
            let mut data = bytes.clone();
            data[name_ref..name_ref + 4].copy_from_slice(&at.to_le_bytes());
            data[name_ref + 4..name_ref + 8].copy_from_slice(&len.to_le_bytes());
            let damaged = Compiled {
                data: Mapping::copy_of(&data),
                files: c.files.clone(),
                table: c.table.clone(),
                records: c.records,
                count: c.count,
            };
            assert!(damaged.choose(&facts).is_err(), "{at}+{len}");
        }
    }

    #[test]
    fn a_damaged_cache_is_removed_and_the_yaml_decides() {
        let (d, p, c, cf) = cached_real("damaged");
        let Some(good) = read_cache(&cf, &fingerprint(&p, Duration::ZERO).unwrap().bytes) else {
            panic!("cache written");
        };
        // Point the name outside the string table: well framed, but damaged.
        let mut bytes = std::fs::read(&cf).unwrap();
        let name_ref = good.records + 4 + 8;
        bytes[name_ref..name_ref + 4].copy_from_slice(&1000u32.to_le_bytes());
        drop(good);
        std::fs::write(&cf, &bytes).unwrap();
        let facts = Facts::default();
        let chosen = damaged_then_chosen(&p, &c, &facts);
        assert_eq!(chosen.policy.name, "real");
        assert!(!cf.exists(), "removed, to be written again");
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Checks the set from the cache is damaged, then chooses as a hook does.
    fn damaged_then_chosen(p: &Path, c: &Path, facts: &Facts) -> Chosen {
        let set = load_now(p, c).unwrap();
        assert!(
            matches!(set, PolicySet::Compiled(_)),
            "served from the cache"
        );
        assert!(set.choose(facts).is_err(), "the damage went unnoticed");
        choose(p, Some(c), facts).unwrap().unwrap()
    }

    #[test]
    fn a_table_that_is_not_utf8_is_not_read() {
        let parsed = super::super::parse_file(Path::new("x.yaml"), "name: é\n").unwrap();
        let (mut bytes, c) = compiled(&parsed);
        let c = c.unwrap();
        bytes[c.table.start] = 0xff;
        let dir = tmp("utf8");
        let f = dir.join("c.bin");
        std::fs::write(&f, &bytes).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_cache(&f, b"fp").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compiled_choice_equals_parsed_choice() {
        let parsed = super::super::parse_file(
            Path::new("x.yaml"),
            "name: all\n---\nname: web\nmatch: {names: [web-*]}\n---\nname: hi\npriority: 2\nmatch: {labels: {tier: f*}}\nmemory: {max: 9G}\n---\nname: none\nmatch: {ids: [zzz]}\n---\nname: trusted\npriority: 3\nmatch: {labels: {team: x}}\ntrust: [team]\n",
        )
        .unwrap();
        let (_, c) = compiled(&parsed);
        let c = c.unwrap();
        for (name, labels, want, why) in [
            (None, vec![], "all", "the only matching policy"),
            (Some("web-1"), vec![], "web", "more specific"),
            (
                Some("web-1"),
                vec![("tier", "front")],
                "hi",
                "bounded by the maximum of \"web\"",
            ),
            (
                Some("web-1"),
                vec![("tier", "front"), ("team", "x")],
                "trusted",
                "highest priority",
            ),
        ] {
            let f = Facts {
                id: "abc".into(),
                name: name.map(String::from),
                labels: labels
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            };
            let a = c.choose(&f).unwrap().unwrap();
            let b = select::choose(&parsed, &f).unwrap();
            assert_eq!(a.policy, b.policy);
            assert_eq!(a.baseline, b.baseline);
            assert_eq!(a.policy.name, want);
            assert_eq!(a.why, b.why);
            assert!(a.why.contains(why), "{}", a.why);
        }
    }

    #[test]
    fn cache_is_used_and_invalidated_by_edits() {
        let d = tmp("inval");
        let (p, c) = (d.join("p"), d.join("cache"));
        std::fs::write(p.join("a.yaml"), TEXT).unwrap();
        // Fresh files are racy: nothing is cached yet.
        assert!(matches!(load(&p, Some(&c)).unwrap(), PolicySet::Parsed(_)));
        let cf = c.join(cache_name(&p));
        assert!(!cf.exists());
        let first = all(load_now(&p, &c).unwrap());
        assert!(cf.exists());
        assert_eq!(
            std::fs::metadata(&cf).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = load_now(&p, &c).unwrap();
        assert!(
            matches!(again, PolicySet::Compiled(_)),
            "served from the cache"
        );
        assert_eq!(all(again), first);
        // An edit changes the fingerprint: the YAML is read again.
        std::fs::write(p.join("a.yaml"), "name: only\n").unwrap();
        let after = load_now(&p, &c).unwrap();
        assert!(matches!(after, PolicySet::Parsed(_)));
        let after = all(after);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].name, "only");
        // A new file too.
        std::fs::write(p.join("b.yaml"), "name: two\n").unwrap();
        assert_eq!(load_now(&p, &c).unwrap().len(), 2);
        // A broken policy is reported even if a cache exists.
        std::fs::write(p.join("b.yaml"), "name: two\nbogus: 1\n").unwrap();
        assert!(load_now(&p, &c).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_cache_writable_by_others_is_ignored() {
        let (d, p, c, cf) = cached_real("perm");
        // Forge a cache that says something else, with a matching fingerprint.
        let fp = fingerprint(&p, Duration::ZERO).unwrap();
        let mut forged = super::super::parse_file(Path::new("x"), "name: forged\n").unwrap();
        forged[0].memory.max = Limit::Unlimited;
        let mut e = Enc::default();
        e.0.extend_from_slice(MAGIC);
        e.bytes(&fp.bytes);
        encode(&mut e, &forged);
        std::fs::write(&cf, &e.0).unwrap();
        std::fs::set_permissions(&cf, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            all(load_now(&p, &c).unwrap())[0].name,
            "forged",
            "the forgery is well formed"
        );
        std::fs::write(&cf, &e.0).unwrap();
        std::fs::set_permissions(&cf, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(all(load_now(&p, &c).unwrap())[0].name, "real");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
