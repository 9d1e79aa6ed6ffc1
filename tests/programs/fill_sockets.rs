//! Queues as much as it can in the send and receive buffers of N loopback
//! connections that nobody reads (stopping at CAP bytes), and prints how
//! much the kernel took: `fill_sockets N CAP` prints `queued BYTES` (and on
//! cgroup v2 the cgroup's `sock` line of `memory.stat`, while they are held). Built
//! static by the tests (tests/escapes.rs, tests/v2vm/run.sh) and run inside
//! a container.
use std::io::Write;
use std::net::{TcpListener, TcpStream};
fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (n, cap) = (a[0], a[1]);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let buf = vec![7u8; 1 << 16];
    let (mut total, mut held) = (0usize, Vec::new());
    for _ in 0..n {
        let Ok(mut c) = TcpStream::connect(addr) else { break };
        let s = l.accept().unwrap().0;
        c.set_nonblocking(true).unwrap();
        while total < cap {
            match c.write(&buf) {
                Ok(k) => total += k,
                Err(_) => break,
            }
        }
        held.push((c, s));
    }
    println!("queued {total}");
    // v2 counts socket buffers in the cgroup's memory: say how much.
    if let Ok(stat) = std::fs::read_to_string("/sys/fs/cgroup/memory.stat") {
        if let Some(l) = stat.lines().find(|l| l.starts_with("sock ")) {
            println!("{l}");
        }
    }
}
