//! Policy files: the YAML shape, and how it becomes [`Policy`] values with a
//! file, line and field for every mistake.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::files::{self, Opened};
use super::{Action, Bounds, High, Origin, Policy, PolicyError, PolicyErrors, Selector};
use crate::size::{self, Limit};

// ---- YAML shape -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    #[serde(default)]
    priority: i64,
    #[serde(default, rename = "match")]
    selector: RawSelector,
    #[serde(default)]
    memory: RawBounds,
    #[serde(default)]
    swap: RawBounds,
    #[serde(default, deserialize_with = "present")]
    high: Option<Spanned<RawValue>>,
    #[serde(default, rename = "onViolation")]
    on_violation: Action,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    trust: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    cgroups: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    pods: Vec<String>,
    #[serde(default, rename = "containerTypes")]
    container_types: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBounds {
    #[serde(default, deserialize_with = "present")]
    default: Option<Spanned<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    min: Option<Spanned<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    max: Option<Spanned<RawValue>>,
}

/// A size as written, kept as its source text so that it is read as Docker
/// reads `--memory` (YAML's own number forms, `0x10`, `0o10`, `1_000`,
/// `1e9`, are not sizes); or an explicit null, which is refused rather than
/// taken as "no bound".
#[derive(Clone)]
enum RawValue {
    Text(String),
    Null,
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size such as 512m, or max")
            }
            fn visit_none<E>(self) -> Result<RawValue, E> {
                Ok(RawValue::Null)
            }
            fn visit_unit<E>(self) -> Result<RawValue, E> {
                Ok(RawValue::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
                String::deserialize(d).map(RawValue::Text)
            }
        }
        d.deserialize_option(Visit)
    }
}

/// Keeps a key given as null (`max: ~`) as [`RawValue::Null`] instead of
/// letting it read as an absent key.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Spanned<RawValue>>, D::Error> {
    Spanned::<RawValue>::deserialize(d).map(Some)
}

/// The least memory a container can be given: Docker refuses less
/// (`linuxMinMemory`), and below it a container cannot start.
pub const MIN_MEMORY: u64 = 6 << 20;

// ---- loading ----------------------------------------------------------------

/// Reads every `*.yaml` / `*.yml` file of a directory (sorted by name, hidden
/// files skipped), or one file, without judging who could write them.
pub fn load_path(path: &Path) -> Result<Vec<Policy>, PolicyErrors> {
    let opened = files::open(path, false).map_err(|e| PolicyErrors(vec![e.into()]))?;
    load_files(&opened)
}

/// Reads the opened policy files, in order, as one set.
pub fn load_files(opened: &Opened) -> Result<Vec<Policy>, PolicyErrors> {
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    for file in &opened.files {
        match file.text() {
            Ok(text) => match parse_file(&file.path, &text) {
                Ok(mut p) => policies.append(&mut p),
                Err(mut e) => errors.append(&mut e),
            },
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty()
        && let Err(mut e) = check_names(&policies)
    {
        errors.append(&mut e);
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(PolicyErrors(errors))
    }
}

/// Parses one file's YAML documents into policies, checking each.
pub fn parse_file(file: &Path, text: &str) -> Result<Vec<Policy>, Vec<PolicyError>> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    let raws: Vec<RawPolicy> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
            let loc = e.location();
            let inner = e.without_snippet();
            vec![PolicyError {
                file: file.to_path_buf(),
                line: loc.map(|l| l.line()).unwrap_or(0),
                column: loc.map(|l| l.column()).unwrap_or(0),
                field: String::new(),
                message: plain_message(&inner.to_string()),
            }]
        })?;
    let shared: std::sync::Arc<Path> = file.into();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for raw in raws {
        match compile(&shared, raw) {
            Ok(p) => out.push(p),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Where a policy writes its memory `default` and `max`: the line and
/// column (1-based) of each value, `None` where the key is absent. For
/// tools that edit a policy file in place (`recommend -o diff`); a text
/// that does not parse has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlaces {
    pub name: String,
    pub default: Option<(u64, u64)>,
    pub max: Option<(u64, u64)>,
}

pub fn memory_places(text: &str) -> Vec<MemoryPlaces> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    let Ok(raws) = serde_saphyr::from_multiple_with_options::<RawPolicy>(text, options) else {
        return Vec::new();
    };
    let at = |v: &Option<Spanned<RawValue>>| {
        v.as_ref()
            .map(|v| (v.referenced.line(), v.referenced.column()))
    };
    raws.iter()
        .map(|r| MemoryPlaces {
            name: r.name.value.clone(),
            default: at(&r.memory.default),
            max: at(&r.memory.max),
        })
        .collect()
}

