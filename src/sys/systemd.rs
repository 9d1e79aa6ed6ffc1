//! systemd's side of a container's cgroup: when the cgroup is a systemd
//! unit's, the decided limits also become the unit's properties.
//!
//! On the systemd cgroup driver (Docker on a systemd host, `runc
//! --systemd-cgroup`, crun's systemd manager) a container's cgroup is a
//! transient scope, and systemd re-applies its own idea of the unit's
//! limits on every `systemctl daemon-reload` and `daemon-reexec`: a value
//! written straight into `memory.max` returns to the unit's `MemoryMax=`,
//! `memory.swap.max` and `memory.high` to `max`. Limits set as unit
//! properties at runtime (`SetUnitProperties`, runtime only, nothing
//! written under /etc) are what systemd re-applies instead, as runc's own
//! systemd driver does.
//!
//! Only a cgroup whose last component names a scope or service is
//! considered, and systemd itself must say that the container's process
//! belongs to that unit (`GetUnitByPID`) before anything is set; any other
//! cgroup never opens a D-Bus connection. The whole exchange is bounded:
//! systemd busy in a reexec must not hold a container's start.

use std::sync::mpsc;
use std::time::Duration;

use crate::size::Limit;
use crate::size::Limits;

/// How long the exchange with systemd may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The unit a cgroup path names: its last component when that is a scope
/// or a service (`docker-<id>.scope`, `libpod-<id>.scope`,
/// `cri-containerd-<id>.scope`, runc's `<prefix>-<name>.scope`).
pub fn unit_of(cgroup_path: &str) -> Option<&str> {
    let last = cgroup_path.trim_end_matches('/').rsplit('/').next()?;
    let stem = last
        .strip_suffix(".scope")
        .or_else(|| last.strip_suffix(".service"))?;
    (!stem.is_empty() && !stem.contains(char::is_whitespace)).then_some(last)
}

/// The unit properties that hold `limits`: on v2 `MemoryMax`,
/// `MemorySwapMax` (swap on top of memory, only where swap is accounted)
/// and `MemoryHigh`; on a v1 host `MemoryLimit`, systemd's only memory
/// property there. `u64::MAX` is systemd's "infinity".
pub fn properties(limits: &Limits, unified: bool, swap: bool) -> Vec<(&'static str, u64)> {
    let bytes = |l: Limit| match l {
        Limit::Bytes(b) => b,
        Limit::Unlimited => u64::MAX,
    };
    if !unified {
        return vec![("MemoryLimit", bytes(limits.memory))];
    }
    let mut p = vec![("MemoryMax", bytes(limits.memory))];
    if swap {
        p.push(("MemorySwapMax", bytes(crate::cgroup::swap_max_v2(limits))));
    }
    p.push(("MemoryHigh", bytes(limits.high.unwrap_or(Limit::Unlimited))));
    p
}

