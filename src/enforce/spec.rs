//! Writing a decision into a bundle's `config.json`, so the runtime itself
//! creates the cgroup with the limits: the container never runs without them.
//!
//! The file is edited as a JSON tree that keeps every unknown field and the
//! key order (serde_json's `preserve_order`), and replaced atomically (write
//! beside it, rename), so the runtime reads the old or the new file, never
//! half of one. There is no fsync: a bundle lives under the engine's
//! exec-root (`/run`, a tmpfs) and does not outlive a reboot, and an fsync
//! cost milliseconds on every container start when measured on ext4.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde_json::{Map, Value};

use crate::decision::Limits;
use crate::size::Limit;

/// What the host's kernel offers, which decides how limits are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    /// The memory controller is on cgroup v2.
    pub unified: bool,
    /// Swap is accounted (v1 `memory.memsw.*`, v2 `memory.swap.max`):
    /// without it, runc fails any create that sets `swap`.
    pub swap: bool,
}

impl Host {
    pub fn probe() -> Host {
        let unified = crate::cgroup::unified_host();
        Host {
            unified,
            swap: crate::cgroup::swap_accounted(unified),
        }
    }
}

/// Sets `linux.resources.memory` (and `memory.high`) from the final limits;
/// the decision is authoritative, so nothing else in the file contradicts it.
///
/// - `limit` is the memory limit and `swap` memory+swap, both OCI style
///   (-1 for no limit); runc converts `swap` for v2 itself. Without swap
///   accounting, `swap` is left out (runc would fail the create), as
///   Docker leaves it out.
/// - On a v2 host, runc applies `linux.resources.unified` after the memory
///   fields: a creator's own `memory.max` or `memory.swap.max` there would
///   win, so they are removed, and `memory.high` is set to the decision's
///   or removed. On v1, where runc refuses `unified`, `high` goes to
///   `memory.reservation` (runc's `memory.soft_limit_in_bytes`); on v2 a
///   reservation (`memory.low`) is held to `high`, see [`reservation`].
///
/// An object on the way that is missing or `null` is created; one that is
/// something else (a list, a string) is an error and nothing is changed:
/// the wrapper never replaces what it does not own.
pub fn set_limits(config: &mut Value, limits: &Limits, host: Host) -> Result<(), NotAnObject> {
    let high = match limits.high {
        Some(Limit::Bytes(b)) => Some(b),
        _ => None,
    };
    // Check the whole way first, so an error leaves the tree untouched.
    check_objects(config, &["linux", "resources", "memory"])?;
    if host.unified {
        check_objects(config, &["linux", "resources", "unified"])?;
    }
    let resources = object_at(config, &["linux", "resources"]);
    let memory = object_in(resources, "memory");
    memory.insert("limit".into(), limits.memory.to_oci().into());
    if host.swap {
        memory.insert("swap".into(), limits.memory_swap().to_oci().into());
    } else {
        memory.remove("swap");
    }
    let asked = memory.get("reservation").and_then(Value::as_i64);
    match reservation(asked, limits, host) {
        Some(r) => memory.insert("reservation".into(), r.into()),
        None => memory.remove("reservation"),
    };
    if !host.unified {
        return Ok(());
    }
    if high.is_none() && !resources.get("unified").is_some_and(Value::is_object) {
        return Ok(());
    }
    let u = object_in(resources, "unified");
    for key in ["memory.max", "memory.swap.max"] {
        u.remove(key);
    }
    match high {
        Some(h) => u.insert("memory.high".into(), h.to_string().into()),
        None => u.remove("memory.high"),
    };
    Ok(())
}