/// The parser's message without its own location prefix, which is printed
/// by [`PolicyError`] in the `file:line:col` form editors jump to.
fn plain_message(m: &str) -> String {
    let m = m.trim();
    let m = match m.find(" at line ") {
        Some(i) => &m[..i],
        None => m,
    };
    m.strip_prefix("error: ").unwrap_or(m).to_string()
}

struct Ctx<'a> {
    file: &'a Path,
    errors: Vec<PolicyError>,
}

impl Ctx<'_> {
    fn err<T>(&mut self, at: &Spanned<T>, field: &str, message: String) {
        self.errors.push(PolicyError {
            file: self.file.to_path_buf(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            field: field.into(),
            message,
        });
    }

    /// The text of a value; a null is refused, with what to write instead.
    fn text(&mut self, sv: &Spanned<RawValue>, field: &str) -> Option<String> {
        match &sv.value {
            RawValue::Text(t) => Some(t.clone()),
            RawValue::Null => {
                self.err(
                    sv,
                    field,
                    "null is not a size: write a size (512m), max for no bound, or leave the key out"
                        .into(),
                );
                None
            }
        }
    }

    fn limit(
        &mut self,
        v: &Option<Spanned<RawValue>>,
        field: &str,
        open_ok: bool,
    ) -> Option<Limit> {
        let sv = v.as_ref()?;
        let text = self.text(sv, field)?;
        let parsed = size::parse_limit(&text).and_then(|l| match l {
            Limit::Unlimited if !open_ok => Err(size::SizeError::UnlimitedNotAllowed(text.clone())),
            l => Ok(l),
        });
        match parsed {
            Ok(l) => Some(l),
            Err(e) => {
                self.err(sv, field, e.to_string());
                None
            }
        }
    }

    fn bounds(&mut self, raw: &RawBounds, what: &str) -> Bounds {
        let default = self.limit(&raw.default, &format!("{what}.default"), true);
        let min = self
            .limit(&raw.min, &format!("{what}.min"), false)
            .and_then(Limit::bytes)
            .unwrap_or(0);
        let max = self
            .limit(&raw.max, &format!("{what}.max"), true)
            .unwrap_or(Limit::Unlimited);
        if Limit::Bytes(min) > max {
            let at = raw.min.as_ref().expect("min parsed");
            self.err(
                at,
                &format!("{what}.min"),
                format!("min {} is greater than max {}", Limit::Bytes(min), max),
            );
        }
        if let (Some(d), Some(at)) = (default, raw.default.as_ref()) {
            if d > max {
                self.err(
                    at,
                    &format!("{what}.default"),
                    format!("default {d} is greater than max {max}"),
                );
            } else if d < Limit::Bytes(min) {
                self.err(
                    at,
                    &format!("{what}.default"),
                    format!("default {d} is less than min {}", Limit::Bytes(min)),
                );
            }
        }
        if what == "memory" {
            let floor = [
                (&raw.default, default),
                (&raw.min, Some(Limit::Bytes(min))),
                (&raw.max, Some(max)),
            ];
            for ((at, value), key) in floor.into_iter().zip(["default", "min", "max"]) {
                if let (Some(at), Some(Limit::Bytes(b))) = (at, value)
                    && b < MIN_MEMORY
                    && !(key == "min" && b == 0)
                {
                    self.err(
                        at,
                        &format!("memory.{key}"),
                        format!(
                            "{} is below {}, the least memory a container can run with (Docker refuses less): write at least 6M{}",
                            Limit::Bytes(b),
                            Limit::Bytes(MIN_MEMORY),
                            if key == "min" { ", or 0" } else { ", or max for no bound" }
                        ),
                    );
                }
            }
        }
        Bounds { default, min, max }
    }

    fn high(&mut self, raw: &Option<Spanned<RawValue>>) -> Option<High> {
        let sv = raw.as_ref()?;
        let text = self.text(sv, "high")?;
        let t = text.trim();
        if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("max") {
            return None;
        }
        if let Some(pct) = t.strip_suffix('%') {
            return match pct.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Some(High::Percent(p)),
                _ => {
                    self.err(
                        sv,
                        "high",
                        format!("invalid share {t:?}: expected a percentage above 0% and at most 100%, e.g. 90%"),
                    );
                    None
                }
            };
        }
        match size::parse_bytes(t) {
            Ok(b) if b < crate::size::PAGE_SIZE => {
                self.err(
                    sv,
                    "high",
                    format!("{} is below one page (4K), which the kernel cannot hold: write a size of at least 4K, a share of the limit such as 90%, or off", Limit::Bytes(b)),
                );
                None
            }
            Ok(b) => Some(High::Size(b)),
            Err(e) => {
                self.err(
                    sv,
                    "high",
                    format!("{e} (or a share of the limit, e.g. 90%, or off)"),
                );
                None
            }
        }
    }
}

