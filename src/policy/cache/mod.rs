//! A compiled cache of a policy directory, so the hook does not parse YAML
//! on every container start.
//!
//! Parsing 1,000 policies takes milliseconds; the hook's budget is a
//! fraction of one. The cache holds the policies in a compact binary form
//! ([`codec`]), keyed by a [`fingerprint`] of every policy file and of the
//! directory itself. A hook run opens the files, compares the fingerprint,
//! and maps the file ([`mapping`]); any mismatch or damage falls back to
//! parsing the YAML, which also rewrites the cache. `validate` never uses
//! it, so diagnostics always come from the YAML.
//!
//! Two rules keep the cache from ever being trusted wrongly:
//! - a file changed within the last [`RACY`] is not cached (timestamps have
//!   a coarse granularity, so a second edit in the same tick could keep the
//!   same fingerprint: git's "racy clean" problem);
//! - the cache file must belong to this user and not be writable by group or
//!   others (it decides container limits, like the policies themselves).

mod codec;
mod fingerprint;
mod mapping;

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::files::Opened;
use super::{Policy, PolicyErrors, yaml};
use crate::facts::Facts;
use crate::policy::select::{self, Chosen};
#[cfg(test)]
use codec::Records;
use codec::{Candidates, Dec, Enc, Table, decode_record, encode};
use mapping::Mapping;

/// Names the format; a new layout gets a new number, so an old cache is
/// simply not recognised (and rewritten).
const MAGIC: &[u8; 8] = b"CGLPOL\x00\x07";
/// Files changed more recently than this are not cached.
pub const RACY: Duration = Duration::from_secs(2);

/// Policies as loaded: parsed from YAML, or the compiled cache's bytes,
/// matched without decoding.
pub(super) enum Loaded {
    Parsed(Vec<Policy>),
    Compiled(Compiled),
}

/// A verified cache file: fingerprint matched, owner and mode checked,
/// index and records in bounds.
pub struct Compiled {
    data: Mapping,
    files: Vec<Arc<Path>>,
    /// Where the string table lies in `data`.
    table: std::ops::Range<usize>,
    /// Where the index ([`codec::needs`], then where each record starts)
    /// and the policy records start, and how many there are.
    index: usize,
    records: usize,
    count: usize,
}

/// The cache's bytes are damaged (they passed the fingerprint check but do
/// not decode): the caller reparses the YAML.
#[derive(Debug)]
pub struct Damaged;

impl Loaded {
    pub(super) fn len(&self) -> usize {
        match self {
            Loaded::Parsed(p) => p.len(),
            Loaded::Compiled(c) => c.count,
        }
    }

    /// The policy for a container, by the rules of [`select`].
    pub(super) fn choose(&self, facts: &Facts) -> Result<Option<Chosen>, Damaged> {
        match self {
            Loaded::Parsed(p) => Ok(select::choose(p, facts)),
            Loaded::Compiled(c) => c.choose(facts),
        }
    }
}

