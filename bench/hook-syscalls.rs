//! The hook's system calls and nothing else: a second floor for
//! `bench/hook-alone.sh`. It makes, in order, the calls a hook run makes
//! (`strace` of `cglimit hook` with 1,000 policies, the policy cache warm,
//! nothing to write) on the same files, with no parsing, no decision and
//! no formatting. What it costs over the static no-op floor is what the
//! kernel charges for the work the hook must do; the hook's cost over it
//! is cglimit's own code.
//!
//! Arguments: PID CGROUP_MOUNT CGROUP_REL POLICY_DIR POLICY_FILE CACHE_FILE
//! CONFIG_JSON [LEAVE_OUT]; the OCI state on stdin. LEAVE_OUT names groups
//! of calls, comma-separated, that are not made (each call of the group
//! returns -1 instead), so that `bench/hook-alone.sh` can tell what each
//! group costs: `guards` (privileges and the two timers), `state` (stdin
//! and config.json), `process` (pidfd, /proc/PID/cgroup), `cgroupfs` (the
//! cgroup's directory, its process list and limit files), `policies` (the
//! policy directory's checks and listing), `cache` (the policy cache's
//! mapping), `log` (the log line).

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};

extern "C" {
    fn syscall(n: i64, ...) -> i64;
}

/// Whether the calls of the current group are made.
static ON: AtomicBool = AtomicBool::new(true);

/// A system call, made only while its group is on.
macro_rules! call {
    ($($a:expr),* $(,)?) => {
        if ON.load(Ordering::Relaxed) { syscall($($a),*) } else { -1 }
    };
}

const READ: i64 = 0;
const WRITE: i64 = 1;
const CLOSE: i64 = 3;
const STAT: i64 = 4;
const FSTAT: i64 = 5;
const LSTAT: i64 = 6;
const POLL: i64 = 7;
const MMAP: i64 = 9;
const RT_SIGACTION: i64 = 13;
const SETITIMER: i64 = 38;
const GETPID: i64 = 39;
const GETEUID: i64 = 107;
const CAPGET: i64 = 125;
const CAPSET: i64 = 126;
const PRCTL: i64 = 157;
const FSTATFS: i64 = 138;
const GETDENTS64: i64 = 217;
const TIMER_CREATE: i64 = 222;
const TIMER_SETTIME: i64 = 223;
const OPENAT: i64 = 257;
const GETRANDOM: i64 = 318;
const PIDFD_OPEN: i64 = 434;
const OPENAT2: i64 = 437;

const O_RDONLY: i64 = 0;
const O_CLOEXEC: i64 = 0o2000000;
const O_PATH: i64 = 0o10000000;
const O_DIRECTORY: i64 = 0o200000;
const O_NOFOLLOW: i64 = 0o400000;
const O_NONBLOCK: i64 = 0o4000;
const AT_FDCWD: i64 = -100;
const RESOLVE_BENEATH: u64 = 0x08;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_NO_XDEV: u64 = 0x01;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