fn compile(file: &std::sync::Arc<Path>, raw: RawPolicy) -> Result<Policy, Vec<PolicyError>> {
    let mut cx = Ctx {
        file,
        errors: Vec::new(),
    };
    if raw.name.value.trim().is_empty() {
        cx.err(&raw.name, "name", "a policy needs a non-empty name".into());
    }
    let memory = cx.bounds(&raw.memory, "memory");
    let swap = cx.bounds(&raw.swap, "swap");
    let high = cx.high(&raw.high);
    let s = raw.selector;
    for key in &raw.trust {
        let k = key.value.as_str();
        let used = match k {
            "names" => !s.names.is_empty(),
            "images" => !s.images.is_empty(),
            "ids" => !s.ids.is_empty(),
            "cgroups" => !s.cgroups.is_empty(),
            "pods" => !s.pods.is_empty(),
            _ => s.labels.contains_key(k) || s.annotations.contains_key(k),
        };
        if !used {
            cx.err(
                key,
                "trust",
                format!(
                    "{k:?} is not in this policy's match: trust names a kind of fact it selects on (names, images, ids, cgroups, pods) or one of its label or annotation keys"
                ),
            );
        }
    }
    for t in &s.container_types {
        if crate::facts::pod::ContainerType::parse(&t.value).is_none() {
            cx.err(
                t,
                "match.containerTypes",
                format!(
                    "{:?} is not a container type: `sandbox` (a pod's pause container) or `container`",
                    t.value
                ),
            );
        }
    }
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    Ok(Policy {
        name: raw.name.value,
        priority: raw.priority,
        selector: Selector {
            names: s.names,
            images: s.images,
            ids: s.ids,
            labels: s.labels,
            annotations: s.annotations,
            cgroups: s.cgroups,
            namespaces: s.namespaces,
            pods: s.pods,
            container_types: s.container_types.into_iter().map(|t| t.value).collect(),
        },
        memory,
        swap,
        high,
        on_violation: raw.on_violation,
        message: raw.message,
        trust: raw.trust.into_iter().map(|k| k.value).collect(),
        origin: Origin {
            file: std::sync::Arc::clone(file),
            line: raw.name.referenced.line(),
        },
    })
}

