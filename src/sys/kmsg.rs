//! The kernel's OOM reports, read from the kernel log (`/dev/kmsg`, or the
//! journal's copy of it): who the kernel killed in which memory cgroup,
//! with the victim's memory and the task list it printed. One reader per
//! watcher, from the watcher's start on: a report is read once, and not
//! again after a restart.
//!
//! A memcg OOM kill prints, in order: the task list (when
//! `vm.oom_dump_tasks` is 1, the default) under a header naming its
//! columns, the summary line `oom-kill:constraint=…,oom_memcg=…,
//! task_memcg=…,task=…,pid=…,uid=…`, and `Memory cgroup out of memory:
//! Killed process PID (COMM) total-vm:…kB, anon-rss:…kB, file-rss:…kB,
//! shmem-rss:…kB, …`. The last line completes a report.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};

/// One OOM kill as the kernel reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomReport {
    /// The memory cgroup that ran out (a path in its hierarchy).
    pub oom_memcg: String,
    /// The victim's memory cgroup.
    pub task_memcg: String,
    pub victim: Victim,
    /// The largest processes of the task list, by RSS (bytes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<Task>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Victim {
    pub pid: i32,
    pub comm: String,
    /// Bytes.
    pub anon_rss: u64,
    pub file_rss: u64,
    pub shmem_rss: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub pid: i32,
    pub comm: String,
    /// Bytes.
    pub rss: u64,
}

/// At most this many tasks are kept of a report's list.
const TASKS_KEPT: usize = 5;

/// Puts a report together from the kernel log's messages, one at a time.
#[derive(Default)]
pub struct Assembler {
    /// The task list's column names, while one is being read.
    columns: Option<Vec<String>>,
    tasks: Vec<Task>,
    summary: Option<(String, String, i32)>,
}

impl Assembler {
    /// Takes one message (the text after the record's `;`); a whole
    /// report when this message completes one.
    pub fn push(&mut self, message: &str) -> Option<OomReport> {
        let m = message.trim_end();
        if m.starts_with("Tasks state (memory values in pages)") {
            self.columns = None;
            self.tasks.clear();
            return None;
        }
        if let Some(header) = m.strip_prefix("[  pid  ]") {
            let mut cols = vec!["pid".to_string()];
            cols.extend(header.split_whitespace().map(String::from));
            self.columns = Some(cols);
            return None;
        }
        if let (Some(cols), Some(rest)) = (&self.columns, m.strip_prefix('[')) {
            if let Some(t) = task_line(cols, rest) {
                self.tasks.push(t);
            }
            return None;
        }
        if let Some(kv) = m.strip_prefix("oom-kill:") {
            self.columns = None;
            let field = |k: &str| {
                kv.split(',')
                    .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
                    .unwrap_or_default()
                    .to_string()
            };
            let pid = field("pid").parse().unwrap_or(0);
            self.summary = Some((field("oom_memcg"), field("task_memcg"), pid));
            return None;
        }
        let killed = m
            .strip_prefix("Memory cgroup out of memory: Killed process ")
            .or_else(|| m.strip_prefix("Out of memory: Killed process "))?;
        let victim = killed_line(killed)?;
        let (oom_memcg, task_memcg, pid) = self.summary.take().unwrap_or_default();
        if pid != 0 && pid != victim.pid {
            return None;
        }
        let mut tasks = std::mem::take(&mut self.tasks);
        tasks.sort_by_key(|t| std::cmp::Reverse(t.rss));
        tasks.truncate(TASKS_KEPT);
        self.columns = None;
        Some(OomReport {
            oom_memcg,
            task_memcg,
            victim,
            tasks,
        })
    }
}

fn page_size() -> u64 {
    crate::size::PAGE_SIZE
}

/// `[  pid]   uid  tgid total_vm      rss … name` (the leading `[` gone).
fn task_line(cols: &[String], rest: &str) -> Option<Task> {
    let (pid, fields) = rest.split_once(']')?;
    let values: Vec<&str> = fields.split_whitespace().collect();
    // The columns after pid, the last being the name.
    let named = &cols[1..];
    if values.len() < named.len() {
        return None;
    }
    let at = |name: &str| named.iter().position(|c| c == name).map(|i| values[i]);
    Some(Task {
        pid: pid.trim().parse().ok()?,
        comm: values[named.len() - 1..].join(" "),
        rss: at("rss")?.parse::<u64>().ok()? * page_size(),
    })
}