impl Compiled {
    fn table(&self) -> Table<'_> {
        Table(&self.data[self.table.clone()])
    }

    #[cfg(test)]
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

    /// Ranks the records that could match as they are scanned: nothing is
    /// collected, and only the winner (and its baseline) is decoded.
    fn choose(&self, facts: &Facts) -> Result<Option<Chosen>, Damaged> {
        let damaged = std::cell::Cell::new(false);
        let t = self.table();
        let n = self.count;
        let candidates = Candidates {
            needs: &self.data[self.index..self.index + n * 8],
            starts: &self.data[self.index + n * 8..self.records],
            records: &self.data[self.records..],
            have: codec::have(facts),
            table: t,
            next: 0,
            damaged: &damaged,
        };
        let ranking = select::rank(candidates, facts);
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

/// Loads the opened policies through the cache in `cache_dir` when one is
/// given. The fingerprint and the parser see the same descriptors.
pub(super) fn load(
    opened: &Opened,
    cache_dir: Option<&Path>,
    racy_window: Duration,
) -> Result<Loaded, PolicyErrors> {
    let Some(cache_dir) = cache_dir else {
        return yaml::load_files(opened).map(Loaded::Parsed);
    };
    let fp = fingerprint::of(opened, racy_window);
    let cache_file = cache_dir.join(cache_name(&opened.path));
    if let Some(c) = read_cache(&cache_file, &fp.bytes) {
        return Ok(Loaded::Compiled(c));
    }
    let policies = yaml::load_files(opened)?;
    if !fp.racy
        && let Err(e) = write_cache(cache_dir, &cache_file, &fp.bytes, &policies)
    {
        log::debug!("cannot write policy cache {}: {e}", cache_file.display());
    }
    Ok(Loaded::Parsed(policies))
}

/// Removes the cache of `path` (found damaged); the next load writes it anew.
pub(super) fn remove(cache_dir: &Path, path: &Path) {
    let _ = std::fs::remove_file(cache_dir.join(cache_name(path)));
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

fn read_cache(file: &Path, fp: &[u8]) -> Option<Compiled> {
    let f = crate::sys::open_read(file).ok()?;
    let m = f.metadata().ok()?;
    if m.uid() != nix::unistd::geteuid().as_raw() || m.permissions().mode() & 0o022 != 0 {
        log::warn!(
            "ignoring policy cache {}: not owned by this user or writable by others",
            file.display()
        );
        return None;
    }
    Compiled::parse(Mapping::of(&f, m.len())?, fp)
}

impl Compiled {
    /// The header and index of a cache file's bytes, checked to lie within
    /// them and its last record to end where they end (a truncated file is
    /// not read); `None` for another format or fingerprint.
    fn parse(data: Mapping, fp: &[u8]) -> Option<Compiled> {
        let mut d = Dec { b: &data, i: 0 };
        if d.take(8)? != MAGIC || d.bytes()? != fp {
            return None;
        }
        let nfiles = d.u32()? as usize;
        let files: Vec<Arc<Path>> = (0..nfiles)
            .map(|_| d.str().map(|s| Path::new(&s).into()))
            .collect::<Option<_>>()?;
        let text = d.bytes()?;
        let table = d.i - text.len()..d.i;
        let count = d.u32()? as usize;
        let index = d.i;
        let starts = d.i + count.checked_mul(8)?;
        d.take(count.checked_mul(12)?)?;
        let records = d.i;
        let end = match count.checked_sub(1) {
            None => records,
            Some(last) => {
                let b = data.get(starts + last * 4..starts + last * 4 + 4)?;
                let mut r = Dec {
                    b: &data,
                    i: records + u32::from_le_bytes(b.try_into().ok()?) as usize,
                };
                r.bytes()?;
                r.i
            }
        };
        if end != data.len() {
            return None;
        }
        Some(Compiled {
            data,
            files,
            table,
            index,
            records,
            count,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::pod::ContainerType;
    use std::collections::BTreeMap;

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

    const TEXT: &str = "name: a\npriority: 3\nmatch: {names: [web-*], labels: {t: x}, annotations: {k: v}, images: [i], ids: [d], cgroups: [c], namespaces: [batch], pods: [job-*], containerTypes: [container]}\nmemory: {default: 1g, min: 16m, max: max}\nswap: {max: 1g}\nhigh: 90%\nonViolation: deny\nmessage: m\n---\nname: b\nhigh: 256m\nonViolation: audit\n";

    /// Loads with no racy window, as if every file were old enough.
    fn load_now(p: &Path, c: &Path) -> Result<Loaded, PolicyErrors> {
        load(&opened(p), Some(c), Duration::ZERO)
    }

    fn opened(p: &Path) -> Opened {
        crate::policy::files::open(p, false).ok().unwrap()
    }

    fn fp_now(p: &Path) -> fingerprint::Fingerprint {
        fingerprint::of(&opened(p), Duration::ZERO)
    }

    fn all(set: Loaded) -> Vec<Policy> {
        match set {
            Loaded::Parsed(p) => p,
            Loaded::Compiled(c) => c.decode_all().unwrap(),
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
        let everything = Facts {
            id: "d".into(),
            name: Some("web-1".into()),
            image: Some("i".into()),
            cgroup: Some("c".into()),
            namespace: Some("batch".into()),
            pod: Some("job-1".into()),
            container_type: Some(crate::facts::pod::ContainerType::Container),
            labels: [("t".to_string(), "x".to_string())].into(),
            annotations: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        };
        for cut in 1..bytes.len() {
            // A truncated file is not read, or its damage is seen.
            if let Some(c) = Compiled::parse(Mapping::copy_of(&bytes[..cut]), b"fp") {
                assert!(c.choose(&everything).is_err(), "truncated at {cut}");
            }
        }
        let c = Compiled::parse(Mapping::copy_of(&bytes), b"fp").unwrap();
        assert_eq!(c.choose(&everything).unwrap().unwrap().policy.name, "a");
    }

    #[test]
    fn a_string_reference_outside_the_table_or_inside_a_character_is_damage() {
        let parsed = super::super::parse_file(Path::new("x.yaml"), "name: é\n").unwrap();
        let (bytes, c) = compiled(&parsed);
        let c = c.unwrap();
        assert_eq!(c.table().0, "é".as_bytes(), "each string once");
        let facts = Facts::default();
        assert_eq!(c.choose(&facts).unwrap().unwrap().policy.name, "é");
        // The name's reference is the record's first after its priority.
        let name_ref = c.records + 4 + 8;
        for (at, len) in [(0u32, 1u32), (0, 3), (9, 1)] {
            let mut data = bytes.clone();
            data[name_ref..name_ref + 4].copy_from_slice(&at.to_le_bytes());
            data[name_ref + 4..name_ref + 8].copy_from_slice(&len.to_le_bytes());
            let damaged = Compiled::parse(Mapping::copy_of(&data), b"fp").unwrap();
            assert!(damaged.choose(&facts).is_err(), "{at}+{len}");
        }
    }

    #[test]
    fn a_damaged_cache_is_removed_and_the_yaml_decides() {
        let (d, p, c, cf) = cached_real("damaged");
        let Some(good) = read_cache(&cf, &fp_now(&p).bytes) else {
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
        assert!(matches!(set, Loaded::Compiled(_)), "served from the cache");
        assert!(set.choose(facts).is_err(), "the damage went unnoticed");
        super::super::open(p, Some(c), false)
            .unwrap()
            .choose(facts)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_string_that_is_not_utf8_is_damage() {
        let parsed = super::super::parse_file(Path::new("x.yaml"), "name: é\n").unwrap();
        let (mut bytes, c) = compiled(&parsed);
        let c = c.unwrap();
        bytes[c.table.start] = 0xff;
        let c = Compiled::parse(Mapping::copy_of(&bytes), b"fp").unwrap();
        assert!(c.choose(&Facts::default()).is_err());
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
                "bounded by \"all\"",
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

    /// The index leaves out only policies that cannot match: over random
    /// policy sets and containers, the cache chooses what the parsed
    /// policies choose, for the same reason.
    #[test]
    fn the_index_never_hides_a_match() {
        let mut next = crate::draws();
        let mut pick = |options: &[&'static str]| options[next(options.len())];
        for round in 0..300 {
            let mut text = String::new();
            for i in 0..8 {
                let mut keys = Vec::new();
                let choices: [(&str, &[&str]); 9] = [
                    ("names", &["[web-*]", "[db-?, api]", "['*']"]),
                    ("images", &["[nginx*]", "[redis]"]),
                    ("cgroups", &["['/docker/*']"]),
                    ("namespaces", &["[batch]", "[web]"]),
                    ("pods", &["[job-*]"]),
                    ("containerTypes", &["[container]", "[sandbox]"]),
                    (
                        "labels",
                        &[
                            "{team: x}",
                            "{team: 'f*'}",
                            "{team: y, tier: a}",
                            "{tier: '*'}",
                        ],
                    ),
                    ("annotations", &["{k: v}", "{k: '*'}"]),
                    ("ids", &["[abc]", "[zzz]"]),
                ];
                for (key, values) in choices {
                    if pick(&["", "", "x"]) == "x" {
                        keys.push(format!("{key}: {}", pick(values)));
                    }
                }
                text.push_str(&format!(
                    "name: p{i}\npriority: {}\nmatch: {{{}}}\n---\n",
                    pick(&["0", "1", "2"]),
                    keys.join(", ")
                ));
            }
            text.push_str("name: fallback\n");
            let parsed = super::super::parse_file(Path::new("x.yaml"), &text).unwrap();
            let (_, c) = compiled(&parsed);
            let c = c.unwrap();
            for _ in 0..20 {
                let some = |v: &'static str| (!v.is_empty()).then(|| v.to_string());
                let pairs = |v: &'static str| -> BTreeMap<String, String> {
                    v.split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                };
                let f = Facts {
                    id: pick(&["abc", "def"]).into(),
                    name: some(pick(&["web-1", "db-2", "api", ""])),
                    image: some(pick(&["nginx:1", "redis", ""])),
                    cgroup: some(pick(&["/docker/abc", ""])),
                    namespace: some(pick(&["batch", "web", ""])),
                    pod: some(pick(&["job-1", "web-0", ""])),
                    container_type: match pick(&["", "c", "s"]) {
                        "c" => Some(ContainerType::Container),
                        "s" => Some(ContainerType::Sandbox),
                        _ => None,
                    },
                    labels: pairs(pick(&[
                        "",
                        "team=x",
                        "team=fz,tier=a",
                        "team=y,tier=a",
                        "tier=b",
                    ])),
                    annotations: pairs(pick(&["", "k=v", "k=w"])),
                    ..Default::default()
                };
                let a = c.choose(&f).unwrap().unwrap();
                let b = select::choose(&parsed, &f).unwrap();
                assert_eq!(
                    (&a.policy.name, &a.why, &a.baseline),
                    (&b.policy.name, &b.why, &b.baseline),
                    "round {round}: {f:?}\n{text}"
                );
            }
        }
    }

    #[test]
    fn cache_is_used_and_invalidated_by_edits() {
        let d = tmp("inval");
        let (p, c) = (d.join("p"), d.join("cache"));
        std::fs::write(p.join("a.yaml"), TEXT).unwrap();
        // Fresh files are racy: nothing is cached yet.
        assert!(matches!(
            load(&opened(&p), Some(&c), RACY).unwrap(),
            Loaded::Parsed(_)
        ));
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
            matches!(again, Loaded::Compiled(_)),
            "served from the cache"
        );
        assert_eq!(all(again), first);
        // An edit changes the fingerprint: the YAML is read again.
        std::fs::write(p.join("a.yaml"), "name: only\n").unwrap();
        let after = load_now(&p, &c).unwrap();
        assert!(matches!(after, Loaded::Parsed(_)));
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
        let fp = fp_now(&p);
        let mut forged = super::super::parse_file(Path::new("x"), "name: forged\n").unwrap();
        forged[0].memory.max = crate::size::Limit::Unlimited;
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