unsafe fn openat2(dir: i64, path: &CString, flags: i64, resolve: u64) -> i64 {
    let how = OpenHow {
        flags: (flags | O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    unsafe {
        call!(
            OPENAT2,
            dir,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    }
}

/// Reads a `memory.*` file as the hook does: one read (a short read of
/// one kernel record is its end).
unsafe fn read_record(fd: i64, buf: &mut [u8]) {
    unsafe {
        call!(READ, fd, buf.as_mut_ptr(), buf.len());
    }
}

/// Reads to the end as the hook does: a read, then one that returns 0.
unsafe fn read_all(fd: i64, buf: &mut [u8]) {
    unsafe {
        let n = call!(READ, fd, buf.as_mut_ptr(), buf.len());
        if n > 0 {
            call!(READ, fd, buf.as_mut_ptr(), buf.len() - n as usize);
        }
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let pid: i64 = a[1].parse().unwrap();
    let (mount, rel, dir, file, cache, config) = (
        c(&a[2]),
        c(&a[3]),
        c(&a[4]),
        c(&a[5]),
        c(&a[6]),
        c(&a[7]),
    );
    let leave_out: Vec<String> = a.get(8).map_or(vec![], |g| g.split(',').map(String::from).collect());
    let group = |g: &str| ON.store(!leave_out.iter().any(|o| o == g), Ordering::Relaxed);
    let mut buf = [0u8; 4096];
    let mut st = [0u8; 256];
    let cg = RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH;
    unsafe {
        group("guards");
        call!(PRCTL, 47, 4, 0, 0, 0); // PR_CAP_AMBIENT_CLEAR_ALL
        let mut hdr = [0x20080522u32, 0];
        let mut data = [0u32; 6];
        call!(CAPGET, hdr.as_mut_ptr(), data.as_mut_ptr());
        call!(CAPSET, hdr.as_mut_ptr(), data.as_mut_ptr());
        call!(PRCTL, 38, 1, 0, 0, 0); // PR_SET_NO_NEW_PRIVS
        let act = [0u64; 4];
        call!(RT_SIGACTION, 14, std::ptr::null::<u64>(), act.as_ptr(), 8);
        let itv = [0i64, 0, 5, 0];
        call!(SETITIMER, 0, itv.as_ptr(), 0);
        let mut sev = [0u8; 64];
        sev[8] = 9; // SIGKILL
        let mut timer = 0i32;
        call!(TIMER_CREATE, 1, sev.as_mut_ptr(), &mut timer as *mut i32);
        let its = [0i64, 0, 5, 250_000_000];
        call!(TIMER_SETTIME, timer, 0, its.as_ptr(), 0);
        group("state");
        read_all(0, &mut buf);
        let fd = call!(OPENAT, AT_FDCWD, config.as_ptr(), O_RDONLY | O_CLOEXEC);
        call!(FSTAT, fd, st.as_mut_ptr());
        read_all(fd, &mut buf);
        call!(CLOSE, fd);
        group("process");
        let pidfd = call!(PIDFD_OPEN, pid, 0);
        let proc_cgroup = c(&format!("/proc/{pid}/cgroup"));
        let fd = call!(OPENAT, AT_FDCWD, proc_cgroup.as_ptr(), O_RDONLY | O_CLOEXEC);
        read_all(fd, &mut buf);
        call!(CLOSE, fd);
        let mut pfd = [pidfd as i32, 1, 0];
        call!(POLL, pfd.as_mut_ptr(), 1, 0);
        group("cgroupfs");
        let root = call!(
            OPENAT,
            AT_FDCWD,
            mount.as_ptr(),
            O_RDONLY | O_CLOEXEC | O_PATH | O_DIRECTORY,
        );
        let cgdir = openat2(root, &rel, O_RDONLY | O_PATH | O_DIRECTORY | O_NOFOLLOW, cg);
        call!(FSTATFS, cgdir, st.as_mut_ptr());
        call!(CLOSE, root);
        let limit = c("memory.limit_in_bytes");
        let fd = openat2(cgdir, &limit, O_RDONLY | O_PATH | O_NOFOLLOW, cg);
        call!(CLOSE, fd);
        let fd = openat2(cgdir, &c("cgroup.procs"), O_RDONLY | O_NOFOLLOW, cg);
        read_all(fd, &mut buf);
        call!(CLOSE, fd);
        group("process");
        call!(CLOSE, pidfd);
        group("policies");
        call!(GETEUID);
        call!(GETEUID);
        let mut rnd = [0u8; 16];
        call!(GETRANDOM, rnd.as_mut_ptr(), 16, 4);
        call!(STAT, c("/").as_ptr(), st.as_mut_ptr());
        let d = a[4].as_str();
        let mut at = 0;
        while let Some(i) = d[at + 1..].find('/') {
            at += i + 1;
            call!(LSTAT, c(&d[..at]).as_ptr(), st.as_mut_ptr());
        }
        call!(LSTAT, dir.as_ptr(), st.as_mut_ptr());
        let dfd = openat2(
            AT_FDCWD,
            &dir,
            O_RDONLY | O_NONBLOCK | O_NOFOLLOW,
            RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS,
        );
        call!(FSTAT, dfd, st.as_mut_ptr());
        openat2(
            dfd,
            &c("..data"),
            O_RDONLY | O_DIRECTORY,
            RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH,
        );
        while call!(GETDENTS64, dfd, buf.as_mut_ptr(), buf.len()) > 0 {}
        let pf = openat2(
            dfd,
            &file,
            O_RDONLY | O_NONBLOCK,
            RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH,
        );
        call!(FSTAT, pf, st.as_mut_ptr());
        call!(CLOSE, dfd);
        group("cache");
        let cf = call!(OPENAT, AT_FDCWD, cache.as_ptr(), O_RDONLY | O_CLOEXEC);
        call!(FSTAT, cf, st.as_mut_ptr());
        call!(GETEUID);
        let size = i64::from_ne_bytes(st[48..56].try_into().unwrap());
        let map = call!(MMAP, 0, size, 1, 2, cf, 0) as *const u8;
        call!(CLOSE, cf);
        group("policies");
        call!(CLOSE, pf);
        group("cache");
        // The hook reads the cache's header, index and a few records.
        let mut sum = 0u8;
        for off in if map as i64 > 0 { vec![0, size as usize / 2, size as usize - 1] } else { vec![] } {
            sum = sum.wrapping_add(std::ptr::read_volatile(map.add(off)));
        }
        std::hint::black_box(sum);
        group("guards");
        call!(TIMER_SETTIME, timer, 0, [0i64; 4].as_ptr(), 0);
        // The limits, before the decision is applied.
        group("cgroupfs");
        for f in [
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.kmem.tcp.limit_in_bytes",
        ] {
            let fd = openat2(cgdir, &c(f), O_RDONLY | O_NOFOLLOW, cg);
            read_record(fd, &mut buf);
            call!(CLOSE, fd);
        }
        call!(CLOSE, cgdir);
        group("log");
        call!(GETPID);
        let mut line = [b'x'; 179];
        line[178] = b'\n';
        call!(WRITE, 2, line.as_ptr(), line.len());
    }
}