/// What a create's or update's `memory.reservation` becomes (OCI bytes,
/// -1 for none; `None`: left out).
///
/// On v1 runc writes it to `memory.soft_limit_in_bytes`, which is `high`:
/// the decided `high`, or the creator's value when `high` is off (a soft
/// limit only makes the container the first to be reclaimed). On v2 runc
/// turns it into `memory.low`, protection from reclaim, which pushes
/// reclaim onto every other container: the creator's value is kept up to
/// the decided `high`, and left out when `high` is off, so the policy
/// grants no protection it does not name.
pub fn reservation(asked: Option<i64>, limits: &Limits, host: Host) -> Option<i64> {
    let high = match limits.high {
        Some(Limit::Bytes(b)) => Some(i64::try_from(b).unwrap_or(i64::MAX)),
        _ => None,
    };
    match (host.unified, high, asked) {
        (false, Some(h), _) => Some(h),
        (false, None, asked) => asked,
        (true, Some(h), Some(r)) => Some(if r < 0 { h } else { r.min(h) }),
        (true, _, _) => None,
    }
}

/// On the systemd cgroup driver (`linux.cgroupsPath` as
/// `slice:prefix:name`), adds a `createRuntime` hook that runs `exe hook
/// --decided LIMITS`: once runc has created the container's unit, the hook
/// makes the decided limits the unit's properties, which systemd keeps
/// across `daemon-reload` (runc sets no `MemorySwapMax`, so a reload
/// would lift the swap limit). Any other cgroup path: nothing added.
/// With `socket_buffers` (a v1 host whose kernel has
/// `memory.kmem.tcp.limit_in_bytes`, which runc no longer writes), the
/// hook is added on any cgroup path: it sets that file, so that socket
/// buffers are held to the limit ([`crate::cgroup::apply`]).
/// With `state_dir`, the hook records what fails there (the wrapper's own
/// record says what was decided). Returns whether the hook was added.
pub fn add_unit_hook(
    config: &mut Value,
    exe: &Path,
    limits: &Limits,
    socket_buffers: bool,
    log_file: Option<&Path>,
    state_dir: Option<&Path>,
) -> Result<bool, NotAnObject> {
    let systemd = config
        .pointer("/linux/cgroupsPath")
        .and_then(Value::as_str)
        .is_some_and(|p| p.contains(':'));
    if !systemd && !socket_buffers {
        return Ok(false);
    }
    check_objects(config, &["hooks"])?;
    let hooks = object_at(config, &["hooks"]);
    let stage = hooks
        .entry("createRuntime")
        .or_insert_with(|| Value::Array(Vec::new()));
    if stage.is_null() {
        *stage = Value::Array(Vec::new());
    }
    let Some(list) = stage.as_array_mut() else {
        return Err(NotAnObject {
            field: "hooks.createRuntime".into(),
        });
    };
    let mut args = vec![
        "cglimit".to_string(),
        "hook".into(),
        "--decided".into(),
        limits.to_arg(),
    ];
    if let Some(f) = log_file {
        args.push("--log-file".into());
        args.push(f.display().to_string());
    }
    if let Some(d) = state_dir {
        args.push("--state-dir".into());
        args.push(d.display().to_string());
    }
    list.push(serde_json::json!({
        "path": exe.display().to_string(),
        "args": args,
        "timeout": 10,
    }));
    Ok(true)
}

/// What [`hold_tmpfs`] changed, for the decision's notes.
#[derive(Debug, PartialEq, Eq)]
pub struct TmpfsChange {
    pub destination: String,
    /// The size it had (`None`: none, which the kernel reads as half of
    /// the host's memory).
    pub was: Option<String>,
}

