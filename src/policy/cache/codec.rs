//! The cache's binary format: a header, one string table, and one record
//! per policy whose strings are references into the table. Records are
//! matched as they are scanned ([`Entry`] is a selection [`Candidate`]), and
//! only the chosen policy is decoded.

use std::path::Path;
use std::sync::Arc;

use crate::policy::select::Candidate;
use crate::policy::{Action, Bounds, High, Origin, Policy, Selector};
use crate::size::Limit;

#[derive(Default)]
pub(super) struct Enc(pub(super) Vec<u8>);

impl Enc {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    pub(super) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    pub(super) fn limit(&mut self, l: Limit) {
        match l {
            Limit::Bytes(b) => {
                self.u8(0);
                self.u64(b);
            }
            Limit::Unlimited => self.u8(1),
        }
    }
    pub(super) fn bounds(&mut self, b: &Bounds) {
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
pub(super) struct Strings<'p> {
    text: String,
    seen: std::collections::HashMap<&'p str, (u32, u32)>,
}

impl<'p> Strings<'p> {
    pub(super) fn add(&mut self, e: &mut Enc, s: &'p str) {
        let (at, len) = *self.seen.entry(s).or_insert_with(|| {
            let at = self.text.len() as u32;
            self.text.push_str(s);
            (at, s.len() as u32)
        });
        e.u32(at);
        e.u32(len);
    }
    pub(super) fn list(&mut self, e: &mut Enc, v: &'p [String]) {
        e.u32(v.len() as u32);
        v.iter().for_each(|s| self.add(e, s));
    }
    pub(super) fn pairs(&mut self, e: &mut Enc, m: &'p std::collections::BTreeMap<String, String>) {
        e.u32(m.len() as u32);
        for (k, v) in m {
            self.add(e, k);
            self.add(e, v);
        }
    }
}

pub(super) struct Dec<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

impl<'a> Dec<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(super) fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(super) fn str(&mut self) -> Option<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_owned)
    }
    /// A string of the table, by reference.
    pub(super) fn text(&mut self, t: Table<'a>) -> Option<&'a str> {
        let at = self.u32()? as usize;
        let len = self.u32()? as usize;
        std::str::from_utf8(t.0.get(at..at.checked_add(len)?)?).ok()
    }
    /// Skips over a list of `arity`-tuples of string references, checking
    /// each lands inside the table on character boundaries, and returns it.
    // Inlined into `Entry::scan`, where it runs eight to eleven times per
    // record of every scan: a call each cost a hook with 1,000 policies
    // a quarter more instructions.
    #[inline(always)]
    pub(super) fn list(&mut self, t: Table<'a>, arity: u32) -> Option<List<'a>> {
        let start = self.i;
        let n = self.u32()?;
        for _ in 0..n.checked_mul(arity)? {
            self.text(t)?;
        }
        Some(List {
            refs: &self.b[start..self.i],
        })
    }
    pub(super) fn strs(&mut self, t: Table<'a>) -> Option<Vec<String>> {
        let n = self.u32()? as usize;
        (0..n).map(|_| self.text(t).map(str::to_owned)).collect()
    }
    pub(super) fn map(
        &mut self,
        t: Table<'a>,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let n = self.u32()? as usize;
        (0..n)
            .map(|_| Some((self.text(t)?.to_owned(), self.text(t)?.to_owned())))
            .collect()
    }
    pub(super) fn limit(&mut self) -> Option<Limit> {
        match self.u8()? {
            0 => Some(Limit::Bytes(self.u64()?)),
            1 => Some(Limit::Unlimited),
            _ => None,
        }
    }
    pub(super) fn bounds(&mut self) -> Option<Bounds> {
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

/// The cache's string table. Each string is checked to be UTF-8 when it
/// is read: a hook touches the few strings of the policies it considers,
/// not the whole table.
#[derive(Clone, Copy)]
pub(super) struct Table<'a>(pub(super) &'a [u8]);

/// Layout: file table, string table, count, the [`needs`] of each policy
/// (`u64`), where each record starts (`u32`, from the first), then one
/// length-prefixed record per policy: priority, name and selector first
/// (what selection reads in place), then the limits (decoded only for the
/// chosen policy). Strings are (offset, length) into the string table, so
/// skipping over a record costs nothing per byte.
pub(super) fn encode(e: &mut Enc, policies: &[Policy]) {
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
    let mut starts = Vec::with_capacity(policies.len());
    for p in policies {
        let at = r.0.len();
        starts.push(at as u32);
        r.u32(0);
        r.i64(p.priority);
        strings.add(&mut r, &p.name);
        let s = &p.selector;
        strings.list(&mut r, &s.names);
        strings.list(&mut r, &s.images);
        strings.list(&mut r, &s.ids);
        strings.list(&mut r, &s.cgroups);
        // Kubernetes keys behind one byte: most policies have none, and a
        // hook scanning a thousand records reads one byte for them.
        if s.namespaces.is_empty() && s.pods.is_empty() && s.container_types.is_empty() {
            r.u8(0);
        } else {
            r.u8(1);
            strings.list(&mut r, &s.namespaces);
            strings.list(&mut r, &s.pods);
            strings.list(&mut r, &s.container_types);
        }
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
    policies.iter().for_each(|p| e.u64(needs(p)));
    starts.iter().for_each(|at| e.u32(*at));
    e.0.extend_from_slice(&r.0);
}

/// What a container must have for a policy to have a chance of matching
/// it, as bits: a selector key it names (a name, an image...), and for
/// each label and annotation the policy asks for, a bit of its key (of key
/// and value, where the value is no pattern). A container that lacks one
/// of a policy's bits ([`have`]) cannot match it, so the hook does not
/// read the policy's record: with a thousand team policies selected by
/// labels, a container is checked against the few that could be its.
pub(super) fn needs(p: &Policy) -> u64 {
    let s = &p.selector;
    let mut bits = 0;
    for (i, list) in [&s.names, &s.images, &s.cgroups, &s.namespaces, &s.pods]
        .iter()
        .enumerate()
    {
        if !list.is_empty() {
            bits |= 1 << i;
        }
    }
    if !s.container_types.is_empty() {
        bits |= 1 << 5;
    }
    for (salt, map) in [(b'l', &s.labels), (b'a', &s.annotations)] {
        for (k, v) in map {
            bits |= if v.contains(['*', '?', '[', '\\']) {
                key_bit(salt, k, None)
            } else {
                key_bit(salt, k, Some(v))
            };
        }
    }
    bits
}

/// The bits of [`needs`] a container has: every policy it matches needs
/// only bits among these.
pub(super) fn have(f: &crate::facts::Facts) -> u64 {
    let mut bits = 0;
    let fields = [
        f.name.is_some(),
        f.image.is_some(),
        f.cgroup.is_some(),
        f.namespace.is_some(),
        f.pod.is_some(),
        f.container_type.is_some(),
    ];
    for (i, present) in fields.into_iter().enumerate() {
        if present {
            bits |= 1 << i;
        }
    }
    for (salt, map) in [(b'l', &f.labels), (b'a', &f.annotations)] {
        for (k, v) in map {
            bits |= key_bit(salt, k, None) | key_bit(salt, k, Some(v));
        }
    }
    bits
}

/// One of bits 8 to 63, from an FNV-1a hash of a label's (or an
/// annotation's) key, and value where given.
fn key_bit(salt: u8, key: &str, value: Option<&str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut add = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    add(salt);
    key.bytes().for_each(&mut add);
    if let Some(v) = value {
        add(0);
        v.bytes().for_each(&mut add);
    }
    1 << (8 + (h >> 32) % 56)
}

/// A policy record read in place: selection needs no allocation.
#[derive(Clone, Copy)]
pub(super) struct Entry<'a> {
    priority: i64,
    name: &'a str,
    names: List<'a>,
    images: List<'a>,
    ids: List<'a>,
    cgroups: List<'a>,
    namespaces: List<'a>,
    pods: List<'a>,
    container_types: List<'a>,
    labels: List<'a>,
    annotations: List<'a>,
    trusted: List<'a>,
    table: Table<'a>,
    pub(super) record: &'a [u8],
}

/// An encoded list of string references (or of key/value pairs), already
/// checked by [`Entry::scan`].
#[derive(Clone, Copy)]
pub(super) struct List<'a> {
    refs: &'a [u8],
}

/// A list with nothing in it (its count, 0).
const EMPTY: List<'static> = List { refs: &[0; 4] };

impl<'a> List<'a> {
    pub(super) fn strs(self, t: Table<'a>) -> impl Iterator<Item = &'a str> {
        let mut d = Dec { b: self.refs, i: 0 };
        let n = d.u32().unwrap_or(0);
        (0..n).map_while(move |_| d.text(t))
    }

    pub(super) fn pairs(self, t: Table<'a>) -> impl Iterator<Item = (&'a str, &'a str)> {
        let mut d = Dec { b: self.refs, i: 0 };
        let n = d.u32().unwrap_or(0);
        (0..n).map_while(move |_| Some((d.text(t)?, d.text(t)?)))
    }
}

impl<'a> Entry<'a> {
    pub(super) fn scan(record: &'a [u8], t: Table<'a>) -> Option<Entry<'a>> {
        let mut d = Dec { b: record, i: 0 };
        let priority = d.i64()?;
        let name = d.text(t)?;
        let names = d.list(t, 1)?;
        let images = d.list(t, 1)?;
        let ids = d.list(t, 1)?;
        let cgroups = d.list(t, 1)?;
        let (namespaces, pods, container_types) = match d.u8()? {
            0 => (EMPTY, EMPTY, EMPTY),
            1 => (d.list(t, 1)?, d.list(t, 1)?, d.list(t, 1)?),
            _ => return None,
        };
        Some(Entry {
            priority,
            name,
            names,
            images,
            ids,
            cgroups,
            namespaces,
            pods,
            container_types,
            labels: d.list(t, 2)?,
            annotations: d.list(t, 2)?,
            trusted: d.list(t, 1)?,
            table: t,
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
        self.names.strs(self.table)
    }
    fn images(&self) -> impl Iterator<Item = &str> {
        self.images.strs(self.table)
    }
    fn ids(&self) -> impl Iterator<Item = &str> {
        self.ids.strs(self.table)
    }
    fn cgroups(&self) -> impl Iterator<Item = &str> {
        self.cgroups.strs(self.table)
    }
    fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.strs(self.table)
    }
    fn pods(&self) -> impl Iterator<Item = &str> {
        self.pods.strs(self.table)
    }
    fn container_types(&self) -> impl Iterator<Item = &str> {
        self.container_types.strs(self.table)
    }
    fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.pairs(self.table)
    }
    fn annotations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.annotations.pairs(self.table)
    }
    fn trusted(&self) -> impl Iterator<Item = &str> {
        self.trusted.strs(self.table)
    }
}