/// `PID (COMM) total-vm:NkB, anon-rss:NkB, file-rss:NkB, shmem-rss:NkB, …`
fn killed_line(s: &str) -> Option<Victim> {
    let (pid, rest) = s.split_once(" (")?;
    let close = rest.rfind(") total-vm:").or_else(|| rest.rfind(')'))?;
    let comm = &rest[..close];
    let fields = &rest[close + 1..];
    let kb = |k: &str| -> u64 {
        fields
            .split(|c: char| c == ',' || c.is_whitespace())
            .find_map(|f| f.strip_prefix(k)?.strip_prefix(':'))
            .and_then(|v| v.trim_end_matches("kB").parse::<u64>().ok())
            .map_or(0, |v| v * 1024)
    };
    Some(Victim {
        pid: pid.trim().parse().ok()?,
        comm: comm.to_string(),
        anon_rss: kb("anon-rss"),
        file_rss: kb("file-rss"),
        shmem_rss: kb("shmem-rss"),
    })
}

/// The message of a `/dev/kmsg` record (`PRI,SEQ,USEC,FLAGS;TEXT`, then
/// dictionary lines starting with a space), with the kernel's `\xNN`
/// escapes left as they are.
pub fn message(record: &str) -> Option<&str> {
    let (_, rest) = record.split_once(';')?;
    Some(rest.split('\n').next().unwrap_or(rest))
}

/// The kernel log, read from the watcher's start on: `/dev/kmsg` where it
/// may be read, else the journal's copy of it (`journalctl --follow _TRANSPORT=kernel`),
/// which a service without `CAP_SYSLOG` may read (the shipped unit).
pub struct KernelLog {
    source: Source,
    assembler: Assembler,
    /// Why nothing more will come (journalctl ended).
    ended: Option<String>,
}

enum Source {
    Kmsg(File),
    Journal {
        child: std::process::Child,
        out: std::process::ChildStdout,
        /// What journalctl says when it ends.
        err: std::process::ChildStderr,
        /// A line not yet whole.
        partial: Vec<u8>,
    },
}

impl Drop for KernelLog {
    fn drop(&mut self) {
        if let Source::Journal { child, .. } = &mut self.source {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Why neither the kernel log nor the journal could be read.
#[derive(Debug, thiserror::Error)]
#[error("/dev/kmsg: {kmsg}; journalctl: {journal}")]
pub struct Unreadable {
    pub kmsg: std::io::Error,
    pub journal: std::io::Error,
}

impl KernelLog {
    /// Opens `/dev/kmsg` after its last record, or, where it may not be
    /// read (no `CAP_SYSLOG` under `kernel.dmesg_restrict`, or no such
    /// device), follows the journal's kernel messages from now on.
    pub fn open() -> Result<KernelLog, Unreadable> {
        let source = match open_kmsg() {
            Ok(f) => Source::Kmsg(f),
            Err(kmsg) => follow_journal().map_err(|journal| Unreadable { kmsg, journal })?,
        };
        Ok(KernelLog {
            source,
            assembler: Assembler::default(),
            ended: None,
        })
    }

    /// How long a report may take to arrive after the kill is counted:
    /// the journal passes it on through journald.
    pub fn lag(&self) -> std::time::Duration {
        match self.source {
            Source::Kmsg(_) => std::time::Duration::from_millis(20),
            Source::Journal { .. } => std::time::Duration::from_secs(5),
        }
    }

    /// Why nothing more will come from it, once that is so.
    pub fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// What is read: `/dev/kmsg` or `the journal`.
    pub fn name(&self) -> &'static str {
        match self.source {
            Source::Kmsg(_) => "/dev/kmsg",
            Source::Journal { .. } => "the journal",
        }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match &self.source {
            Source::Kmsg(f) => f.as_fd(),
            Source::Journal { out, .. } => out.as_fd(),
        }
    }

    /// The reports completed by the messages logged since the last call.
    pub fn read(&mut self) -> Vec<OomReport> {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        match &mut self.source {
            Source::Kmsg(file) => loop {
                match (&*file).read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]);
                        if let Some(r) = message(&text).and_then(|m| self.assembler.push(m)) {
                            out.push(r);
                        }
                    }
                    // Records overwritten before they were read: go on.
                    Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
                    Err(_) => break,
                }
            },
            Source::Journal {
                child,
                out: pipe,
                err,
                partial,
            } => loop {
                match pipe.read(&mut buf) {
                    Ok(0) => {
                        let status = child
                            .wait()
                            .map_or_else(|e| e.to_string(), |s| s.to_string());
                        let mut said = String::new();
                        let _ = err.read_to_string(&mut said);
                        self.ended = Some(format!("journalctl ended ({status}): {}", said.trim()));
                        break;
                    }
                    Ok(n) => {
                        partial.extend_from_slice(&buf[..n]);
                        while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = partial.drain(..=i).collect();
                            let text = String::from_utf8_lossy(&line);
                            if let Some(r) = self.assembler.push(&text) {
                                out.push(r);
                            }
                        }
                    }
                    Err(_) => break,
                }
            },
        }
        out
    }
}