/// A tmpfs mount holds pages that count against the container's limit but
/// that no reclaim can take back without swap; a size above the limit only
/// promises what the limit will not allow, and one left out is half of the
/// host's memory. Each tmpfs in `mounts` larger than `limit` bytes, or
/// without a size, gets `size=LIMIT`. `host_memory` (asked only for
/// `size=N%`) is the host's memory in bytes.
/// Returns what changed; a `mounts` that is not a list is left alone.
pub fn hold_tmpfs(
    config: &mut Value,
    limit: u64,
    host_memory: impl Fn() -> u64,
) -> Vec<TmpfsChange> {
    let mut changed = Vec::new();
    let Some(mounts) = config.get_mut("mounts").and_then(Value::as_array_mut) else {
        return changed;
    };
    for m in mounts {
        if m.get("type").and_then(Value::as_str) != Some("tmpfs") {
            continue;
        }
        let destination = m
            .get("destination")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !m.get("options").is_some_and(Value::is_array)
            && let Some(o) = m.as_object_mut()
        {
            o.insert("options".into(), Value::Array(Vec::new()));
        }
        let Some(options) = m.get_mut("options").and_then(Value::as_array_mut) else {
            continue;
        };
        // The kernel takes the last `size=`.
        let at = options
            .iter()
            .rposition(|o| o.as_str().is_some_and(|s| s.starts_with("size=")));
        let was = at.and_then(|i| options[i].as_str().map(|s| s["size=".len()..].to_string()));
        let over = match &was {
            None => true,
            Some(s) => tmpfs_size(s, &host_memory).is_none_or(|b| b > limit),
        };
        if !over {
            continue;
        }
        let new = Value::String(format!("size={limit}"));
        match at {
            Some(i) => options[i] = new,
            None => options.push(new),
        }
        changed.push(TmpfsChange { destination, was });
    }
    changed
}

