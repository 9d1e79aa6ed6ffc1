//! Could a maintained zero-copy format replace the policy cache's own
//! binary format at the same cost to the hook?
//!
//! Both paths do what a hook run does with a warm page cache, in one
//! process, interleaved round by round:
//! - cglimit's format: `policy::open` through the cache (stat the directory
//!   and every policy file, map the cache, check it) and `choose`;
//! - rkyv (0.8, with `bytecheck` validation, since a damaged cache must be
//!   detected, never trusted): the same stats, the file mapped, validated
//!   with `rkyv::access`, ranked in place by the same selection code, only
//!   the winner (and its baseline) turned into a `Policy`;
//! - rkyv without validation (`access_unchecked`), as a lower bound that a
//!   cache of limits cannot use.
//!
//! Run: `cargo bench --bench cache_format` (`ROUNDS=` changes the count).
//! Prints a Markdown table (the source of BENCHMARKS.md).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cglimit::facts::Facts;
use cglimit::policy::select::{self, Candidate};
use cglimit::policy::{self, Action, Bounds, High, Origin, Policy, Selector};
use cglimit::size::Limit;
use rkyv::rancor;

#[path = "support/mod.rs"]
mod support;
use support::{interval, median, pct};

/// One policy as rkyv archives it: the selector first, the limits after.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Entry {
    name: String,
    priority: i64,
    names: Vec<String>,
    images: Vec<String>,
    ids: Vec<String>,
    cgroups: Vec<String>,
    namespaces: Vec<String>,
    pods: Vec<String>,
    container_types: Vec<String>,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    trusted: Vec<String>,
    /// default (-2: none), min, max in OCI terms (-1: unlimited).
    memory: (i64, u64, i64),
    swap: (i64, u64, i64),
    /// 0: none, 1: percent, 2: size.
    high: (u8, f64, u64),
    action: u8,
    message: Option<String>,
    file: String,
    line: u64,
}

fn entry(p: &Policy) -> Entry {
    let b = |b: &Bounds| (b.default.map_or(-2, Limit::to_oci), b.min, b.max.to_oci());
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    Entry {
        name: p.name.clone(),
        priority: p.priority,
        names: p.selector.names.clone(),
        images: p.selector.images.clone(),
        ids: p.selector.ids.clone(),
        cgroups: p.selector.cgroups.clone(),
        namespaces: p.selector.namespaces.clone(),
        pods: p.selector.pods.clone(),
        container_types: p.selector.container_types.clone(),
        labels: pairs(&p.selector.labels),
        annotations: pairs(&p.selector.annotations),
        trusted: p.trust.clone(),
        memory: b(&p.memory),
        swap: b(&p.swap),
        high: match p.high {
            None => (0, 0.0, 0),
            Some(High::Percent(x)) => (1, x, 0),
            Some(High::Size(s)) => (2, 0.0, s),
        },
        action: p.on_violation as u8,
        message: p.message.clone(),
        file: p.origin.file.display().to_string(),
        line: p.origin.line,
    }
}

/// An archived entry, matched in place.
#[derive(Clone, Copy)]
struct Arch<'a>(&'a ArchivedEntry);

fn strs(v: &rkyv::vec::ArchivedVec<rkyv::string::ArchivedString>) -> impl Iterator<Item = &str> {
    v.iter().map(|s| s.as_str())
}

impl Candidate for Arch<'_> {
    fn name(&self) -> &str {
        self.0.name.as_str()
    }
    fn priority(&self) -> i64 {
        self.0.priority.to_native()
    }
    fn names(&self) -> impl Iterator<Item = &str> {
        strs(&self.0.names)
    }
    fn images(&self) -> impl Iterator<Item = &str> {
        strs(&self.0.images)
    }
    fn ids(&self) -> impl Iterator<Item = &str> {
        strs(&self.0.ids)
    }
    fn cgroups(&self) -> impl Iterator<Item = &str> {
        strs(&self.0.cgroups)
    }
    fn namespaces(&self) -> impl Iterator<Item = &str> {
        strs(&self.0.namespaces)
    }
    fn pods(&self) -> impl Iterator<Item = &str> {
        strs(&self.0.pods)
    }
    fn container_types(&self) -> impl Iterator<Item = &str> {
        strs(&self.0.container_types)
    }
    fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.labels.iter().map(|t| (t.0.as_str(), t.1.as_str()))
    }
    fn annotations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .annotations
            .iter()
            .map(|t| (t.0.as_str(), t.1.as_str()))
    }
    fn trusted(&self) -> impl Iterator<Item = &str> {
        strs(&self.0.trusted)
    }
}

