//! Lock files: the record format, leases, take-over of ended or garbage locks, purges.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::super::layout::{session_id_of, MAX_LOCK_FILE_LEN};
use super::super::locks::{lease_millis, unix_millis, LockRecord};
use super::*;
use crate::driver::{Driver, LockAttempt, LockToken, StoreMode};
use crate::error::DriverError;

fn acquired(attempt: LockAttempt) -> LockToken {
    match attempt {
        LockAttempt::Acquired(token) => token,
        other => panic!("expected the lock, got {other:?}"),
    }
}

fn now_ms() -> u64 {
    unix_millis(SystemTime::now())
}

fn read_record(path: &Path) -> LockRecord {
    LockRecord::decode(&fs::read(path).unwrap()).expect("a well-formed lock file")
}

const LEASE: Duration = Duration::from_secs(60);

#[test]
fn lock_records_round_trip_and_garbage_is_refused() {
    let record = LockRecord {
        token: 0x9f86_d081_884c_7d65,
        until_ms: 1_718_000_000_000,
    };
    assert_eq!(record.encode(), "cgilock1 9f86d081884c7d65 1718000000000\n");
    assert_eq!(LockRecord::decode(record.encode().as_bytes()), Some(record));
    let max = LockRecord {
        token: u64::MAX,
        until_ms: u64::MAX,
    };
    assert!(max.encode().len() as u64 <= MAX_LOCK_FILE_LEN);
    assert_eq!(LockRecord::decode(max.encode().as_bytes()), Some(max));
    for garbage in [
        "",
        "\n",
        "cgilock1 9f86d081884c7d65 1718000000000", // truncated: no newline
        "cgilock1 9f86d081884c7d65 17180\n0000000\n", // two lines
        "cgilock1 9f86d081884c7d65\n",             // no lease
        "cgilock1 9f86d081884c7d6 1718000000000\n", // short token
        "cgilock1 +f86d081884c7d65 1718000000000\n", // sign
        "cgilock1 9F86D081884C7D65 1718000000000\n", // upper case
        "cgilock1 9f86d081884c7d65 +1718000000000\n", // sign
        "cgilock1 9f86d081884c7d65 99999999999999999999\n", // overflows u64
        "cgilock1 9f86d081884c7d65 1718000000000 x\n", // trailing word
        "cgilock1  9f86d081884c7d65 1718000000000\n", // double space
        "cgilock2 9f86d081884c7d65 1718000000000\n", // unknown version
        "cgilock1 9f86d081884c7d65 1718000000000\r\n", // CRLF
    ] {
        assert_eq!(LockRecord::decode(garbage.as_bytes()), None, "{garbage:?}");
    }
    assert_eq!(LockRecord::decode(&[0xff, 0xfe, b'\n']), None);
    assert!(record.ended(record.until_ms + 1));
    assert!(!record.ended(record.until_ms));
    assert_eq!(lease_millis(Duration::from_micros(1)), 1);
    assert_eq!(lease_millis(Duration::from_millis(1500)), 1500);
    assert_eq!(lease_millis(Duration::MAX), u64::MAX);
}

#[tokio::test]
async fn lock_file_holds_the_token_and_lease() {
    let (dir, d) = driver();
    let a = id("abc");
    let before = now_ms();
    let token = acquired(d.try_lock(&a, LEASE).await.unwrap());
    let path = dir.path().join("cgilock_abc");
    let record = read_record(&path);
    assert_eq!(record.token, token.0);
    assert!(record.until_ms >= before + 60_000, "{record:?}");
    assert!(record.until_ms <= now_ms() + 60_000, "{record:?}");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(names(dir.path()), ["cgilock_abc"], "no temporary file left");

    assert_eq!(d.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);
    assert_eq!(read_record(&path), record, "a held lock is left alone");
    assert!(!d.unlock(&a, LockToken(token.0 ^ 1)).await.unwrap());
    assert_eq!(read_record(&path), record, "a wrong token frees nothing");
    assert!(d.unlock(&a, token).await.unwrap());
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    assert!(!d.unlock(&a, token).await.unwrap(), "released once only");
    let again = acquired(d.try_lock(&a, LEASE).await.unwrap());
    assert_ne!(again, token);
}

#[tokio::test]
async fn an_ended_lease_in_the_file_is_taken_over() {
    let (dir, d) = driver();
    let a = id("abc");
    let path = dir.path().join("cgilock_abc");
    let crashed = LockRecord {
        token: 42,
        until_ms: now_ms() - 1,
    };
    fs::write(&path, crashed.encode()).unwrap();
    let token = acquired(d.try_lock(&a, LEASE).await.unwrap());
    assert_ne!(token.0, 42);
    assert_eq!(read_record(&path).token, token.0);
    assert!(
        !d.unlock(&a, LockToken(42)).await.unwrap(),
        "the crashed holder cannot free the new holder's lock"
    );
    assert_eq!(d.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);
    assert!(d.unlock(&a, token).await.unwrap());
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[tokio::test]
async fn a_release_after_the_lease_ended_reports_false_and_frees_the_lock() {
    let (dir, d) = driver();
    let a = id("abc");
    let path = dir.path().join("cgilock_abc");
    let token = acquired(d.try_lock(&a, LEASE).await.unwrap());
    // As if the lease had passed.
    let mut record = read_record(&path);
    record.until_ms = now_ms() - 1;
    fs::write(&path, record.encode()).unwrap();
    assert!(!d.unlock(&a, token).await.unwrap());
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[tokio::test]
async fn a_short_lease_ends_by_itself() {
    let (_dir, d) = driver();
    let a = id("abc");
    let lease = Duration::from_millis(50);
    let started = std::time::Instant::now();
    let stale = acquired(d.try_lock(&a, lease).await.unwrap());
    let deadline = started + Duration::from_secs(10);
    let fresh = loop {
        match d.try_lock(&a, LEASE).await.unwrap() {
            LockAttempt::Acquired(token) => break token,
            LockAttempt::Held => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the lease never ended"
                );
                tokio::task::yield_now().await;
            }
        }
    };
    assert!(
        started.elapsed() >= lease,
        "taken over before the lease ended"
    );
    assert!(!d.unlock(&a, stale).await.unwrap());
    assert_eq!(d.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);
    assert!(d.unlock(&a, fresh).await.unwrap());
}