/// A tmpfs `size=` value in bytes: a number with an optional `k`, `m`,
/// `g` (binary, either case), or a percentage of the host's memory;
/// `None` for what the kernel would refuse (then it is replaced too).
fn tmpfs_size(v: &str, host_memory: impl Fn() -> u64) -> Option<u64> {
    if let Some(p) = v.strip_suffix('%') {
        return p.parse::<u64>().ok().map(|p| host_memory() / 100 * p);
    }
    let (num, shift) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 10),
        'm' | 'M' => (&v[..v.len() - 1], 20),
        'g' | 'G' => (&v[..v.len() - 1], 30),
        't' | 'T' => (&v[..v.len() - 1], 40),
        _ => (v, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Bind mounts of `/dev/shm` whose source is the container's own (Docker's
/// `--ipc shareable`: `…/containers/ID/mounts/shm`): the host tmpfs that
/// [`crate::sys::shm::hold_size`] holds to the limit. A container joining
/// another's IPC names the other's directory and is left alone.
pub fn own_shared_shm(config: &Value, id: &str) -> Vec<String> {
    if id.is_empty() {
        return Vec::new();
    }
    let needle = format!("/{id}/");
    config
        .get("mounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m.get("destination").and_then(Value::as_str) == Some("/dev/shm"))
        .filter(|m| m.get("type").and_then(Value::as_str) == Some("bind"))
        .filter_map(|m| m.get("source").and_then(Value::as_str))
        .filter(|s| s.contains(&needle))
        .map(String::from)
        .collect()
}

/// A field on the way to the limits holds something other than an object.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} is not an object; refusing to replace it")]
pub struct NotAnObject {
    /// Dotted path, e.g. `linux.resources.unified`.
    pub field: String,
}

/// Why a bundle's `config.json` was not rewritten with the decided limits.
#[derive(Debug, thiserror::Error)]
pub enum BundleProblem {
    #[error(transparent)]
    Config(#[from] crate::facts::oci::ConfigProblem),
    #[error(transparent)]
    NotAnObject(#[from] NotAnObject),
    #[error(transparent)]
    Shm(#[from] crate::sys::shm::ShmError),
    #[error("cannot serialize: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("cannot write: {0}")]
    Write(#[source] std::io::Error),
}

fn check_objects(v: &Value, path: &[&str]) -> Result<(), NotAnObject> {
    let mut cur = v;
    for (i, key) in std::iter::once(&"").chain(path).enumerate() {
        if i > 0 {
            cur = match cur.get(key) {
                Some(next) => next,
                None => return Ok(()),
            };
        }
        if !(cur.is_object() || cur.is_null()) {
            let field = if i == 0 {
                "the top level".to_string()
            } else {
                path[..i].join(".")
            };
            return Err(NotAnObject { field });
        }
        if cur.is_null() {
            return Ok(());
        }
    }
    Ok(())
}

/// The object at `path`, creating empty objects (or replacing `null`) on the way.
fn object_at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let mut cur = v.as_object_mut().expect("object");
    for key in path {
        cur = object_in(cur, key);
    }
    cur
}

/// The object under `key`, created when missing or `null` (callers check
/// with [`check_objects`] first that nothing else is there).
fn object_in<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("object")
}

/// Replaces `path` with `bytes` atomically, keeping its permissions.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let old = std::fs::symlink_metadata(path).ok();
    // The mode of what `path` names: a symbolic link's is its target's.
    let mode = match &old {
        Some(m) if !m.file_type().is_symlink() => Some(m.permissions().mode()),
        Some(_) => std::fs::metadata(path).ok().map(|m| m.permissions().mode()),
        None => None,
    }
    .map_or(0o644, |m| m & 0o7777);
    let tmp = path.with_file_name(format!(
        ".{}.cglimit-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config.json"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        match old {
            Some(m) if m.is_file() => exchange(&tmp, path),
            _ => std::fs::rename(&tmp, path),
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Puts `tmp` in place of the regular file `path`: the two are exchanged
/// (`RENAME_EXCHANGE`) and the old file, now at `tmp`, unlinked. As atomic
/// for a reader of `path` as a rename over it, without ext4's
/// replace-by-rename heuristic (`auto_da_alloc`), which writes the new
/// file's blocks back inside the rename (`bench/exec-floor.sh`: a bundle on
/// ext4). Where the filesystem cannot exchange, a plain rename.
fn exchange(tmp: &Path, path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    const RENAME_EXCHANGE: nix::libc::c_uint = 2;
    let (Ok(from), Ok(to)) = (
        std::ffi::CString::new(tmp.as_os_str().as_bytes()),
        std::ffi::CString::new(path.as_os_str().as_bytes()),
    ) else {
        return std::fs::rename(tmp, path);
    };
    // SAFETY: two NUL-terminated paths that outlive the call.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_renameat2,
            nix::libc::AT_FDCWD,
            from.as_ptr(),
            nix::libc::AT_FDCWD,
            to.as_ptr(),
            RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        // The old file, now under the temporary name: left behind, it
        // would be only a stray file.
        let _ = std::fs::remove_file(tmp);
        Ok(())
    } else {
        std::fs::rename(tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"ociVersion":"1.0.2","zeta":{"keep":[1,2]},"process":{"capabilities":{"bounding":["CAP_FUTURE_THING"]}},"linux":{"resources":{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":17179869184,"kernelTCP":5,"swappiness":1}},"cgroupsPath":"/docker/x","futureKey":{"a":null}},"alpha":true}"#;

    const V1: Host = Host {
        unified: false,
        swap: true,
    };
    const V2: Host = Host {
        unified: true,
        swap: true,
    };

    /// The decision is authoritative: a creator's own memory keys in
    /// `unified` (which runc applies last) do not survive, and swap is
    /// left out where the kernel cannot account it.
    #[test]
    fn nothing_in_the_file_contradicts_the_decision() {
        let text = r#"{"linux":{"resources":{"memory":{"limit":1,"swap":5,"reservation":7},"unified":{"memory.max":"max","memory.swap.max":"max","memory.high":"max","pids.max":"9"}}}}"#;
        let mut v: Value = serde_json::from_str(text).unwrap();
        set_limits(&mut v, &limits(), V2).unwrap();
        let u = &v["linux"]["resources"]["unified"];
        assert_eq!(
            u,
            &serde_json::json!({"memory.high": "943718400", "pids.max": "9"})
        );
        let mut v: Value = serde_json::from_str(text).unwrap();
        let mut l = limits();
        l.high = None;
        set_limits(&mut v, &l, V2).unwrap();
        assert_eq!(
            v["linux"]["resources"]["unified"],
            serde_json::json!({"pids.max": "9"})
        );
        let mut v: Value = serde_json::from_str(text).unwrap();
        let no_swap = Host {
            unified: false,
            swap: false,
        };
        set_limits(&mut v, &limits(), no_swap).unwrap();
        assert!(v["linux"]["resources"]["memory"].get("swap").is_none());
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 1u64 << 30);
    }

    fn limits() -> Limits {
        Limits {
            memory: Limit::Bytes(1 << 30),
            swap: Limit::Bytes(0),
            high: Some(Limit::Bytes(900 << 20)),
        }
    }

    #[test]
    fn keeps_unknown_fields_and_key_order() {
        let mut v: Value = serde_json::from_str(CONFIG).unwrap();
        set_limits(&mut v, &limits(), V1).unwrap();
        let out = serde_json::to_string(&v).unwrap();
        let expected = CONFIG.replace(
            r#""memory":{"limit":17179869184,"kernelTCP":5,"swappiness":1}"#,
            r#""memory":{"limit":1073741824,"kernelTCP":5,"swappiness":1,"swap":1073741824,"reservation":943718400}"#,
        );
        assert_eq!(out, expected);
    }

    /// Found by fuzzing (`fuzz/` `config_edit`): an integer too large for
    /// 64 bits is read as a float, and serde_json's default float parser is
    /// not exact, so the value read back after the edit was a different
    /// float. With `float_roundtrip` every number keeps its value.
    #[test]
    fn numbers_keep_their_value_through_an_edit() {
        let text = r#"{"linux":{"x":{"memory":{"limit":12000000000000000000000000000000000000000000000000485766,"swap":-1}},"f":[0.1,1e-7,123456789.123456789,1.7976931348623157e308]}}"#;
        let before: Value = serde_json::from_str(text).unwrap();
        let mut v = before.clone();
        set_limits(&mut v, &limits(), V1).unwrap();
        let after: Value = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(after["linux"]["x"], before["linux"]["x"]);
        assert_eq!(after["linux"]["f"], before["linux"]["f"]);
    }

    /// Found by fuzzing: `unified` (or any object on the way) holding
    /// something else was replaced by an object, losing its content.
    #[test]
    fn what_is_not_an_object_is_refused_not_replaced() {
        for (text, unified, field) in [
            (
                r#"{"linux":{"resources":{"unified":[{"allow":false}]}}}"#,
                true,
                "linux.resources.unified",
            ),
            (
                r#"{"linux":{"resources":{"memory":"1g"}}}"#,
                false,
                "linux.resources.memory",
            ),
            (r#"{"linux":[1]}"#, false, "linux"),
            (r#"[1,2]"#, false, "the top level"),
        ] {
            let before: Value = serde_json::from_str(text).unwrap();
            let mut v = before.clone();
            let host = if unified { V2 } else { V1 };
            let e = set_limits(&mut v, &limits(), host).unwrap_err();
            assert_eq!(e.field, field, "{text}");
            assert_eq!(v, before, "changed: {text}");
        }
        // null means absent: created.
        let mut v: Value = serde_json::from_str(r#"{"linux":{"resources":null}}"#).unwrap();
        set_limits(&mut v, &limits(), V2).unwrap();
        assert_eq!(
            v["linux"]["resources"]["unified"]["memory.high"],
            "943718400"
        );
        // unified is not touched on v1, whatever it holds.
        let mut v: Value =
            serde_json::from_str(r#"{"linux":{"resources":{"unified":[1]}}}"#).unwrap();
        set_limits(&mut v, &limits(), V1).unwrap();
        assert_eq!(v["linux"]["resources"]["unified"], serde_json::json!([1]));
    }

    #[test]
    fn v2_puts_high_in_unified() {
        let mut v: Value = serde_json::from_str(r#"{"linux":{}}"#).unwrap();
        set_limits(&mut v, &limits(), V2).unwrap();
        assert_eq!(
            v["linux"]["resources"]["unified"]["memory.high"],
            "943718400"
        );
        assert_eq!(v["linux"]["resources"]["memory"]["swap"], 1u64 << 30);
        assert!(
            v["linux"]["resources"]["memory"]
                .get("reservation")
                .is_none()
        );
    }

    #[test]
    fn the_unit_hook_only_on_the_systemd_driver_or_for_v1_sockets() {
        let exe = Path::new("/usr/local/bin/cglimit");
        let mut v: Value = serde_json::from_str(
            r#"{"linux":{"cgroupsPath":"/docker/1"},"hooks":{"createRuntime":[{"path":"/x"}]}}"#,
        )
        .unwrap();
        let before = v.clone();
        assert!(!add_unit_hook(&mut v, exe, &limits(), false, None, None).unwrap());
        assert_eq!(v, before);
        let mut sockets = v.clone();
        assert!(add_unit_hook(&mut sockets, exe, &limits(), true, None, None).unwrap());
        assert_eq!(
            sockets["hooks"]["createRuntime"].as_array().unwrap().len(),
            2
        );
        v["linux"]["cgroupsPath"] = "system.slice:docker:1".into();
        assert!(
            add_unit_hook(
                &mut v,
                exe,
                &limits(),
                false,
                Some(Path::new("/l")),
                Some(Path::new("/s"))
            )
            .unwrap()
        );
        let hooks = v["hooks"]["createRuntime"].as_array().unwrap();
        assert_eq!(hooks.len(), 2, "the bundle's own hook kept");
        assert_eq!(hooks[1]["path"], "/usr/local/bin/cglimit");
        let args: Vec<&str> = hooks[1]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(&args[..3], ["cglimit", "hook", "--decided"]);
        assert_eq!(Limits::from_arg(args[3]).unwrap(), limits());
        assert_eq!(&args[4..], ["--log-file", "/l", "--state-dir", "/s"]);
        // No hooks yet, or a hooks object that is not one: created / refused.
        let mut v: Value = serde_json::from_str(r#"{"linux":{"cgroupsPath":"s:p:n"}}"#).unwrap();
        assert!(add_unit_hook(&mut v, exe, &limits(), false, None, None).unwrap());
        assert_eq!(v["hooks"]["createRuntime"].as_array().unwrap().len(), 1);
        let mut v: Value = serde_json::from_str(
            r#"{"linux":{"cgroupsPath":"s:p:n"},"hooks":{"createRuntime":"x"}}"#,
        )
        .unwrap();
        assert!(add_unit_hook(&mut v, exe, &limits(), false, None, None).is_err());
    }

    #[test]
    fn tmpfs_mounts_are_held_to_the_limit() {
        let mut v: Value = serde_json::from_str(
            r#"{"mounts":[
                {"destination":"/dev/shm","type":"tmpfs","options":["nosuid","size=67108864"]},
                {"destination":"/t","type":"tmpfs","options":["noexec"]},
                {"destination":"/u","type":"tmpfs","options":["size=1m","size=2g"]},
                {"destination":"/p","type":"tmpfs","options":["size=50%"]},
                {"destination":"/n","type":"tmpfs"},
                {"destination":"/s","type":"tmpfs","options":["size=8M"]},
                {"destination":"/b","type":"bind","source":"/x","options":["rbind"]}
            ]}"#,
        )
        .unwrap();
        let limit = 32 << 20;
        let changed = hold_tmpfs(&mut v, limit, || 1 << 30);
        let dests: Vec<&str> = changed.iter().map(|c| c.destination.as_str()).collect();
        assert_eq!(dests, ["/dev/shm", "/t", "/u", "/p", "/n"]);
        assert_eq!(changed[2].was.as_deref(), Some("2g"));
        let opts = |i: usize| v["mounts"][i]["options"].clone();
        assert_eq!(opts(0), serde_json::json!(["nosuid", "size=33554432"]));
        assert_eq!(opts(1), serde_json::json!(["noexec", "size=33554432"]));
        assert_eq!(opts(2), serde_json::json!(["size=1m", "size=33554432"]));
        assert_eq!(opts(4), serde_json::json!(["size=33554432"]));
        assert_eq!(opts(5), serde_json::json!(["size=8M"]), "smaller: kept");
        assert_eq!(v["mounts"][6]["options"], serde_json::json!(["rbind"]));
    }

    #[test]
    fn only_the_containers_own_shared_shm_is_held() {
        let v: Value = serde_json::from_str(
            r#"{"mounts":[{"destination":"/dev/shm","type":"bind","source":"/var/lib/docker/containers/abc/mounts/shm"}]}"#,
        )
        .unwrap();
        assert_eq!(own_shared_shm(&v, "abc").len(), 1);
        assert!(
            own_shared_shm(&v, "def").is_empty(),
            "a joiner's is the owner's"
        );
        assert!(own_shared_shm(&v, "").is_empty());
    }

    #[test]
    fn a_reservation_protects_no_more_than_high_on_v2() {
        let high = |h: Option<u64>| Limits {
            memory: Limit::Bytes(1 << 30),
            swap: Limit::Bytes(1 << 30),
            high: h.map(Limit::Bytes),
        };
        let m = 64i64 << 20;
        // v1: the soft limit is `high`, or the creator's when `high` is off.
        assert_eq!(reservation(Some(5), &high(Some(m as u64)), V1), Some(m));
        assert_eq!(reservation(Some(5), &high(None), V1), Some(5));
        assert_eq!(reservation(None, &high(None), V1), None);
        // v2 (memory.low): held to `high`, none without it.
        assert_eq!(reservation(Some(5), &high(Some(m as u64)), V2), Some(5));
        assert_eq!(
            reservation(Some(1 << 40), &high(Some(m as u64)), V2),
            Some(m)
        );
        assert_eq!(reservation(Some(-1), &high(Some(m as u64)), V2), Some(m));
        assert_eq!(reservation(None, &high(Some(m as u64)), V2), None);
        assert_eq!(reservation(Some(1 << 40), &high(None), V2), None);
        // In the file: removed under `high: off` on v2.
        let mut v: Value = serde_json::from_str(
            r#"{"linux":{"resources":{"memory":{"limit":1,"reservation":1099511627776}}}}"#,
        )
        .unwrap();
        set_limits(&mut v, &high(None), V2).unwrap();
        assert!(
            v["linux"]["resources"]["memory"]
                .get("reservation")
                .is_none()
        );
        assert!(v["linux"]["resources"].get("unified").is_none());
    }

    #[test]
    fn creates_what_is_missing_and_spells_unlimited_as_minus_one() {
        let mut v: Value = serde_json::from_str(r#"{"ociVersion":"1.0.2","linux":null}"#).unwrap();
        let l = Limits {
            memory: Limit::Unlimited,
            swap: Limit::Unlimited,
            high: None,
        };
        set_limits(&mut v, &l, V1).unwrap();
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], -1);
        assert_eq!(v["linux"]["resources"]["memory"]["swap"], -1);
    }

    #[test]
    fn atomic_write_keeps_mode() {
        let dir = std::env::temp_dir().join(format!("cglimit-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.json");
        std::fs::write(&p, "{}").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomically(&p, b"{\"a\":1}").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":1}");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        // A symbolic link: replaced by a file with its target's mode; the
        // target is left as it was.
        let target = dir.join("target.json");
        std::fs::write(&target, "{}").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomically(&link, b"[]").unwrap();
        let m = std::fs::symlink_metadata(&link).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "[]");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "{}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// On tmpfs too (where containerd and dockerd keep bundles), and where
    /// there is nothing to replace yet.
    #[test]
    fn atomic_write_on_tmpfs_and_new_files() {
        for base in [std::path::PathBuf::from("/dev/shm"), std::env::temp_dir()] {
            if !base.is_dir() {
                continue;
            }
            let dir = base.join(format!("cglimit-spec-new-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let p = dir.join("config.json");
            write_atomically(&p, b"1").unwrap();
            write_atomically(&p, b"22").unwrap();
            assert_eq!(std::fs::read_to_string(&p).unwrap(), "22");
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
            // A directory in the way stays one: no exchange with it.
            let d = dir.join("sub");
            std::fs::create_dir(&d).unwrap();
            assert!(write_atomically(&d, b"x").is_err());
            assert!(d.is_dir());
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