fn decode(a: &Arch<'_>) -> Result<Policy, std::convert::Infallible> {
    let e = a.0;
    let owned = |v: &rkyv::vec::ArchivedVec<rkyv::string::ArchivedString>| {
        v.iter().map(|s| s.as_str().to_string()).collect::<Vec<_>>()
    };
    let map = |v: &rkyv::vec::ArchivedVec<rkyv::tuple::ArchivedTuple2<_, _>>| {
        v.iter()
            .map(
                |t: &rkyv::tuple::ArchivedTuple2<
                    rkyv::string::ArchivedString,
                    rkyv::string::ArchivedString,
                >| { (t.0.as_str().to_string(), t.1.as_str().to_string()) },
            )
            .collect()
    };
    let bounds = |b: &rkyv::tuple::ArchivedTuple3<
        rkyv::rend::i64_le,
        rkyv::rend::u64_le,
        rkyv::rend::i64_le,
    >| {
        let d = b.0.to_native();
        Bounds {
            default: (d != -2).then(|| Limit::from_oci(d)),
            min: b.1.to_native(),
            max: Limit::from_oci(b.2.to_native()),
        }
    };
    Ok(Policy {
        name: e.name.as_str().to_string(),
        priority: e.priority.to_native(),
        selector: Selector {
            names: owned(&e.names),
            images: owned(&e.images),
            ids: owned(&e.ids),
            cgroups: owned(&e.cgroups),
            namespaces: owned(&e.namespaces),
            pods: owned(&e.pods),
            container_types: owned(&e.container_types),
            labels: map(&e.labels),
            annotations: map(&e.annotations),
        },
        memory: bounds(&e.memory),
        swap: bounds(&e.swap),
        high: match e.high.0 {
            1 => Some(High::Percent(e.high.1.to_native())),
            2 => Some(High::Size(e.high.2.to_native())),
            _ => None,
        },
        on_violation: match e.action {
            1 => Action::Deny,
            2 => Action::Audit,
            _ => Action::Clamp,
        },
        message: e.message.as_ref().map(|m| m.as_str().to_string()),
        trust: owned(&e.trusted),
        origin: Origin {
            file: Arc::from(Path::new(e.file.as_str())),
            line: e.line.to_native(),
        },
    })
}

/// The file mapped read-only, as the cache is.
struct Mapped {
    at: std::ptr::NonNull<std::ffi::c_void>,
    len: usize,
}

