//! Session locks of the embedded drivers, through the public [`Driver`] API: the semantics
//! every driver shares, and for the file driver, exclusion between "processes" (threads that
//! each have their own driver instance and runtime on one directory, sharing nothing in memory).

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cgi_session_core::{
    Driver, FileDriver, LockAttempt, LockToken, ManualClock, MemoryDriver, SessionId, StoreMode,
};

const LEASE: Duration = Duration::from_secs(60);

fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

fn acquired(attempt: LockAttempt) -> LockToken {
    match attempt {
        LockAttempt::Acquired(token) => token,
        other => panic!("expected the lock, got {other:?}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What every driver with locks does, whatever its clock.
async fn shared_semantics(d: &dyn Driver) {
    let a = id("5ee0c1d2a1b2c3d4e5f60718293a4b5c");
    let b = id("b2");

    // Acquire, then the lock is held.
    let token = acquired(d.try_lock(&a, LEASE).await.unwrap());
    assert_eq!(d.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);
    // Ids are independent.
    let tb = acquired(d.try_lock(&b, LEASE).await.unwrap());

    // A wrong token frees nothing, nor does another id's token.
    assert!(!d.unlock(&a, LockToken(token.0 ^ 0x5a5a)).await.unwrap());
    assert!(!d.unlock(&a, tb).await.unwrap());
    assert_eq!(d.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);

    // The right token frees it, once.
    assert!(d.unlock(&a, token).await.unwrap());
    assert!(!d.unlock(&a, token).await.unwrap());
    let again = acquired(d.try_lock(&a, LEASE).await.unwrap());
    assert_ne!(again, token, "a new acquisition gets a new token");
    assert!(
        !d.unlock(&a, token).await.unwrap(),
        "an earlier holder's token does not free the new holder's lock"
    );
    assert_eq!(d.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);

    // Locks and sessions are independent: locked ids without a session are not listed, and
    // storing or removing a session leaves its lock alone.
    let mut seen = Vec::new();
    d.list(&mut |listed| {
        let id = listed.id;
        seen.push(id);
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert!(seen.is_empty(), "locks listed as sessions: {seen:?}");
    assert_eq!(d.load(&a, None).await.unwrap(), None);
    d.store(&a, b"x", StoreMode::Create, None).await.unwrap();
    assert!(d.remove(&a).await.unwrap());
    assert_eq!(d.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);
    let mut seen = 0;
    d.list(&mut |_| {
        seen += 1;
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(seen, 0);

    assert!(d.unlock(&a, again).await.unwrap());
    assert!(d.unlock(&b, tb).await.unwrap());
}

#[tokio::test]
async fn memory_driver_lock_semantics() {
    shared_semantics(&MemoryDriver::new()).await;
}

#[tokio::test]
async fn file_driver_lock_semantics() {
    let dir = tempfile::tempdir().unwrap();
    shared_semantics(&FileDriver::new(dir.path()).unwrap()).await;
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "released locks leave no file: {left:?}");
}

#[tokio::test]
async fn memory_driver_lease_ends_with_its_clock() {
    let clock = ManualClock::new(1_000_000);
    let d = MemoryDriver::new().with_clock(clock.clone());
    let a = id("a1");
    let stale = acquired(d.try_lock(&a, Duration::from_secs(30)).await.unwrap());
    clock.advance(30);
    assert_eq!(d.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);
    clock.advance(1);
    let fresh = acquired(d.try_lock(&a, LEASE).await.unwrap());
    assert!(!d.unlock(&a, stale).await.unwrap());
    assert_eq!(d.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);
    assert!(d.unlock(&a, fresh).await.unwrap());
}

#[tokio::test]
async fn file_driver_lease_ends_with_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    let holder = FileDriver::new(dir.path()).unwrap();
    let other = FileDriver::new(dir.path()).unwrap();
    let a = id("a1");
    let lease = Duration::from_millis(100);
    let started = std::time::Instant::now();
    let stale = acquired(holder.try_lock(&a, lease).await.unwrap());
    let deadline = started + Duration::from_secs(10);
    let fresh = loop {
        match other.try_lock(&a, LEASE).await.unwrap() {
            LockAttempt::Acquired(token) => break token,
            LockAttempt::Held => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the lease never ended"
                );
                tokio::task::yield_now().await;
            }
            other => panic!("{other:?}"),
        }
    };
    assert!(
        started.elapsed() >= lease,
        "taken over before the lease ended"
    );
    assert!(!holder.unlock(&a, stale).await.unwrap());
    assert_eq!(holder.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);
    assert!(other.unlock(&a, fresh).await.unwrap());
}

/// Threads that each have their own `FileDriver` and runtime on one directory (as separate
/// processes would) take and release one lock as fast as they can: never two holders at once.
#[test]
fn file_driver_lock_excludes_across_instances() {
    const THREADS: usize = 6;
    const ROUNDS: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let holders = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let acquisitions = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let path = dir.path().to_owned();
            let (holders, most, acquisitions, start) = (
                Arc::clone(&holders),
                Arc::clone(&most),
                Arc::clone(&acquisitions),
                Arc::clone(&start),
            );
            std::thread::spawn(move || {
                let d = FileDriver::new(path).unwrap();
                let a = id("contended");
                runtime().block_on(async {
                    start.wait();
                    let mut mine = 0;
                    while mine < ROUNDS {
                        match d.try_lock(&a, LEASE).await.unwrap() {
                            LockAttempt::Acquired(token) => {
                                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                                most.fetch_max(now, Ordering::SeqCst);
                                // Stay a little, so that overlapping holders would be seen.
                                for _ in 0..50 {
                                    std::thread::yield_now();
                                }
                                holders.fetch_sub(1, Ordering::SeqCst);
                                assert!(
                                    d.unlock(&a, token).await.unwrap(),
                                    "the holder's release must succeed within its lease"
                                );
                                acquisitions.fetch_add(1, Ordering::SeqCst);
                                mine += 1;
                            }
                            LockAttempt::Held => std::thread::yield_now(),
                            other => panic!("{other:?}"),
                        }
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "two holders at once at some point"
    );
    assert_eq!(acquisitions.load(Ordering::SeqCst), THREADS * ROUNDS);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "released locks leave no file: {left:?}");
}

/// The line of a lock file whose lease ended long ago (format: see the file driver's docs).
fn ended_lock_line(token: u64) -> String {
    format!("cgilock1 {token:016x} 1000\n")
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Threads with their own drivers race for a lock that is free, or whose holder crashed
/// (an ended lease in the file, or a garbage file): exactly one of them gets it each round.
#[test]
fn file_driver_racing_acquirers_never_both_win() {
    const THREADS: usize = 6;
    const ROUNDS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let lock_file = dir.path().join("cgilock_raced");
    let round_start = Arc::new(Barrier::new(THREADS + 1));
    let round_end = Arc::new(Barrier::new(THREADS + 1));
    let winners = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let path = dir.path().to_owned();
            let (round_start, round_end, winners) = (
                Arc::clone(&round_start),
                Arc::clone(&round_end),
                Arc::clone(&winners),
            );
            std::thread::spawn(move || {
                let d = FileDriver::new(path).unwrap();
                let a = id("raced");
                let rt = runtime();
                for _ in 0..ROUNDS {
                    round_start.wait();
                    if let LockAttempt::Acquired(_) = rt.block_on(d.try_lock(&a, LEASE)).unwrap() {
                        winners.fetch_add(1, Ordering::SeqCst);
                    }
                    round_end.wait();
                }
            })
        })
        .collect();
    for round in 0..ROUNDS {
        match round % 3 {
            0 => remove_if_any(&lock_file),
            1 => std::fs::write(&lock_file, ended_lock_line(round as u64)).unwrap(),
            _ => std::fs::write(&lock_file, b"garbage").unwrap(),
        }
        winners.store(0, Ordering::SeqCst);
        round_start.wait();
        round_end.wait();
        assert_eq!(winners.load(Ordering::SeqCst), 1, "round {round}");
        // The winner's lease is in the file.
        let line = std::fs::read_to_string(&lock_file).unwrap();
        let until: u64 = line.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
        assert!(until > now_ms(), "round {round}: {line:?}");
    }
    for t in threads {
        t.join().unwrap();
    }
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["cgilock_raced"], "no temporary file left");
}

fn remove_if_any(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("{e}"),
    }
}
