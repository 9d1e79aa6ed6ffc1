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

use super::{Action, Bounds, High, Origin, Policy, PolicyErrors, Selector};
use crate::size::Limit;

const MAGIC: &[u8; 8] = b"CGLPOL\x00\x01";
/// Files changed more recently than this are not cached.
pub const RACY: Duration = Duration::from_secs(2);

/// Loads the policies at `path`, through the cache in `cache_dir` when one is given.
pub fn load(path: &Path, cache_dir: Option<&Path>) -> Result<Vec<Policy>, PolicyErrors> {
    load_with(path, cache_dir, RACY)
}

fn load_with(
    path: &Path,
    cache_dir: Option<&Path>,
    racy_window: Duration,
) -> Result<Vec<Policy>, PolicyErrors> {
    let Some(cache_dir) = cache_dir else {
        return super::load_path(path);
    };
    let Ok(fp) = fingerprint(path, racy_window) else {
        return super::load_path(path);
    };
    let cache_file = cache_dir.join(cache_name(path));
    if let Some(p) = read_cache(&cache_file, &fp.bytes) {
        return Ok(p);
    }
    let policies = super::load_path(path)?;
    if !fp.racy
        && let Err(e) = write_cache(cache_dir, &cache_file, &fp.bytes, &policies)
    {
        log::debug!("cannot write policy cache {}: {e}", cache_file.display());
    }
    Ok(policies)
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

fn read_cache(file: &Path, fp: &[u8]) -> Option<Vec<Policy>> {
    let f = std::fs::File::open(file).ok()?;
    let m = f.metadata().ok()?;
    if m.uid() != nix::unistd::geteuid().as_raw() || m.permissions().mode() & 0o022 != 0 {
        log::warn!(
            "ignoring policy cache {}: not owned by this user or writable by others",
            file.display()
        );
        return None;
    }
    let data = std::fs::read(file).ok()?;
    let mut d = Dec { b: &data, i: 0 };
    if d.take(8)? != MAGIC || d.bytes()? != fp {
        return None;
    }
    let policies = decode(&mut d);
    if policies.is_none() {
        log::debug!("policy cache {} is damaged; reparsing", file.display());
    }
    policies
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
    fn strs(&mut self, v: &[String]) {
        self.u32(v.len() as u32);
        v.iter().for_each(|s| self.str(s));
    }
    fn map(&mut self, m: &std::collections::BTreeMap<String, String>) {
        self.u32(m.len() as u32);
        for (k, v) in m {
            self.str(k);
            self.str(v);
        }
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
    fn strs(&mut self) -> Option<Vec<String>> {
        let n = self.u32()? as usize;
        (0..n).map(|_| self.str()).collect()
    }
    fn map(&mut self) -> Option<std::collections::BTreeMap<String, String>> {
        let n = self.u32()? as usize;
        (0..n).map(|_| Some((self.str()?, self.str()?))).collect()
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
    e.u32(policies.len() as u32);
    for p in policies {
        e.str(&p.name);
        e.i64(p.priority);
        let s = &p.selector;
        e.strs(&s.names);
        e.strs(&s.images);
        e.strs(&s.ids);
        e.map(&s.labels);
        e.map(&s.annotations);
        e.strs(&s.cgroups);
        e.bounds(&p.memory);
        e.bounds(&p.swap);
        match p.high {
            None => e.u8(0),
            Some(High::Percent(v)) => {
                e.u8(1);
                e.u64(v.to_bits());
            }
            Some(High::Size(v)) => {
                e.u8(2);
                e.u64(v);
            }
        }
        e.u8(match p.on_violation {
            Action::Clamp => 0,
            Action::Deny => 1,
            Action::Audit => 2,
        });
        match &p.message {
            None => e.u8(0),
            Some(m) => {
                e.u8(1);
                e.str(m);
            }
        }
        let fi = files
            .iter()
            .position(|f| *f == &*p.origin.file)
            .unwrap_or(0);
        e.u32(fi as u32);
        e.u64(p.origin.line);
    }
}

fn decode(d: &mut Dec) -> Option<Vec<Policy>> {
    let nfiles = d.u32()? as usize;
    let files: Vec<std::sync::Arc<Path>> = (0..nfiles)
        .map(|_| d.str().map(|s| Path::new(&s).into()))
        .collect::<Option<_>>()?;
    let n = d.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let name = d.str()?;
        let priority = d.i64()?;
        let selector = Selector {
            names: d.strs()?,
            images: d.strs()?,
            ids: d.strs()?,
            labels: d.map()?,
            annotations: d.map()?,
            cgroups: d.strs()?,
        };
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
            1 => Some(d.str()?),
            _ => return None,
        };
        let file = std::sync::Arc::clone(files.get(d.u32()? as usize)?);
        let line = d.u64()?;
        out.push(Policy {
            name,
            priority,
            selector,
            memory,
            swap,
            high,
            on_violation,
            message,
            origin: Origin { file, line },
        });
    }
    (d.i == d.b.len()).then_some(out)
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

    const TEXT: &str = "name: a\npriority: 3\nmatch: {names: [web-*], labels: {t: x}, annotations: {k: v}, images: [i], ids: [d], cgroups: [c]}\nmemory: {default: 1g, min: 16m, max: max}\nswap: {max: 1g}\nhigh: 90%\nonViolation: deny\nmessage: m\n---\nname: b\nhigh: 256m\nonViolation: audit\n";

    /// Loads with no racy window, as if every file were old enough.
    fn load_now(p: &Path, c: &Path) -> Result<Vec<Policy>, PolicyErrors> {
        load_with(p, Some(c), Duration::ZERO)
    }

    #[test]
    fn round_trips_every_field() {
        let d = tmp("rt");
        std::fs::write(d.join("p/a.yaml"), TEXT).unwrap();
        let parsed = super::super::load_path(&d.join("p")).unwrap();
        let mut e = Enc::default();
        encode(&mut e, &parsed);
        let decoded = decode(&mut Dec { b: &e.0, i: 0 }).unwrap();
        assert_eq!(decoded, parsed);
        // Every truncation is rejected, never a panic or a partial set.
        for cut in 0..e.0.len() {
            assert!(
                decode(&mut Dec {
                    b: &e.0[..cut],
                    i: 0
                })
                .is_none(),
                "{cut}"
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn cache_is_used_and_invalidated_by_edits() {
        let d = tmp("inval");
        let (p, c) = (d.join("p"), d.join("cache"));
        std::fs::write(p.join("a.yaml"), TEXT).unwrap();
        // Fresh files are racy: nothing is cached yet.
        load(&p, Some(&c)).unwrap();
        assert!(!c.join(cache_name(&p)).exists());
        let first = load_now(&p, &c).unwrap();
        let cf = c.join(cache_name(&p));
        assert!(cf.exists());
        assert_eq!(
            std::fs::metadata(&cf).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let before = std::fs::metadata(&cf).unwrap().modified().unwrap();
        assert_eq!(load_now(&p, &c).unwrap(), first);
        assert_eq!(
            std::fs::metadata(&cf).unwrap().modified().unwrap(),
            before,
            "served from the cache"
        );
        // An edit changes the fingerprint: the YAML is read again.
        std::fs::write(p.join("a.yaml"), "name: only\n").unwrap();
        let after = load_now(&p, &c).unwrap();
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
        let d = tmp("perm");
        let (p, c) = (d.join("p"), d.join("cache"));
        std::fs::write(p.join("a.yaml"), "name: real\n").unwrap();
        load_now(&p, &c).unwrap();
        let cf = c.join(cache_name(&p));
        // Forge a cache that says something else, with a matching fingerprint.
        let fp = fingerprint(&p, Duration::ZERO).unwrap();
        let mut forged = super::super::parse_file(Path::new("x"), "name: forged\n").unwrap();
        forged[0].memory.max = Limit::Unlimited;
        let mut e = Enc::default();
        e.0.extend_from_slice(MAGIC);
        e.bytes(&fp.bytes);
        encode(&mut e, &forged);
        std::fs::write(&cf, &e.0).unwrap();
        std::fs::set_permissions(&cf, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(load_now(&p, &c).unwrap()[0].name, "real");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