#[tokio::test]
async fn garbage_lock_files_are_taken_over_not_trusted() {
    let (dir, d) = driver();
    let a = id("abc");
    let path = dir.path().join("cgilock_abc");
    let well_formed_but_huge = format!("{}{}", "x".repeat(100), "\n");
    for garbage in [
        &b""[..],
        b"cgilock1 0000000000000001 99999999999999",
        b"\xff\xfe garbage",
        well_formed_but_huge.as_bytes(),
    ] {
        fs::write(&path, garbage).unwrap();
        assert!(
            !d.unlock(&a, LockToken(1)).await.unwrap(),
            "{garbage:?} is not released"
        );
        assert_eq!(fs::read(&path).unwrap(), garbage, "and left alone");
        let token = acquired(d.try_lock(&a, LEASE).await.unwrap());
        assert_eq!(read_record(&path).token, token.0);
        assert!(d.unlock(&a, token).await.unwrap());
    }
}

#[tokio::test]
async fn lock_files_are_not_sessions() {
    let (dir, d) = driver();
    let p = dir.path();
    d.store(&id("a1"), b"x", StoreMode::Create, None)
        .await
        .unwrap();
    let t1 = acquired(d.try_lock(&id("a1"), LEASE).await.unwrap());
    acquired(d.try_lock(&id("b2"), LEASE).await.unwrap());
    fs::write(p.join(".cgilock_b2.tmp.0123456789abcdef"), b"temp").unwrap();
    assert_eq!(session_id_of(OsStr::new("cgilock_b2")), None);
    assert_eq!(session_id_of(OsStr::new(".cgilock_b2.tmp.01")), None);

    let seen = listed_ids(&d).await;
    assert_eq!(seen, ["a1"]);
    assert_eq!(d.load(&id("b2"), None).await.unwrap(), None);
    assert!(!d.remove(&id("b2")).await.unwrap(), "no session b2");
    assert!(!d.touch(&id("b2"), None).await.unwrap());

    // The lock and the session live apart.
    assert!(d.remove(&id("a1")).await.unwrap());
    assert_eq!(
        d.try_lock(&id("a1"), LEASE).await.unwrap(),
        LockAttempt::Held
    );
    assert!(d.unlock(&id("a1"), t1).await.unwrap());
    assert_eq!(d.load(&id("a1"), None).await.unwrap(), None);
    assert_eq!(names(p), [".cgilock_b2.tmp.0123456789abcdef", "cgilock_b2"]);
}

#[tokio::test]
async fn purges_remove_ended_and_garbage_locks_only() {
    let (dir, d) = driver();
    let p = dir.path();
    let live = acquired(d.try_lock(&id("live"), LEASE).await.unwrap());
    let ended = LockRecord {
        token: 7,
        until_ms: now_ms() - 1,
    };
    fs::write(p.join("cgilock_ended"), ended.encode()).unwrap();
    fs::write(p.join("cgilock_garbage"), b"?").unwrap();
    // Not lock files of a well-formed id, or not files: left alone.
    fs::write(p.join("cgilock_bad.name"), ended.encode()).unwrap();
    fs::create_dir(p.join("cgilock_dir")).unwrap();
    std::os::unix::fs::symlink(p.join("cgilock_ended"), p.join("cgilock_link")).unwrap();
    let old_temp = p.join(".cgilock_x.tmp.00000000000000aa");
    fs::write(&old_temp, ended.encode()).unwrap();
    set_mtime(&old_temp, 1_000);

    assert_eq!(d.purge_expired_locks().await.unwrap(), 2);
    assert_eq!(
        names(p),
        [
            ".cgilock_x.tmp.00000000000000aa",
            "cgilock_bad.name",
            "cgilock_dir",
            "cgilock_link",
            "cgilock_live"
        ]
    );
    fs::write(p.join("cgilock_ended"), ended.encode()).unwrap();
    assert_eq!(
        d.purge_temp_files(Duration::from_secs(3600)).await.unwrap(),
        2,
        "the old lock temporary file and the ended lock"
    );
    assert_eq!(
        names(p),
        [
            "cgilock_bad.name",
            "cgilock_dir",
            "cgilock_link",
            "cgilock_live"
        ]
    );
    assert!(d.unlock(&id("live"), live).await.unwrap());
}

#[tokio::test]
async fn lock_symlinks_are_refused() {
    let (dir, d) = driver();
    let target = dir.path().join("elsewhere");
    let ended = LockRecord {
        token: 7,
        until_ms: 1,
    };
    fs::write(&target, ended.encode()).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("cgilock_link")).unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("missing"),
        dir.path().join("cgilock_dangling"),
    )
    .unwrap();
    for name in ["link", "dangling"] {
        let err = d.try_lock(&id(name), LEASE).await.unwrap_err();
        assert!(
            matches!(err, DriverError::Backend { driver: "file", .. }),
            "{err}"
        );
        assert!(
            !err.to_string().contains("cgilock_"),
            "no id printed: {err}"
        );
        assert!(d.unlock(&id(name), LockToken(7)).await.is_err());
    }
    assert_eq!(fs::read(&target).unwrap(), ended.encode().as_bytes());
    assert!(!dir.path().join("missing").exists());
}