impl Mapped {
    fn of(path: &Path) -> Mapped {
        use nix::sys::mman::{MapFlags, ProtFlags, mmap};
        let f = std::fs::File::open(path).unwrap();
        let len = f.metadata().unwrap().len() as usize;
        // SAFETY: a private read-only mapping of a file nobody changes
        // while the benchmark runs.
        let at = unsafe {
            mmap(
                None,
                std::num::NonZeroUsize::new(len).unwrap(),
                ProtFlags::PROT_READ,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_POPULATE,
                f.as_fd(),
                0,
            )
        }
        .unwrap();
        Mapped { at, len }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `at` maps `len` readable bytes until drop.
        unsafe { std::slice::from_raw_parts(self.at.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: mapped by `of` with this length.
        let _ = unsafe { nix::sys::mman::munmap(self.at, self.len) };
    }
}

/// What the hook opens before it trusts any cache: the directory and
/// every policy file.
fn stat_all(dir: &Path) {
    std::hint::black_box(policy::files::open(dir, true).ok().unwrap());
}

fn rkyv_choose(dir: &Path, file: &Path, facts: &Facts, validate: bool) -> String {
    stat_all(dir);
    let m = Mapped::of(file);
    let archived: &rkyv::vec::ArchivedVec<ArchivedEntry> = if validate {
        rkyv::access::<_, rancor::Error>(m.bytes()).expect("valid")
    } else {
        // SAFETY: written by this benchmark just before.
        unsafe { rkyv::access_unchecked(m.bytes()) }
    };
    let ranking = select::rank(archived.iter().map(Arch), facts);
    let chosen = ranking.chosen(decode).unwrap().expect("a policy matches");
    chosen.policy.name
}

fn ours(dir: &Path, cache: &Path, facts: &Facts) -> String {
    let set = policy::open(dir, Some(cache), false).unwrap();
    set.choose(facts)
        .unwrap()
        .expect("a policy matches")
        .policy
        .name
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 3 } else { 2000 });
    let work = std::env::temp_dir().join(format!("cglimit-bench-format-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let sets: [(&str, usize); 2] = [("1 policy", 0), ("1,000 policies", 999)];
    println!(
        "| policies | facts | cglimit's format µs (median) | rkyv, validated µs | rkyv − cglimit [95%] | rkyv, unvalidated µs | cache bytes: cglimit / rkyv |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, teams) in sets {
        let dir: PathBuf = work.join(format!("p{teams}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = String::new();
        for i in 0..teams {
            text.push_str(&format!(
                "name: team-{i}\npriority: {}\nmatch:\n  labels: {{team: t{i}}}\n  names: [svc-{i}-*]\nmemory: {{default: 512M, min: 16M, max: 8G}}\nswap: {{default: 0, max: 1G}}\nhigh: 90%\nonViolation: clamp\n---\n",
                i % 7
            ));
        }
        text.push_str(include_str!("../policies/00-default.yaml"));
        std::fs::write(dir.join("teams.yaml"), text).unwrap();
        // Files younger than the racy window are never cached.
        std::thread::sleep(policy::RACY + std::time::Duration::from_millis(100));
        let cache = work.join(format!("cache{teams}"));
        let parsed = policy::load_path(&dir).unwrap();
        let entries: Vec<Entry> = parsed.iter().map(entry).collect();
        let bytes = rkyv::to_bytes::<rancor::Error>(&entries).unwrap();
        let rfile = work.join(format!("rkyv{teams}.bin"));
        std::fs::write(&rfile, &bytes).unwrap();
        ours(&dir, &cache, &Facts::default()); // writes the cache
        let ours_len: u64 = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        let cases = [
            ("only the catch-all matches", Facts::default()),
            (
                "a team policy matches",
                Facts {
                    name: Some(format!("svc-{}-1", teams / 2)),
                    labels: [("team".to_string(), format!("t{}", teams / 2))].into(),
                    ..Default::default()
                },
            ),
        ];
        for (what, facts) in &cases {
            if teams == 0 && what.starts_with("a team") {
                continue;
            }
            let want = ours(&dir, &cache, facts);
            assert_eq!(rkyv_choose(&dir, &rfile, facts, true), want);
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            let us = |t: Instant| t.elapsed().as_secs_f64() * 1e6;
            for r in 0..rounds {
                let mut one = |k: usize| {
                    let t = Instant::now();
                    match k {
                        0 => {
                            std::hint::black_box(ours(&dir, &cache, facts));
                            a.push(us(t));
                        }
                        1 => {
                            std::hint::black_box(rkyv_choose(&dir, &rfile, facts, true));
                            b.push(us(t));
                        }
                        _ => {
                            std::hint::black_box(rkyv_choose(&dir, &rfile, facts, false));
                            c.push(us(t));
                        }
                    }
                };
                for k in 0..3 {
                    one((k + r) % 3);
                }
            }
            let (lo, hi) = interval(&b, &a);
            let (ma, mb, mc) = (median(&mut a), median(&mut b), median(&mut c));
            let _ = pct(&mut a, 0.9);
            println!(
                "| {label} | {what} | {ma:.1} | {mb:.1} ({:.2}×) | {:+.1} [{lo:+.1} .. {hi:+.1}] | {mc:.1} ({:.2}×) | {ours_len} / {} |",
                mb / ma,
                mb - ma,
                mc / ma,
                bytes.len()
            );
        }
    }
    std::fs::remove_dir_all(&work).unwrap();
}