fn open_kmsg() -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open("/dev/kmsg")?;
    nix::unistd::lseek(&file, 0, nix::unistd::Whence::SeekEnd)?;
    // The open may succeed where reading is refused: try one read.
    let mut buf = [0u8; 8192];
    match (&file).read(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(e),
        _ => Ok(file),
    }
}

/// `journalctl --follow --lines=0 --merge --output=cat _TRANSPORT=kernel`:
/// the kernel's messages from now on, one a line, read without blocking.
/// `--merge`, because journalctl otherwise asks for the current boot's id,
/// in /proc/sys, which a service with `ProcSubset=pid` does not see
/// ("Failed to get boot id").
fn follow_journal() -> std::io::Result<Source> {
    let mut child = std::process::Command::new("journalctl")
        .args([
            "--follow",
            "--lines=0",
            "--merge",
            "--output=cat",
            "--no-pager",
            "_TRANSPORT=kernel",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
    let mut err = child.stderr.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    if let Err(e) = fcntl(&out, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e.into());
    }
    // journalctl that cannot read the journal exits at once.
    std::thread::sleep(std::time::Duration::from_millis(50));
    if let Some(st) = child.try_wait()? {
        let mut said = String::new();
        let _ = err.read_to_string(&mut said);
        return Err(std::io::Error::other(format!(
            "exited ({st}): {}",
            said.trim()
        )));
    }
    Ok(Source::Journal {
        child,
        out,
        err,
        partial: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As a 6.x kernel logs a memcg OOM kill (trimmed of the stack trace).
    const REPORT: &[&str] = &[
        "6,1,1,-;dd invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        "6,2,1,-;memory: usage 65536kB, limit 65536kB, failcnt 0",
        "6,3,1,-;Tasks state (memory values in pages):",
        "6,4,1,-;[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name",
        "6,5,1,-;[  16230]     0 16230      335       96        0       96         0    49152        0             0 sh",
        "6,6,1,-;[  16241]     0 16241    17000    16100    16000      100         0   176128        0             0 dd",
        "6,7,1,-;[  16242]     0 16242     1000      500      400      100         0    49152        0             0 my worker",
        "6,8,1,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/docker/abc,task_memcg=/docker/abc,task=dd,pid=16241,uid=0",
        "3,9,1,-;Memory cgroup out of memory: Killed process 16241 (dd) total-vm:68000kB, anon-rss:64000kB, file-rss:400kB, shmem-rss:0kB, UID:0 pgtables:172kB oom_score_adj:0",
    ];

    #[test]
    fn a_memcg_report_is_read_whole() {
        let mut a = Assembler::default();
        let mut got = None;
        for r in REPORT {
            if let Some(rep) = a.push(message(r).unwrap()) {
                got = Some(rep);
            }
        }
        let r = got.expect("a report");
        assert_eq!(r.oom_memcg, "/docker/abc");
        assert_eq!(r.task_memcg, "/docker/abc");
        assert_eq!(
            r.victim,
            Victim {
                pid: 16241,
                comm: "dd".into(),
                anon_rss: 64000 * 1024,
                file_rss: 400 * 1024,
                shmem_rss: 0,
            }
        );
        assert_eq!(r.tasks.len(), 3);
        assert_eq!((r.tasks[0].pid, r.tasks[0].rss), (16241, 16100 * 4096));
        assert_eq!(r.tasks[1].comm, "my worker");
    }

    #[test]
    fn an_older_kernels_columns_and_a_global_oom_read_too() {
        let mut a = Assembler::default();
        for m in [
            "Tasks state (memory values in pages):",
            "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
            "[    321]     0   321     5000     4000    49152        0             0 python3",
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/k,task=python3,pid=321,uid=0",
        ] {
            assert_eq!(a.push(m), None);
        }
        let r = a
            .push("Out of memory: Killed process 321 (python3) total-vm:20000kB, anon-rss:16000kB, file-rss:0kB, shmem-rss:12kB, UID:0 pgtables:48kB oom_score_adj:0")
            .unwrap();
        assert_eq!((r.victim.pid, r.victim.shmem_rss), (321, 12 * 1024));
        assert_eq!(r.task_memcg, "/k");
        assert_eq!(r.tasks[0].rss, 4000 * 4096);
        // Lines of other kinds complete nothing.
        assert_eq!(a.push("eth0: link up"), None);
        assert_eq!(a.push("Killed process x"), None);
    }
}