/// Policy names must be unique: records and `explain` refer to them.
pub fn check_names(policies: &[Policy]) -> Result<(), Vec<PolicyError>> {
    let mut errors = Vec::new();
    let mut seen: BTreeMap<&str, &Origin> = BTreeMap::new();
    for p in policies {
        if let Some(first) = seen.get(p.name.as_str()) {
            errors.push(PolicyError {
                file: p.origin.file.to_path_buf(),
                line: p.origin.line,
                column: 1,
                field: "name".into(),
                message: format!(
                    "duplicate policy name {:?}, first defined at {first}",
                    p.name
                ),
            });
        } else {
            seen.insert(&p.name, &p.origin);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_types_are_sandbox_or_container() {
        let e = parse_file(
            Path::new("k.yaml"),
            "name: p\nmatch:\n  containerTypes:\n    - sandbox\n    - pause\n",
        )
        .unwrap_err();
        let text: String = e.iter().map(|e| e.to_string()).collect();
        assert!(
            text.contains("k.yaml:5")
                && text.contains("match.containerTypes")
                && text.contains("\"pause\" is not a container type"),
            "{text}"
        );
        let e = parse_file(
            Path::new("k.yaml"),
            "name: p\nmatch: {namespaces: [a]}\ntrust: [namespaces]\n",
        )
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect::<String>();
        assert!(e.contains("trust"), "{e}");
    }

    fn parse(text: &str) -> Result<Vec<Policy>, Vec<PolicyError>> {
        parse_file(Path::new("p.yaml"), text)
    }

    fn one_error(text: &str) -> PolicyError {
        let errs = parse(text).expect_err("should fail");
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    }

    /// Sizes that would give a container no limit, a zero limit, or a value
    /// read differently than Docker reads it: refused where they are written.
    #[test]
    fn sizes_that_escape_are_refused_with_a_place_and_a_fix() {
        for (text, field, line, col, says) in [
            (
                "name: a\nmemory: {default: 0}\n",
                "memory.default",
                2,
                19,
                "below 6M",
            ),
            (
                "name: a\nmemory: {max: 0.0001k}\n",
                "memory.max",
                2,
                15,
                "below 6M",
            ),
            (
                "name: a\nmemory:\n  max: 100\n",
                "memory.max",
                3,
                8,
                "write at least 6M, or max",
            ),
            ("name: a\nmemory: {min: 1M}\n", "memory.min", 2, 15, "or 0"),
            (
                "name: a\nmemory: {max: 0x10}\n",
                "memory.max",
                2,
                15,
                "sizes are decimal",
            ),
            (
                "name: a\nmemory: {max: 0o10}\n",
                "memory.max",
                2,
                15,
                "sizes are decimal",
            ),
            (
                "name: a\nmemory: {max: 1_000}\n",
                "memory.max",
                2,
                15,
                "sizes are decimal",
            ),
            (
                "name: a\nmemory: {max: 1e9}\n",
                "memory.max",
                2,
                15,
                "sizes are decimal",
            ),
            (
                "name: a\nmemory: {max: 123456789012345678901}\n",
                "memory.max",
                2,
                15,
                "larger than 2^63",
            ),
            (
                "name: a\nmemory: {max: ~}\n",
                "memory.max",
                2,
                15,
                "null is not a size",
            ),
            (
                "name: a\nswap:\n  default: null\n",
                "swap.default",
                3,
                12,
                "max for no bound",
            ),
            ("name: a\nhigh: 90\n", "high", 2, 7, "below one page"),
            ("name: a\nhigh: 0\n", "high", 2, 7, "below one page"),
            ("name: a\nhigh: ~\n", "high", 2, 7, "null is not a size"),
        ] {
            let e = one_error(text);
            assert_eq!(e.field, field, "{text}: {e}");
            assert_eq!((e.line, e.column), (line, col), "{text}: {e}");
            assert!(e.message.contains(says), "{text}: {e}");
        }
        // What stays allowed: no swap, no minimum, the floor itself, a page.
        let ok = parse("name: a\nmemory: {default: 6M, min: 0, max: max}\nswap: {default: 0, max: 0}\nhigh: 4k\n").unwrap();
        assert_eq!(ok[0].memory.default, Some(Limit::Bytes(6 << 20)));
        assert_eq!(ok[0].swap.max, Limit::Bytes(0));
    }

    const ISSUE_SHAPE: &str = "name: default
priority: 0
match: {}
memory: {default: 512M, min: 16M, max: 8G}
swap:   {default: 0, max: 1G}
high: 90%
onViolation: clamp
";

    #[test]
    fn trust_names_keys_of_the_match() {
        let p =
            parse("name: t\nmatch: {labels: {tier: b*}, annotations: {x: y}}\ntrust: [tier, x]\n")
                .unwrap();
        assert_eq!(p[0].trust, ["tier", "x"]);
        // Kinds of fact, when the match uses them.
        let p = parse("name: t\nmatch: {names: [ci-*], images: [x]}\ntrust: [names, images]\n")
            .unwrap();
        assert_eq!(p[0].trust, ["names", "images"]);
        let e = one_error("name: t\nmatch: {names: [ci-*]}\ntrust: [images]\n");
        assert_eq!((e.line, e.column, e.field.as_str()), (3, 9, "trust"));
        let e = one_error("name: t\nmatch: {labels: {tier: b*}}\ntrust:\n  - tier\n  - teir\n");
        assert_eq!((e.line, e.column, e.field.as_str()), (5, 5, "trust"));
        assert!(
            e.message.contains("\"teir\" is not in this policy's match"),
            "{e}"
        );
    }

    #[test]
    fn the_documented_shape_loads() {
        let p = parse(ISSUE_SHAPE).unwrap();
        assert_eq!(p.len(), 1);
        let p = &p[0];
        assert_eq!(p.name, "default");
        assert_eq!(p.memory.default, Some(Limit::Bytes(512 << 20)));
        assert_eq!(p.memory.min, 16 << 20);
        assert_eq!(p.memory.max, Limit::Bytes(8 << 30));
        assert_eq!(p.swap.default, Some(Limit::Bytes(0)));
        assert_eq!(p.swap.max, Limit::Bytes(1 << 30));
        assert_eq!(p.high, Some(High::Percent(90.0)));
        assert_eq!(p.on_violation, Action::Clamp);
        assert_eq!(p.selector, Selector::default());
        assert_eq!(p.origin.line, 1);
    }

    #[test]
    fn several_documents_in_one_file() {
        let text = format!(
            "{ISSUE_SHAPE}---\nname: web\npriority: 10\nmatch:\n  names: ['web-*']\n  labels: {{tier: frontend}}\nmemory: {{max: unlimited}}\nonViolation: deny\nmessage: ask the platform team\n"
        );
        let p = parse(&text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].name, "web");
        assert_eq!(p[1].origin.line, 9);
        assert_eq!(p[1].selector.names, vec!["web-*"]);
        assert_eq!(p[1].selector.labels["tier"], "frontend");
        assert_eq!(p[1].memory.max, Limit::Unlimited);
        assert_eq!(p[1].on_violation, Action::Deny);
    }

    #[test]
    fn unknown_key_is_located() {
        let e = one_error("name: a\nmemory:\n  default: 1g\n  maxx: 2g\n");
        assert_eq!((e.line, e.column), (4, 3), "{e}");
        assert!(e.message.contains("maxx"), "{e}");
        let e = one_error("name: a\nmatchh: {}\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.to_string().starts_with("p.yaml:2:"), "{e}");
    }

    #[test]
    fn unit_typo_is_located() {
        let e = one_error("name: a\nmemory: {default: 512x, max: 1g}\n");
        assert_eq!((e.line, e.field.as_str()), (2, "memory.default"), "{e}");
        assert_eq!(e.column, 19, "{e}");
        assert!(e.message.contains("unknown unit"), "{e}");
    }

    #[test]
    fn min_above_max_and_default_above_max() {
        let e = one_error("name: a\nmemory:\n  min: 2g\n  max: 1g\n");
        assert_eq!((e.line, e.field.as_str()), (3, "memory.min"), "{e}");
        let e = one_error("name: a\nswap:\n  default: 2g\n  max: 1g\n");
        assert_eq!((e.line, e.field.as_str()), (3, "swap.default"), "{e}");
        assert!(e.message.contains("greater than max"), "{e}");
        let e = one_error("name: a\nmemory: {default: 8m, min: 16m}\n");
        assert!(e.message.contains("less than min"), "{e}");
    }

    #[test]
    fn min_cannot_be_unlimited() {
        let e = one_error("name: a\nmemory: {min: max}\n");
        assert_eq!(e.field, "memory.min");
    }

    #[test]
    fn bad_high_and_action() {
        let e = one_error("name: a\nhigh: 120%\n");
        assert_eq!((e.line, e.field.as_str()), (2, "high"));
        let e = one_error("name: a\nonViolation: kill\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(parse("name: a\nhigh: 512m\n").unwrap()[0].high == Some(High::Size(512 << 20)));
        assert!(parse("name: a\nhigh: off\n").unwrap()[0].high.is_none());
    }

    #[test]
    fn missing_name_and_duplicate_keys() {
        let e = one_error("memory: {max: 1g}\n");
        assert!(e.message.contains("name"), "{e}");
        let e = one_error("name: a\nname: b\n");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn strict_booleans_and_types() {
        let e = one_error("name: a\npriority: yes\n");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn duplicate_names_across_files_point_at_both() {
        let dir = std::env::temp_dir().join(format!("cglimit-dup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), "name: x\n").unwrap();
        std::fs::write(dir.join("b.yml"), "# comment\nname: x\n").unwrap();
        std::fs::write(dir.join("ignored.txt"), "name: x\n").unwrap();
        let errs = load_path(&dir).unwrap_err().0;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].file.ends_with("b.yml"));
        assert_eq!(errs[0].line, 2);
        assert!(errs[0].message.contains("a.yaml:1"), "{}", errs[0]);
    }
}
