//! Session files: names, atomic writes, versions, listing, private modes, symbolic links,
//! purges of temporary files, concurrent writers.

use std::fs;
use std::ops::ControlFlow;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::super::layout::fnv1a64;
use super::*;
use crate::driver::{Driver, StoreMode, StoreOutcome};
use crate::error::DriverError;

#[test]
fn fnv1a64_matches_reference_vectors() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn new_refuses_missing_dir_and_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileDriver::new(dir.path().join("missing")).unwrap_err();
    assert!(
        matches!(&err, DriverError::Config { driver: "file", message } if message.contains("does not exist")),
        "{err}"
    );
    let file = dir.path().join("plain");
    fs::write(&file, b"x").unwrap();
    let err = FileDriver::new(&file).unwrap_err();
    assert!(
        matches!(&err, DriverError::Config { message, .. } if message.contains("not a directory")),
        "{err}"
    );
    assert_eq!(
        FileDriver::in_temp_dir().unwrap().dir(),
        std::env::temp_dir()
    );
}

#[tokio::test]
async fn create_then_exists() {
    let (dir, d) = driver();
    let a = id("abc123");
    assert_eq!(d.name(), "file");
    let out = d.store(&a, b"one", StoreMode::Create, None).await.unwrap();
    assert_eq!(out, StoreOutcome::Stored(Some(fnv1a64(b"one"))));
    let out = d.store(&a, b"two", StoreMode::Create, None).await.unwrap();
    assert_eq!(out, StoreOutcome::Exists);
    let loaded = d.load(&a, None).await.unwrap().unwrap();
    assert_eq!(
        loaded.data, b"one",
        "a refused create leaves the session alone"
    );
    assert_eq!(loaded.version, Some(fnv1a64(b"one")));
    assert_eq!(
        names(dir.path()),
        ["cgisess_abc123"],
        "no temporary file left"
    );
}

#[tokio::test]
async fn replace_checks_the_version() {
    let (dir, d) = driver();
    let a = id("abc123");
    let Ok(StoreOutcome::Stored(v1)) = d.store(&a, b"v1", StoreMode::Create, None).await else {
        panic!("create failed");
    };
    let out = d.store(&a, b"v2", replace(v1), None).await.unwrap();
    let StoreOutcome::Stored(v2) = out else {
        panic!("{out:?}");
    };
    assert_ne!(v1, v2);
    // v1 is stale now.
    let out = d.store(&a, b"v3", replace(v1), None).await.unwrap();
    assert_eq!(out, StoreOutcome::Conflict);
    assert_eq!(d.load(&a, None).await.unwrap().unwrap().data, b"v2");
    // Without an expected version, a replace overwrites whatever is stored.
    let out = d.store(&a, b"v4", replace(None), None).await.unwrap();
    assert_eq!(out, StoreOutcome::Stored(Some(fnv1a64(b"v4"))));
    let loaded = d.load(&a, None).await.unwrap().unwrap();
    assert_eq!(loaded.data, b"v4");
    assert_eq!(loaded.version, Some(fnv1a64(b"v4")));
    assert_eq!(
        names(dir.path()),
        ["cgisess_abc123"],
        "no temporary file left"
    );
}

