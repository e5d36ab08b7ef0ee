//! Loads of one session id within a process share store reads, and each load is answered by
//! a read sent after it began (read-your-writes holds).
//!
//! A read that is held up mid-flight is a fault a real store cannot be made to produce on cue,
//! so a small decorator over the memory driver holds each `load` until the test lets it go.
//! A current-thread runtime makes the interleavings deterministic.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use cgi_session_core::{
    async_trait, Driver, DriverError, Error, Loaded, MemoryDriver, SessionId, SessionStore,
};
use common::{Hooks, Scripted};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Holds the answer of every `load` until the test releases it (one permit per read); can
/// fail reads.
#[derive(Debug)]
struct HeldReads {
    permits: Semaphore,
    /// `load` calls that reached the driver.
    arrived: AtomicUsize,
    fail: AtomicBool,
}

impl HeldReads {
    fn over(memory: MemoryDriver) -> Arc<Scripted<Self>> {
        Scripted::over(
            memory,
            Self {
                permits: Semaphore::new(0),
                arrived: AtomicUsize::new(0),
                fail: AtomicBool::new(false),
            },
        )
    }
    fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }
    fn release_one(&self) {
        self.permits.add_permits(1);
    }
}

#[async_trait]
impl Hooks for HeldReads {
    const NAME: &'static str = "held-reads";

    async fn load(
        &self,
        memory: &MemoryDriver,
        id: &SessionId,
        touch: Option<Duration>,
    ) -> Result<Option<Loaded>, DriverError> {
        // The store answers at once; the answer is held on its way back.
        let found = memory.load(id, touch).await;
        self.arrived.fetch_add(1, Ordering::SeqCst);
        self.permits.acquire().await.expect("never closed").forget();
        if self.fail.load(Ordering::SeqCst) {
            return Err(DriverError::Unavailable {
                driver: Self::NAME,
                source: "connection refused (scripted)".into(),
            });
        }
        found
    }
}

struct Fixture {
    memory: MemoryDriver,
    held: Arc<Scripted<HeldReads>>,
    store: SessionStore,
    id: String,
}

