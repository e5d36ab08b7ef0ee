//! Unit tests of the memory driver.

use super::*;
use crate::clock::ManualClock;

fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

#[tokio::test]
async fn expired_entries_are_swept_and_invisible() {
    let clock = ManualClock::new(1_000);
    let d = MemoryDriver::new().with_clock(clock.clone());
    d.store(
        &id("a"),
        b"1",
        StoreMode::Create,
        Some(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    d.store(&id("b"), b"2", StoreMode::Create, None)
        .await
        .unwrap();
    clock.advance(10);
    assert_eq!(d.load(&id("a"), None).await.unwrap(), None);
    assert_eq!(d.len(), 1, "loading an expired entry removes it");
    d.store(
        &id("c"),
        b"3",
        StoreMode::Create,
        Some(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    clock.advance(1);
    assert_eq!(d.sweep(), 1);
    assert_eq!(d.len(), 1);
}

#[tokio::test]
async fn bounded_evicts_least_recently_used() {
    let clock = ManualClock::new(1_000);
    let d = MemoryDriver::with_capacity(2).with_clock(clock.clone());
    d.store(&id("a"), b"1", StoreMode::Create, None)
        .await
        .unwrap();
    clock.advance(1);
    d.store(&id("b"), b"2", StoreMode::Create, None)
        .await
        .unwrap();
    clock.advance(1);
    // Reading `a` makes `b` the least recently used.
    assert!(d.load(&id("a"), None).await.unwrap().is_some());
    clock.advance(1);
    d.store(&id("c"), b"3", StoreMode::Create, None)
        .await
        .unwrap();
    assert_eq!(d.len(), 2);
    assert!(d.load(&id("b"), None).await.unwrap().is_none());
    assert!(d.load(&id("a"), None).await.unwrap().is_some());
}

#[tokio::test]
async fn touch_on_load_extends_lifetime() {
    let clock = ManualClock::new(1_000);
    let d = MemoryDriver::new().with_clock(clock.clone());
    let ttl = Some(Duration::from_secs(10));
    d.store(&id("a"), b"1", StoreMode::Create, ttl)
        .await
        .unwrap();
    clock.advance(8);
    let loaded = d.load(&id("a"), ttl).await.unwrap().unwrap();
    assert_eq!(loaded.last_access, Some(1_000));
    clock.advance(8);
    assert!(d.load(&id("a"), ttl).await.unwrap().is_some());
}

fn acquired(attempt: LockAttempt) -> LockToken {
    match attempt {
        LockAttempt::Acquired(token) => token,
        other => panic!("expected the lock, got {other:?}"),
    }
}

#[tokio::test]
async fn lock_excludes_until_released_with_its_token() {
    let d = MemoryDriver::new().with_clock(ManualClock::new(1_000));
    let a = id("a");
    let lease = Duration::from_secs(30);
    let token = acquired(d.try_lock(&a, lease).await.unwrap());
    assert_eq!(d.try_lock(&a, lease).await.unwrap(), LockAttempt::Held);
    // Another id is independent.
    let other = acquired(d.try_lock(&id("b"), lease).await.unwrap());
    assert_ne!(other, token);

    let wrong = LockToken(token.0.wrapping_add(1_000));
    assert!(
        !d.unlock(&a, wrong).await.unwrap(),
        "a wrong token frees nothing"
    );
    assert_eq!(d.try_lock(&a, lease).await.unwrap(), LockAttempt::Held);
    assert!(
        !d.unlock(&a, other).await.unwrap(),
        "b's token does not free a"
    );

    assert!(d.unlock(&a, token).await.unwrap());
    assert!(!d.unlock(&a, token).await.unwrap(), "released once only");
    let again = acquired(d.try_lock(&a, lease).await.unwrap());
    assert_ne!(again, token, "every acquisition gets a new token");
    // A clone shares the locks.
    assert_eq!(
        d.clone().try_lock(&a, lease).await.unwrap(),
        LockAttempt::Held
    );
}

#[tokio::test]
async fn ended_lease_is_taken_over_and_the_stale_holder_frees_nothing() {
    let clock = ManualClock::new(1_000);
    let d = MemoryDriver::new().with_clock(clock.clone());
    let a = id("a");
    let lease = Duration::from_secs(10);
    let stale = acquired(d.try_lock(&a, lease).await.unwrap());
    clock.advance(10);
    assert_eq!(
        d.try_lock(&a, lease).await.unwrap(),
        LockAttempt::Held,
        "the lease runs until the end of its last second"
    );
    clock.advance(1);
    let fresh = acquired(d.try_lock(&a, lease).await.unwrap());
    assert_ne!(fresh, stale);
    assert!(!d.unlock(&a, stale).await.unwrap());
    assert_eq!(
        d.try_lock(&a, lease).await.unwrap(),
        LockAttempt::Held,
        "the stale holder's release left the new holder's lock alone"
    );
    assert!(d.unlock(&a, fresh).await.unwrap());
}

#[tokio::test]
async fn sub_second_leases_round_up_and_late_release_reports_false() {
    let clock = ManualClock::new(1_000);
    let d = MemoryDriver::new().with_clock(clock.clone());
    let a = id("a");
    let token = acquired(d.try_lock(&a, Duration::from_millis(1)).await.unwrap());
    assert_eq!(
        d.try_lock(&a, Duration::ZERO).await.unwrap(),
        LockAttempt::Held
    );
    clock.advance(2);
    // Nobody took it, but the lease ended: the release says so, and frees it all the same.
    assert!(!d.unlock(&a, token).await.unwrap());
    acquired(d.try_lock(&a, Duration::from_secs(1)).await.unwrap());
}

#[tokio::test]
async fn locks_are_not_sessions() {
    let clock = ManualClock::new(1_000);
    let d = MemoryDriver::with_capacity(2).with_clock(clock.clone());
    let lease = Duration::from_secs(5);
    for s in ["a", "b", "c"] {
        acquired(d.try_lock(&id(s), lease).await.unwrap());
    }
    assert!(d.is_empty(), "locks are not counted as sessions");
    assert_eq!(d.load(&id("a"), None).await.unwrap(), None);
    let mut seen = 0;
    d.list(&mut |_| {
        seen += 1;
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(seen, 0, "listing shows no lock");
    // Storing and removing the session leaves its lock alone.
    d.store(&id("a"), b"x", StoreMode::Create, None)
        .await
        .unwrap();
    assert!(d.remove(&id("a")).await.unwrap());
    assert_eq!(
        d.try_lock(&id("a"), lease).await.unwrap(),
        LockAttempt::Held
    );
    // Beyond capacity, ended leases are cleared; live ones never are.
    assert_eq!(d.locks().held.len(), 3);
    clock.advance(6);
    acquired(d.try_lock(&id("d"), lease).await.unwrap());
    assert_eq!(d.locks().held.len(), 1);
    clock.advance(6);
    assert_eq!(d.sweep(), 0);
    assert!(d.locks().held.is_empty(), "sweep drops ended leases");
}

async fn create(d: &MemoryDriver, s: &str, ttl: Option<Duration>) {
    let outcome = d.store(&id(s), b"v", StoreMode::Create, ttl).await.unwrap();
    assert!(
        matches!(outcome, StoreOutcome::Stored(Some(_))),
        "{s}: {outcome:?}"
    );
}

async fn held(d: &MemoryDriver, s: &str) -> bool {
    d.load(&id(s), None).await.unwrap().is_some()
}

#[tokio::test]
async fn eviction_follows_use_not_creation_within_one_shard() {
    // No clock advance: recency is the order of use, not the clock's seconds.
    let d = MemoryDriver::with_capacity(3).with_clock(ManualClock::new(1_000));
    for s in ["a", "b", "c"] {
        create(&d, s, None).await;
    }
    // Use order now: b (touch), c (replace), a (load): b is the least recently used.
    assert!(d.touch(&id("b"), None).await.unwrap());
    let stored = d
        .store(&id("c"), b"w", StoreMode::Replace { expected: None }, None)
        .await
        .unwrap();
    assert!(matches!(stored, StoreOutcome::Stored(_)));
    assert!(held(&d, "a").await);
    create(&d, "d", None).await;
    assert_eq!(d.len(), 3);
    assert!(!held(&d, "b").await, "b was the least recently used");
    // Now: c, a, d by use order... a then d were used last; c is the least recently used.
    create(&d, "e", None).await;
    assert!(!held(&d, "c").await);
    assert!(held(&d, "a").await && held(&d, "d").await && held(&d, "e").await);
}

#[tokio::test]
async fn an_expired_entry_is_evicted_before_a_live_one() {
    let clock = ManualClock::new(1_000);
    let d = MemoryDriver::with_capacity(3).with_clock(clock.clone());
    create(&d, "old", None).await;
    create(&d, "short", Some(Duration::from_secs(5))).await;
    create(&d, "young", None).await;
    clock.advance(5);
    // `old` is the least recently used, but `short` has expired: it goes first.
    create(&d, "new", None).await;
    assert_eq!(d.len(), 3);
    assert!(held(&d, "old").await && held(&d, "young").await && held(&d, "new").await);
    assert!(!held(&d, "short").await);
}

#[tokio::test]
async fn replacing_a_held_session_evicts_nothing_and_versions_are_unique() {
    let d = MemoryDriver::with_capacity(64).with_shards(4);
    let mut versions = std::collections::HashSet::new();
    for i in 0..64 {
        let s = format!("s{i}");
        let StoreOutcome::Stored(Some(v)) = d
            .store(&id(&s), b"v", StoreMode::Create, None)
            .await
            .unwrap()
        else {
            panic!("created")
        };
        assert!(versions.insert(v));
    }
    let held_before = d.len();
    assert!(held_before <= 64);
    // Replacing with the right version: stored, with a new version; a stale one conflicts.
    let loaded = d.load(&id("s63"), None).await.unwrap();
    if let Some(loaded) = loaded {
        let expected = loaded.version;
        let StoreOutcome::Stored(Some(v)) = d
            .store(&id("s63"), b"w", StoreMode::Replace { expected }, None)
            .await
            .unwrap()
        else {
            panic!("replaced")
        };
        assert!(versions.insert(v));
        assert_eq!(
            d.store(&id("s63"), b"x", StoreMode::Replace { expected }, None)
                .await
                .unwrap(),
            StoreOutcome::Conflict
        );
    }
    assert_eq!(d.len(), held_before, "a replacement makes no room");
}

#[tokio::test]
async fn shards_split_the_capacity_and_never_exceed_it() {
    let d = MemoryDriver::with_capacity(10_000);
    assert_eq!(d.shared.shards.len(), 16);
    let total: usize = d.shared.shards.iter().map(|s| lock(s).capacity).sum();
    assert_eq!(total, 10_000);
    let d = MemoryDriver::with_capacity(3).with_shards(16);
    assert_eq!(
        d.shared.shards.len(),
        2,
        "at most the capacity, a power of two"
    );
    assert_eq!(MemoryDriver::with_capacity(0).capacity, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creation_past_capacity_stays_bounded_and_keeps_recent_sessions() {
    const CAPACITY: usize = 4_096;
    const TASKS: usize = 4;
    const PER_SHARD: usize = 3 * CAPACITY / 16;
    let d = MemoryDriver::with_capacity(CAPACITY);
    let shards = d.shared.shards.len();
    assert_eq!(shards, 16);
    // Each task creates, in its own order, sessions of its own shards (task t has the shards
    // whose index is t modulo TASKS), three times what they hold: the tasks run concurrently,
    // but each shard sees one order of creation, so what it must keep is known exactly.
    let mut ids: Vec<Vec<String>> = vec![Vec::new(); shards];
    let mut n = 0;
    while ids.iter().any(|per_shard| per_shard.len() < PER_SHARD) {
        let s = format!("s{n}");
        n += 1;
        let per_shard = &mut ids[d.shard_index(&id(&s))];
        if per_shard.len() < PER_SHARD {
            per_shard.push(s);
        }
    }
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let d = d.clone();
            // Interleave the task's shards.
            let mut order: Vec<String> = Vec::new();
            #[allow(clippy::needless_range_loop)] // k indexes the inner vectors
            for k in 0..PER_SHARD {
                order.extend(
                    (t..shards)
                        .step_by(TASKS)
                        .map(|shard| ids[shard][k].clone()),
                );
            }
            tokio::spawn(async move {
                for s in order {
                    create(&d, &s, None).await;
                    assert!(d.len() <= CAPACITY);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(d.len(), CAPACITY, "every shard is full");
    for (shard, per_shard) in ids.iter().enumerate() {
        let keep = lock(&d.shared.shards[shard]).capacity;
        assert!(keep >= CAPACITY / shards);
        let (evicted, kept) = per_shard.split_at(per_shard.len() - keep);
        for s in kept {
            assert!(held(&d, s).await, "shard {shard}: {s} is among its newest");
        }
        for s in evicted {
            assert!(!held(&d, s).await, "shard {shard}: {s} was evicted");
        }
    }
}