/// Why the limits could not be made the unit's.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The system bus or systemd could not be reached.
    #[error("cannot reach systemd: {0}")]
    Unreachable(#[source] zbus::Error),
    /// No thread to wait on systemd with.
    #[error("cannot reach systemd: {0}")]
    NoThread(#[source] std::io::Error),
    /// systemd puts the process in another unit (or none): the cgroup only
    /// looks like a unit's.
    #[error("systemd does not place the container in {unit} ({found})")]
    OtherUnit { unit: String, found: String },
    /// systemd refused the properties.
    #[error("systemd refused the unit's properties: {0}")]
    Refused(#[source] zbus::Error),
    /// No answer within the bound.
    #[error("systemd did not answer within {0:?}")]
    Timeout(Duration),
}

/// Makes `properties` the runtime properties of `unit`, after systemd
/// confirmed that `pid` is in it; gives up after `timeout`.
pub fn persist(
    unit: &str,
    pid: i32,
    properties: Vec<(&'static str, u64)>,
    timeout: Duration,
) -> Result<(), PersistError> {
    let (tx, rx) = mpsc::channel();
    let unit_owned = unit.to_string();
    // A thread, so the bound holds whatever the D-Bus library does while
    // connecting; one left behind ends with the process.
    std::thread::Builder::new()
        .name("systemd".into())
        .spawn(move || {
            let _ = tx.send(exchange(&unit_owned, pid, &properties, timeout));
        })
        .map_err(PersistError::NoThread)?;
    rx.recv_timeout(timeout)
        .unwrap_or(Err(PersistError::Timeout(timeout)))
}

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

fn exchange(
    unit: &str,
    pid: i32,
    properties: &[(&'static str, u64)],
    timeout: Duration,
) -> Result<(), PersistError> {
    let unreachable = PersistError::Unreachable;
    let conn = zbus::blocking::connection::Builder::system()
        .and_then(|b| b.method_timeout(timeout).build())
        .map_err(unreachable)?;
    let reply = conn
        .call_method(
            Some(DEST),
            PATH,
            Some(MANAGER),
            "GetUnitByPID",
            &(pid as u32),
        )
        .map_err(|e| PersistError::OtherUnit {
            unit: unit.to_string(),
            found: e.to_string(),
        })?;
    let found: zbus::zvariant::OwnedObjectPath = reply.body().deserialize().map_err(unreachable)?;
    if found.as_str() != object_path(unit) {
        return Err(PersistError::OtherUnit {
            unit: unit.to_string(),
            found: found.as_str().to_string(),
        });
    }
    let props: Vec<(&str, zbus::zvariant::Value)> = properties
        .iter()
        .map(|(k, v)| (*k, zbus::zvariant::Value::U64(*v)))
        .collect();
    conn.call_method(
        Some(DEST),
        PATH,
        Some(MANAGER),
        "SetUnitProperties",
        &(unit, true, props),
    )
    .map_err(PersistError::Refused)?;
    Ok(())
}

/// The object path systemd gives a unit: each byte outside `[A-Za-z0-9]`
/// escaped as `_xx` (systemd's `bus_label_escape`).
pub fn object_path(unit: &str) -> String {
    let mut p = String::from("/org/freedesktop/systemd1/unit/");
    for b in unit.bytes() {
        if b.is_ascii_alphanumeric() {
            p.push(b as char);
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}

/// The decided limits as a systemd unit's properties: set, or why not.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Persistence {
    pub unit: String,
    pub persisted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_from_cgroup_paths() {
        assert_eq!(
            unit_of("/system.slice/docker-3f2a.scope"),
            Some("docker-3f2a.scope")
        );
        assert_eq!(
            unit_of("/kubepods.slice/kubepods-pod1.slice/cri-containerd-9.scope"),
            Some("cri-containerd-9.scope")
        );
        assert_eq!(unit_of("/system.slice/foo.service"), Some("foo.service"));
        // podman's delegated leaf, cgroupfs paths, slices, the root: none.
        assert_eq!(unit_of("/machine.slice/libpod-1.scope/container"), None);
        assert_eq!(unit_of("/docker/3f2a"), None);
        assert_eq!(unit_of("/kubepods.slice"), None);
        assert_eq!(unit_of("/"), None);
        assert_eq!(unit_of("/x/.scope"), None);
    }

    #[test]
    fn object_paths_escape_as_systemd_does() {
        assert_eq!(
            object_path("docker-3f2a.scope"),
            "/org/freedesktop/systemd1/unit/docker_2d3f2a_2escope"
        );
        assert_eq!(
            object_path("a_b@c.service"),
            "/org/freedesktop/systemd1/unit/a_5fb_40c_2eservice"
        );
    }

    #[test]
    fn properties_per_hierarchy() {
        let m = 64u64 << 20;
        let l = Limits {
            memory: Limit::Bytes(m),
            swap: Limit::Bytes(0),
            high: Some(Limit::Bytes(m / 2)),
        };
        assert_eq!(
            properties(&l, true, true),
            [
                ("MemoryMax", m),
                ("MemorySwapMax", 0),
                ("MemoryHigh", m / 2)
            ]
        );
        assert_eq!(
            properties(&l, true, false),
            [("MemoryMax", m), ("MemoryHigh", m / 2)]
        );
        assert_eq!(properties(&l, false, true), [("MemoryLimit", m)]);
        let open = Limits {
            memory: Limit::Bytes(m),
            swap: Limit::Unlimited,
            high: None,
        };
        assert_eq!(
            properties(&open, true, true),
            [
                ("MemoryMax", m),
                ("MemorySwapMax", u64::MAX),
                ("MemoryHigh", u64::MAX)
            ]
        );
    }
}