#[tokio::test]
async fn replace_never_recreates_a_missing_session() {
    let (dir, d) = driver();
    let a = id("gone");
    for expected in [None, Some(fnv1a64(b"x"))] {
        let out = d.store(&a, b"x", replace(expected), None).await.unwrap();
        assert_eq!(out, StoreOutcome::NotFound);
    }
    d.store(&a, b"x", StoreMode::Create, None).await.unwrap();
    assert!(d.remove(&a).await.unwrap());
    let out = d.store(&a, b"y", replace(Some(fnv1a64(b"x"))), None).await;
    assert_eq!(out.unwrap(), StoreOutcome::NotFound);
    assert_eq!(d.load(&a, None).await.unwrap(), None);
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[tokio::test]
async fn remove_reports_whether_something_was_stored() {
    let (dir, d) = driver();
    let a = id("abc");
    assert!(!d.remove(&a).await.unwrap());
    d.store(&a, b"x", StoreMode::Create, None).await.unwrap();
    assert!(d.remove(&a).await.unwrap());
    assert!(!d.remove(&a).await.unwrap());
    assert_eq!(d.load(&a, None).await.unwrap(), None);
    assert!(names(dir.path()).is_empty());
    // It can be created again afterwards.
    let out = d.store(&a, b"y", StoreMode::Create, None).await.unwrap();
    assert!(matches!(out, StoreOutcome::Stored(_)));
}

#[tokio::test]
async fn listing_shows_only_session_files() {
    let (dir, d) = driver();
    for s in ["a1", "b2", "c3"] {
        d.store(&id(s), b"x", StoreMode::Create, None)
            .await
            .unwrap();
    }
    let p = dir.path();
    fs::write(p.join(".cgisess_a1.tmp.0123456789abcdef"), b"temp").unwrap();
    fs::write(p.join("unrelated.txt"), b"other").unwrap();
    fs::write(p.join("cgisess_bad.name"), b"not an id").unwrap();
    fs::write(p.join("cgisess_"), b"empty id").unwrap();
    fs::create_dir(p.join("cgisess_subdir")).unwrap();

    let mut seen = listed_ids(&d).await;
    seen.sort();
    assert_eq!(seen, ["a1", "b2", "c3"]);

    let mut count = 0;
    d.list(&mut |_| {
        count += 1;
        ControlFlow::Break(())
    })
    .await
    .unwrap();
    assert_eq!(count, 1, "Break stops the traversal");
}

#[tokio::test]
async fn files_are_private() {
    let (dir, d) = driver();
    let a = id("abc");
    d.store(&a, b"secret", StoreMode::Create, None)
        .await
        .unwrap();
    let path = dir.path().join("cgisess_abc");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    d.store(&a, b"secret2", replace(None), None).await.unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn touch_and_last_access_follow_the_mtime() {
    let (dir, d) = driver();
    let a = id("abc");
    let path = dir.path().join("cgisess_abc");
    assert!(!d.touch(&a, None).await.unwrap(), "nothing to touch");
    d.store(&a, b"x", StoreMode::Create, None).await.unwrap();
    let before = now();

    set_mtime(&path, 1_000);
    let loaded = d.load(&a, None).await.unwrap().unwrap();
    assert_eq!(loaded.last_access, Some(1_000));
    let loaded = d.load(&a, None).await.unwrap().unwrap();
    assert_eq!(
        loaded.last_access,
        Some(1_000),
        "a load without touch leaves it"
    );

    let ttl = Some(Duration::from_secs(60));
    let loaded = d.load(&a, ttl).await.unwrap().unwrap();
    assert_eq!(
        loaded.last_access,
        Some(1_000),
        "reports the previous access"
    );
    let loaded = d.load(&a, None).await.unwrap().unwrap();
    assert!(loaded.last_access.unwrap() >= before, "{loaded:?}");

    set_mtime(&path, 2_000);
    assert!(d.touch(&a, ttl).await.unwrap());
    let loaded = d.load(&a, None).await.unwrap().unwrap();
    assert!(loaded.last_access.unwrap() >= before, "{loaded:?}");
    assert_eq!(loaded.data, b"x", "touching leaves the content");
    assert_eq!(loaded.version, Some(fnv1a64(b"x")));
}

#[tokio::test]
async fn garbage_content_is_returned_as_bytes() {
    let (dir, d) = driver();
    let garbage = [0xff, 0x00, 0xfe, b'$', b'D', b' ', 0x80];
    fs::write(dir.path().join("cgisess_junk"), garbage).unwrap();
    let loaded = d.load(&id("junk"), None).await.unwrap().unwrap();
    assert_eq!(loaded.data, garbage);
    assert_eq!(loaded.version, Some(fnv1a64(&garbage)));
    // An empty file is an empty session blob, not a missing session.
    fs::write(dir.path().join("cgisess_empty"), b"").unwrap();
    let loaded = d.load(&id("empty"), None).await.unwrap().unwrap();
    assert!(loaded.data.is_empty());
}

#[tokio::test]
async fn symlinks_are_refused() {
    let (dir, d) = driver();
    let target = dir.path().join("elsewhere");
    fs::write(&target, b"not yours").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("cgisess_link")).unwrap();
    let err = d.load(&id("link"), None).await.unwrap_err();
    assert!(
        matches!(err, DriverError::Backend { driver: "file", .. }),
        "{err}"
    );
    assert!(d
        .store(&id("link"), b"x", replace(None), None)
        .await
        .is_err());
    assert_eq!(fs::read(&target).unwrap(), b"not yours");
}

#[tokio::test]
async fn stale_temp_files_are_purged() {
    let (dir, d) = driver();
    d.store(&id("abc"), b"x", StoreMode::Create, None)
        .await
        .unwrap();
    let old = dir.path().join(".cgisess_abc.tmp.00000000000000aa");
    let fresh = dir.path().join(".cgisess_abc.tmp.00000000000000bb");
    fs::write(&old, b"crashed").unwrap();
    fs::write(&fresh, b"in flight").unwrap();
    set_mtime(&old, 1_000);
    let removed = d.purge_temp_files(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(removed, 1);
    assert_eq!(
        names(dir.path()),
        [".cgisess_abc.tmp.00000000000000bb", "cgisess_abc"]
    );
}

#[tokio::test]
async fn io_errors_are_backend_errors() {
    let (dir, d) = driver();
    let path = dir.path().to_owned();
    drop(dir);
    let err = d
        .store(&id("abc"), b"x", StoreMode::Create, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DriverError::Backend { driver: "file", .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    assert!(
        !err.to_string().contains("cgisess_abc"),
        "the id is not printed: {err}"
    );
}

/// Writers replacing a session while it is removed never bring it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_session_stays_removed_under_concurrent_replaces() {
    let (dir, d) = driver();
    let a = id("doomed");
    for round in 0..30 {
        d.store(&a, b"0", StoreMode::Create, None).await.unwrap();
        // Each writer replaces until it finds the session gone (bounded, so that a bug fails
        // the test instead of hanging it).
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let d = d.clone();
                let a = a.clone();
                tokio::spawn(async move {
                    for i in 0..1_000 {
                        let data = format!("{w}:{i}");
                        match d.store(&a, data.as_bytes(), replace(None), None).await {
                            Ok(StoreOutcome::Stored(_)) => {}
                            Ok(StoreOutcome::NotFound) => return,
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(d.remove(&a).await.unwrap(), "round {round}");
        for w in writers {
            w.await.unwrap();
        }
        assert_eq!(d.load(&a, None).await.unwrap(), None, "round {round}");
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }
}

/// 8 tasks × 50 increments of a counter, each a load and a conditional replace retried on
/// conflict: no update may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_increments_lose_nothing() {
    let (_dir, d) = driver();
    let counter = id("counter");
    d.store(&counter, b"0", StoreMode::Create, None)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let d = d.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    loop {
                        let loaded = d.load(&counter, None).await.unwrap().unwrap();
                        let n: u64 = std::str::from_utf8(&loaded.data).unwrap().parse().unwrap();
                        let next = (n + 1).to_string();
                        let out = d
                            .store(&counter, next.as_bytes(), replace(loaded.version), None)
                            .await
                            .unwrap();
                        match out {
                            StoreOutcome::Stored(_) => break,
                            StoreOutcome::Conflict => continue,
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let loaded = d.load(&counter, None).await.unwrap().unwrap();
    assert_eq!(loaded.data, b"400");
}
