//! The watcher's discovery, on a thread of its own. Asking the engines,
//! running the runtimes' listings and listing the cgroup parents take from
//! milliseconds (ten thousand cgroups) to an engine's timeout; the loop
//! that turns an OOM notification into its event line does not wait
//! behind them. The loop asks ([`Discovery::ask`]), goes on, and takes what
//! was found when the thread's eventfd wakes it ([`Discovery::take`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::container::Place;
use crate::facts::Facts;
use crate::facts::discover::{self, Problem, SourceArgs};

/// What the loop asks for.
pub(super) struct Request {
    /// The runtimes' state directories changed (or a minute passed).
    pub(super) runtimes: bool,
    /// The `--cgroup-parent` directories are listed whole (once a minute,
    /// or their watches lost track): the cgroups there that `known` does
    /// not hold are opened.
    pub(super) parents: bool,
    pub(super) known: HashSet<String>,
    /// Cgroups made under a parent since, by parent and name (when the
    /// parents are not listed).
    pub(super) made: Vec<(String, String)>,
}

/// What the thread found.
pub(super) struct Found {
    /// New or known containers, each with its cgroup directory (closed:
    /// the loop arms them with the descriptors it has).
    pub(super) containers: Vec<(Place, Facts)>,
    pub(super) problems: Vec<Problem>,
    /// A runtime's container was still being created, or an engine or
    /// runtime could not be asked.
    pub(super) unsettled: bool,
    pub(super) runtimes: bool,
    /// A `--cgroup-parent` could not be listed whole.
    pub(super) parents_trouble: bool,
}

pub(super) struct Discovery {
    requests: Sender<Request>,
    results: Receiver<Found>,
    /// Written by the thread when it has found something; in the loop's
    /// epoll set.
    pub(super) ready: Arc<EventFd>,
    asked: bool,
}

impl Discovery {
    pub(super) fn start(sources: SourceArgs) -> std::io::Result<Discovery> {
        let ready = Arc::new(EventFd::from_value_and_flags(
            0,
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        let (requests, asks) = channel::<Request>();
        let (answers, results) = channel();
        let wake = Arc::clone(&ready);
        std::thread::Builder::new()
            .name("discovery".into())
            .spawn(move || {
                for r in asks {
                    if answers.send(find(&sources, r)).is_err() {
                        return;
                    }
                    let _ = wake.write(1);
                }
            })?;
        Ok(Discovery {
            requests,
            results,
            ready,
            asked: false,
        })
    }

    /// Whether an answer is still awaited.
    pub(super) fn busy(&self) -> bool {
        self.asked
    }

    pub(super) fn ask(&mut self, r: Request) {
        self.asked = self.requests.send(r).is_ok();
    }

    /// The answer, once the thread has given it.
    pub(super) fn take(&mut self) -> Option<Found> {
        let _ = self.ready.read();
        match self.results.try_recv() {
            Ok(found) => {
                self.asked = false;
                Some(found)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.asked = false;
                None
            }
        }
    }
}

fn find(sources: &SourceArgs, r: Request) -> Found {
    let mut problems = Vec::new();
    let mut unsettled = false;
    let known = |p: &str| r.known.contains(p);
    let mut found = discover::all_but(
        sources,
        &mut problems,
        &known,
        r.runtimes,
        false,
        &mut unsettled,
    );
    unsettled |= !problems.is_empty();
    let mut parents_trouble = false;
    if r.parents {
        let mut trouble = Vec::new();
        found.extend(discover::under_parents(sources, &mut trouble, &known));
        parents_trouble = !trouble.is_empty();
        problems.extend(trouble);
    }
    // Each parent opened once for the names made under it.
    let mut made = r.made;
    made.sort();
    for same in made.chunk_by(|a, b| a.0 == b.0) {
        let names = same.iter().map(|(_, n)| n.clone()).collect();
        found.extend(discover::named_under_parent(
            &same[0].0,
            names,
            &mut problems,
        ));
    }
    // Each directory is closed here, as it is turned into a place.
    let containers = found
        .into_iter()
        .map(|t| (Place::of(&t.dir), t.facts))
        .collect();
    Found {
        containers,
        problems,
        unsettled,
        runtimes: r.runtimes,
        parents_trouble,
    }
}