/// A store over held reads, with one session stored (`n = 0`).
async fn fixture() -> Fixture {
    let memory = MemoryDriver::new();
    let held = HeldReads::over(memory.clone());
    let store = SessionStore::builder_dyn(held.clone()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("n", &0u64).unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    Fixture {
        memory,
        held,
        store,
        id,
    }
}

/// Loads the session and returns its `n` (`None`: no session found).
async fn load_n(store: SessionStore, id: String) -> Result<Option<u64>, Error> {
    let s = store.load(Some(&id), None).await?;
    if s.is_new() {
        return Ok(None);
    }
    s.get::<u64>("n")
}

/// A request that loads the session and returns its `n`.
fn read_n(f: &Fixture) -> JoinHandle<Result<Option<u64>, Error>> {
    tokio::spawn(load_n(f.store.clone(), f.id.clone()))
}

/// Like `read_n`, but once `cancel` is set the request is dropped the next time it is woken,
/// without running again (a request cancelled right after something woke it).
fn read_n_cancelled_on_wake(
    f: &Fixture,
    cancel: Arc<AtomicBool>,
) -> JoinHandle<Option<Result<Option<u64>, Error>>> {
    let mut load = Box::pin(load_n(f.store.clone(), f.id.clone()));
    tokio::spawn(std::future::poll_fn(move |cx| {
        if cancel.load(Ordering::SeqCst) {
            return Poll::Ready(None);
        }
        load.as_mut().poll(cx).map(Some)
    }))
}

/// Lets spawned tasks run until `done` holds (each step yields to them); gives up loudly.
async fn run_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(flavor = "current_thread")]
async fn loads_that_arrive_during_a_read_share_the_next_one_and_see_writes_before_it() {
    let f = fixture().await;
    let (store, held) = (f.store.clone(), f.held.clone());
    // A's read is on the wire...
    let a = read_n(&f);
    run_until("A's read reaches the store", || held.arrived() == 1).await;
    // ...B and C arrive and wait for the next read.
    let b = read_n(&f);
    let c = read_n(&f);
    run_until("B and C load", || store.stats().loads == 3).await;
    // Another process writes n = 7 while A's read is still in flight.
    let other = SessionStore::builder(f.memory.clone()).build();
    other.update(&f.id, |s| s.set("n", &7u64)).await.unwrap();
    // D begins after that write completed: it must see it.
    let d = read_n(&f);
    run_until("D loads", || store.stats().loads == 4).await;
    assert_eq!(held.arrived(), 1, "B, C and D wait instead of reading");

    held.release_one();
    assert_eq!(
        a.await.unwrap().unwrap(),
        Some(0),
        "A's read was sent before the write"
    );
    run_until("the shared read is sent", || held.arrived() == 2).await;
    held.release_one();
    for (name, task) in [("B", b), ("C", c), ("D", d)] {
        assert_eq!(task.await.unwrap().unwrap(), Some(7), "{name}");
    }
    let stats = store.stats();
    assert_eq!((stats.loads, stats.reads), (4, 2), "{stats:?}");
    assert_eq!(held.arrived(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_leader_hands_its_read_to_the_waiting_loads() {
    let f = fixture().await;
    let (store, held) = (f.store.clone(), f.held.clone());
    let a = read_n(&f);
    run_until("A's read reaches the store", || held.arrived() == 1).await;
    let b = read_n(&f);
    let c = read_n(&f);
    run_until("B and C load", || store.stats().loads == 3).await;
    // A's request goes away mid-read (client gone, timeout): B must send the next read.
    a.abort();
    assert!(a.await.unwrap_err().is_cancelled());
    run_until("B reads for B and C", || held.arrived() == 2).await;
    held.release_one();
    assert_eq!(b.await.unwrap().unwrap(), Some(0));
    assert_eq!(c.await.unwrap().unwrap(), Some(0));
    assert_eq!(held.arrived(), 2, "one read for B and C");
    assert_id_is_free(&f).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_waiting_load_cancelled_before_its_turn_does_not_strand_the_others() {
    let f = fixture().await;
    let (store, held) = (f.store.clone(), f.held.clone());
    let a = read_n(&f);
    run_until("A's read reaches the store", || held.arrived() == 1).await;
    let b = read_n(&f);
    let c = read_n(&f);
    run_until("B and C load", || store.stats().loads == 3).await;
    // B goes away while waiting: when A's read completes, the lead goes to C.
    b.abort();
    assert!(b.await.unwrap_err().is_cancelled());
    held.release_one();
    assert_eq!(a.await.unwrap().unwrap(), Some(0));
    run_until("C reads", || held.arrived() == 2).await;
    held.release_one();
    assert_eq!(c.await.unwrap().unwrap(), Some(0));
    assert_id_is_free(&f).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_load_cancelled_just_after_being_handed_the_lead_passes_it_on() {
    let f = fixture().await;
    let (store, held) = (f.store.clone(), f.held.clone());
    let a = read_n(&f);
    run_until("A's read reaches the store", || held.arrived() == 1).await;
    let cancel_b = Arc::new(AtomicBool::new(false));
    let b = read_n_cancelled_on_wake(&f, cancel_b.clone());
    let c = read_n(&f);
    run_until("B and C load", || store.stats().loads == 3).await;
    // A's read completes and hands the lead to B, which is dropped when that wakes it.
    cancel_b.store(true, Ordering::SeqCst);
    held.release_one();
    assert_eq!(a.await.unwrap().unwrap(), Some(0));
    assert!(b.await.unwrap().is_none(), "B was dropped, not run");
    run_until("C reads", || held.arrived() == 2).await;
    held.release_one();
    assert_eq!(c.await.unwrap().unwrap(), Some(0));
    assert_eq!(store.stats().reads, 2, "C read once, for itself");
    assert_id_is_free(&f).await;
}

/// Nothing is left queued for the id: a new load reads at once and is answered.
async fn assert_id_is_free(f: &Fixture) {
    let before = f.held.arrived();
    let e = read_n(f);
    run_until("a new load reads", || f.held.arrived() == before + 1).await;
    f.held.release_one();
    run_until("the new load is answered", || e.is_finished()).await;
    assert_eq!(e.await.unwrap().unwrap(), Some(0));
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_read_is_the_answer_of_the_loads_waiting_behind_it() {
    let f = fixture().await;
    let (store, held) = (f.store.clone(), f.held.clone());
    held.fail.store(true, Ordering::SeqCst);
    let a = read_n(&f);
    run_until("A's read reaches the store", || held.arrived() == 1).await;
    let b = read_n(&f);
    let c = read_n(&f);
    run_until("B and C load", || store.stats().loads == 3).await;
    held.release_one();
    for (name, task) in [("A", a), ("B", b), ("C", c)] {
        let err = task.await.unwrap().unwrap_err();
        assert!(
            matches!(&err, Error::Driver(e) if e.is_unavailable()),
            "{name}: {err}"
        );
    }
    assert_eq!(
        held.arrived(),
        1,
        "one failure, not one timeout per waiting request"
    );
    // The store is back: the next load reads again.
    held.fail.store(false, Ordering::SeqCst);
    assert_id_is_free(&f).await;
}

/// Many loads at once on a multi-threaded runtime, with writes between them: every load
/// sees every write that completed before it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_every_read_sees_the_writes_completed_before_it_began() {
    let store = SessionStore::builder(MemoryDriver::new()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("n", &0u64).unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                for _ in 0..200 {
                    let written = store
                        .update(&id, |s| {
                            let n = s.get::<u64>("n")?.unwrap_or(0) + 1;
                            s.set("n", &n)?;
                            Ok(n)
                        })
                        .await?;
                    let seen = store.load(Some(&id), None).await?.get::<u64>("n")?;
                    assert!(seen >= Some(written), "wrote {written}, then read {seen:?}");
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let s = store.load(Some(&id), None).await.unwrap();
    assert_eq!(s.get::<u64>("n").unwrap(), Some(1600));
    let stats = store.stats();
    assert!(stats.reads <= stats.loads, "{stats:?}");
}