#[cfg(test)]
/// The records one after another, scanned in place; damage ends the walk
/// and is remembered, so a ranking over a damaged cache is never used.
pub(super) struct Records<'a, 'f> {
    pub(super) d: Dec<'a>,
    pub(super) table: Table<'a>,
    pub(super) left: usize,
    pub(super) damaged: &'f std::cell::Cell<bool>,
}

#[cfg(test)]
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

/// The records a container could match, by the index: `needs` (a `u64`
/// per record) and `starts` (a `u32` per record) as written by [`encode`];
/// a record whose needs the container does not [`have`] is not read.
/// Damage ends the walk and is remembered, as in [`Records`].
pub(super) struct Candidates<'a, 'f> {
    pub(super) needs: &'a [u8],
    pub(super) starts: &'a [u8],
    pub(super) records: &'a [u8],
    pub(super) have: u64,
    pub(super) table: Table<'a>,
    pub(super) next: usize,
    pub(super) damaged: &'f std::cell::Cell<bool>,
}

impl<'a> Iterator for Candidates<'a, '_> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        loop {
            let i = self.next;
            let needs = self.needs.get(i * 8..i * 8 + 8)?;
            self.next += 1;
            let needs = u64::from_le_bytes(needs.try_into().ok()?);
            if needs & !self.have != 0 {
                continue;
            }
            let e = self
                .starts
                .get(i * 4..i * 4 + 4)
                .and_then(|b| Some(u32::from_le_bytes(b.try_into().ok()?) as usize))
                .and_then(|at| {
                    Dec {
                        b: self.records,
                        i: at,
                    }
                    .bytes()
                })
                .and_then(|r| Entry::scan(r, self.table));
            if e.is_none() {
                self.damaged.set(true);
                self.needs = &[];
            }
            return e;
        }
    }
}

pub(super) fn decode_record(record: &[u8], t: Table<'_>, files: &[Arc<Path>]) -> Option<Policy> {
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
    match d.u8()? {
        0 => {}
        1 => {
            selector.namespaces = d.strs(t)?;
            selector.pods = d.strs(t)?;
            selector.container_types = d.strs(t)?;
        }
        _ => return None,
    }
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
