//! What the memcached driver adds over the conformance suite, against real memcached
//! processes: TTLs, round trips counted by the server, failures, sizes, keys, health.

use std::time::Duration;

use cgi_session_core::{DriverError, Error, SessionId, SessionStore};
use cgi_session_memcache::client::{Client, ClientConfig, GetOptions};
use cgi_session_memcache::{MemcacheDriver, FLAG_COMPRESSED};
use memcached_harness::MemcachedServer;

async fn client(server: &MemcachedServer, timeout: Duration) -> Client {
    Client::connect(
        ClientConfig::new(server.addr().to_string())
            .pool_size(2)
            .timeout(timeout),
    )
    .await
    .expect("connect to the test memcached")
}

fn counter(server: &MemcachedServer, name: &str) -> u64 {
    server.stats()[name].parse().expect("numeric stat")
}

/// Round trips that read: a `mg` with `T` counts as a touch, a plain `mg` as a get.
fn reads(server: &MemcachedServer) -> u64 {
    counter(server, "cmd_get") + counter(server, "cmd_touch")
}

async fn ttl_left(client: &Client, key: &str) -> i64 {
    client
        .get(key, GetOptions::new().ttl_remaining(true))
        .await
        .unwrap()
        .expect("item present")
        .ttl_remaining
        .expect("ttl reported")
}

#[tokio::test]
async fn item_ttl_follows_idle_expiry_and_over_30_days_is_absolute() {
    let server = MemcachedServer::start();
    let c = client(&server, Duration::from_secs(2)).await;
    let driver = MemcacheDriver::new(c.clone());
    let store = SessionStore::builder(driver.clone()).ttl_grace(10).build();

    let mut short = store.new_session(None, None).await.unwrap();
    short.set_expire_str("+10m").unwrap();
    short.flush().await.unwrap();
    let key = driver.key_for(short.id().unwrap());
    assert!(key.starts_with("sessions:"), "the Perl driver's key scheme");
    let ttl = ttl_left(&c, &key).await;
    assert!((600..=610).contains(&ttl), "ttl {ttl}");

    // 40 days: a relative exptime over 30 days would land in 1970 and expire at once.
    let mut long = store.new_session(None, None).await.unwrap();
    long.set_expire_str("40d").unwrap();
    long.flush().await.unwrap();
    let key = driver.key_for(long.id().unwrap());
    let ttl = ttl_left(&c, &key).await;
    assert!(
        (40 * 86_400 - 5..=40 * 86_400 + 10).contains(&ttl),
        "ttl {ttl}"
    );
    let id = long.id().unwrap().as_str().to_owned();
    assert!(!store.load(Some(&id), None).await.unwrap().is_empty());

    // No idle timeout: the driver's default lifetime (one day), not "forever".
    let mut forever = store.new_session(None, None).await.unwrap();
    forever.flush().await.unwrap();
    let ttl = ttl_left(&c, &driver.key_for(forever.id().unwrap())).await;
    assert!((86_390..=86_400).contains(&ttl), "ttl {ttl}");
    let custom = MemcacheDriver::builder(c.clone())
        .default_lifetime(Duration::from_secs(3600))
        .build()
        .unwrap();
    let store2 = SessionStore::builder(custom.clone()).build();
    let mut s = store2.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    let ttl = ttl_left(&c, &custom.key_for(s.id().unwrap())).await;
    assert!((3590..=3600).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn a_read_only_request_is_one_round_trip_that_also_slides_the_ttl() {
    let server = MemcachedServer::start();
    let c = client(&server, Duration::from_secs(2)).await;
    let driver = MemcacheDriver::builder(c.clone())
        .refresh_ttl_on_read(true)
        .build()
        .unwrap();
    let store = SessionStore::builder(driver.clone())
        .default_expire(1800)
        .build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("greet_en", "Hi !").unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    let key = driver.key_for(s.id().unwrap());
    // Let the TTL run down a little so that the refresh is visible.
    c.touch(&key, 100).await.unwrap();

    let (reads_before, sets_before) = (reads(&server), counter(&server, "cmd_set"));
    let touches_before = counter(&server, "cmd_touch");
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    assert_eq!(
        s.get::<String>("greet_en").unwrap().as_deref(),
        Some("Hi !")
    );
    s.flush().await.unwrap();
    assert_eq!(reads(&server) - reads_before, 1, "exactly one round trip");
    assert_eq!(
        counter(&server, "cmd_touch") - touches_before,
        1,
        "the read also touched"
    );
    assert_eq!(counter(&server, "cmd_set"), sets_before, "no rewrite");
    let ttl = ttl_left(&c, &key).await;
    assert!(ttl > 1800, "the read refreshed the TTL: {ttl}");
}

/// By default a read leaves the TTL alone (another program may own the item's lifetime); a
/// session read after half its timeout is written back, which slides it.
#[tokio::test]
async fn by_default_a_read_leaves_the_ttl_alone_and_a_half_used_session_is_written_back() {
    let server = MemcachedServer::start();
    let c = client(&server, Duration::from_secs(2)).await;
    let clock = cgi_session_core::ManualClock::new(1_800_000_000);
    let driver = MemcacheDriver::new(c.clone());
    let store = SessionStore::builder(driver.clone())
        .default_expire(1800)
        .clock(clock.clone())
        .build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("greet_en", "Hi !").unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    let key = driver.key_for(s.id().unwrap());
    c.touch(&key, 100).await.unwrap();

    let touches_before = counter(&server, "cmd_touch");
    let sets_before = counter(&server, "cmd_set");
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(counter(&server, "cmd_touch"), touches_before, "no touch");
    assert_eq!(counter(&server, "cmd_set"), sets_before, "no rewrite");
    let ttl = ttl_left(&c, &key).await;
    assert!(ttl <= 100, "the read left the TTL alone: {ttl}");

    // Past half the idle timeout, the read is written back with the full lifetime.
    clock.advance(901);
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    s.flush().await.unwrap();
    let ttl = ttl_left(&c, &key).await;
    assert!(ttl > 1800, "the write-back refreshed the TTL: {ttl}");
}

#[tokio::test]
async fn a_killed_server_is_an_error_never_an_empty_session_and_service_resumes() {
    let mut server = MemcachedServer::start();
    let c = client(&server, Duration::from_secs(2)).await;
    let store = SessionStore::builder(MemcacheDriver::new(c)).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("user", "ann").unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();

    server.kill();
    for result in [
        store.new_session(Some(&id), None).await,
        store.load(Some(&id), None).await,
    ] {
        let err = result.expect_err("a dead server must not yield a session");
        let Error::Driver(driver_err) = &err else {
            panic!("unexpected error {err}")
        };
        assert!(driver_err.is_unavailable(), "{err}");
        let text = err.to_string();
        assert!(text.contains(&server.addr().to_string()), "{text}");
    }
    let mut fresh = store.new_session(None, None).await.unwrap();
    assert!(matches!(fresh.flush().await, Err(Error::Driver(e)) if e.is_unavailable()));

    server.restart();
    // The restarted server is empty: the old id yields a fresh session, and writes work
    // again with the same client, without rebuilding anything.
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    assert_ne!(s.id().unwrap().as_str(), id);
    s.set("user", "ann").unwrap();
    s.flush().await.unwrap();
}

#[tokio::test]
async fn a_hung_server_hits_the_timeout_with_an_unavailable_error() {
    let mut server = MemcachedServer::start();
    let c = client(&server, Duration::from_millis(300)).await;
    let store = SessionStore::builder(MemcacheDriver::new(c)).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();

    server.pause();
    let err = store.load(Some(&id), None).await.unwrap_err();
    let Error::Driver(e) = &err else {
        panic!("unexpected error {err}")
    };
    assert!(e.is_unavailable(), "{err}");
    assert!(err.to_string().contains("300ms"), "{err}");
    server.resume();
    let s = store.load(Some(&id), None).await.unwrap();
    assert_eq!(s.id().unwrap().as_str(), id, "service resumes by itself");
}

#[tokio::test]
async fn an_oversized_session_is_refused_before_sending() {
    let server = MemcachedServer::builder().args(["-I", "1m"]).start();
    let c = client(&server, Duration::from_secs(2)).await;
    let store = SessionStore::builder(MemcacheDriver::new(c)).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("blob", &"x".repeat(1_100_000)).unwrap();
    let sets = counter(&server, "cmd_set");
    let err = s.flush().await.unwrap_err();
    assert!(
        matches!(&err, Error::Driver(DriverError::TooLarge { limit, .. }) if *limit < 1_048_576),
        "{err}"
    );
    assert!(err.to_string().contains("too large"), "{err}");
    assert_eq!(counter(&server, "cmd_set"), sets, "nothing was sent");
    s.discard();
}

#[tokio::test]
async fn compression_above_a_threshold_is_flagged_and_transparent() {
    let server = MemcachedServer::start();
    let c = client(&server, Duration::from_secs(2)).await;
    let driver = MemcacheDriver::builder(c.clone())
        .compress_above(1024)
        .build()
        .unwrap();
    let store = SessionStore::builder(driver.clone()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    let text = "session data ".repeat(2000);
    s.set("big", &text).unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    let raw = c
        .get(
            driver.key_for(s.id().unwrap()),
            GetOptions::new().flags(true),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.flags, Some(FLAG_COMPRESSED));
    assert!(
        raw.value.len() < text.len() / 10,
        "{} bytes",
        raw.value.len()
    );
    let s = store.load(Some(&id), None).await.unwrap();
    assert_eq!(
        s.get::<String>("big").unwrap().as_deref(),
        Some(text.as_str())
    );

    let mut small = store.new_session(None, None).await.unwrap();
    small.set("n", &1).unwrap();
    small.flush().await.unwrap();
    let raw = c
        .get(
            driver.key_for(small.id().unwrap()),
            GetOptions::new().flags(true),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.flags, Some(0), "small values are stored as is");
}

#[tokio::test]
async fn hashed_keys_hide_ids_and_cannot_be_listed_back() {
    let server = MemcachedServer::start();
    let c = client(&server, Duration::from_secs(2)).await;
    let driver = MemcacheDriver::builder(c.clone())
        .hashed_keys(true)
        .prefix("app1:")
        .build()
        .unwrap();
    let store = SessionStore::builder(driver.clone()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("user", "ann").unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    let keys = driver.list_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].key.starts_with("app1:"));
    assert_eq!(keys[0].key.len(), "app1:".len() + 64);
    assert!(!keys[0].key.contains(&id), "the dump holds no usable id");
    let s = store.load(Some(&id), None).await.unwrap();
    assert_eq!(s.get::<String>("user").unwrap().as_deref(), Some("ann"));
    let err = store
        .find(|_| async { std::ops::ControlFlow::Continue(()) })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hashed keys"), "{err}");
}

#[tokio::test]
async fn find_lists_only_this_prefix() {
    let server = MemcachedServer::start();
    let c = client(&server, Duration::from_secs(2)).await;
    let store = SessionStore::builder(MemcacheDriver::new(c.clone())).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    // Another application's items beside ours.
    c.set("other:thing", b"x", Default::default())
        .await
        .unwrap();
    c.set("sessions_not_ours", b"x", Default::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    store
        .find(|s| {
            seen.push(s.id().unwrap().as_str().to_owned());
            async { std::ops::ControlFlow::Continue(()) }
        })
        .await
        .unwrap();
    assert_eq!(seen, [s.id().unwrap().as_str().to_owned()]);
}

#[tokio::test]
async fn a_health_probe_key_left_in_memcached_is_never_listed() {
    use cgi_session_core::Driver;

    let server = MemcachedServer::start();
    let c = client(&server, Duration::from_secs(2)).await;
    let driver = MemcacheDriver::new(c.clone());
    let store = SessionStore::builder(driver.clone()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    // What `check` writes, left behind as if the probe had been cut short before its delete
    // (its key looks like a session id under the prefix).
    c.set(
        "sessions:__cgi_session_probe__0123456789abcdef",
        b"it_is_1700000000",
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(counter(&server, "curr_items"), 2);

    let mut listed = Vec::new();
    driver
        .list(&mut |session| {
            listed.push(session.id.as_str().to_owned());
            std::ops::ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(
        listed,
        std::slice::from_ref(&id),
        "only the session, not the probe key"
    );
    let keys: Vec<String> = driver
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key)
        .collect();
    assert_eq!(keys, [format!("sessions:{id}")]);
}

#[tokio::test]
async fn health_check_reports_the_server_and_names_a_dead_one() {
    let mut server = MemcachedServer::builder().args(["-I", "2m"]).start();
    let c = client(&server, Duration::from_millis(500)).await;
    let driver = MemcacheDriver::new(c);
    let report = driver.check().await.unwrap();
    assert!(report.version.starts_with("1."), "{report:?}");
    assert_eq!(report.item_size_max, 2 * 1024 * 1024);
    assert!(report.server.contains(&server.addr().to_string()));
    assert_eq!(
        counter(&server, "curr_items"),
        0,
        "the probe key is removed"
    );
    server.kill();
    let err = driver.check().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        err.to_string().contains(&server.addr().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn connecting_to_a_dead_server_fails_at_start_up() {
    let mut server = MemcachedServer::start();
    let addr = server.addr().to_string();
    server.kill();
    let err = Client::connect(ClientConfig::new(addr.clone()))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
}

#[tokio::test]
async fn bad_prefixes_are_refused_and_keys_are_validated() {
    let server = MemcachedServer::start();
    let c = client(&server, Duration::from_secs(2)).await;
    for bad in ["has space:", "nl\n:", &"p".repeat(101)] {
        let err = MemcacheDriver::builder(c.clone())
            .prefix(bad)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("prefix"), "{err}");
    }
    // The longest id plus a long prefix still fits in 250 bytes.
    let driver = MemcacheDriver::builder(c)
        .prefix("p".repeat(100))
        .build()
        .unwrap();
    let id = SessionId::parse(&"a".repeat(cgi_session_core::MAX_ID_LEN)).unwrap();
    assert!(driver.key_for(&id).len() <= 250);
    let store = SessionStore::builder(driver).build();
    assert!(store
        .load(Some(id.as_str()), None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_foreign_item_under_the_prefix_is_an_error_not_a_session() {
    let server = MemcachedServer::start();
    let c = client(&server, Duration::from_secs(2)).await;
    let store = SessionStore::builder(MemcacheDriver::new(c.clone())).build();
    let id = "0123456789abcdef0123456789abcdef";
    // Perl's Cache::Memcached stores references with Storable and flag 1.
    c.set(
        format!("sessions:{id}"),
        b"\x04\x0b\x03",
        cgi_session_memcache::client::SetOptions::new().flags(1),
    )
    .await
    .unwrap();
    let err = store.load(Some(id), None).await.unwrap_err();
    assert!(err.to_string().contains("flags"), "{err}");
    // new_session does not treat a store error as absence: the request fails clearly.
    assert!(store.new_session(Some(id), None).await.is_err());
}

/// A session that no longer fits (another program grew it, or the limit is lower than when it
/// was written) still loads and serves read-only requests; a change is refused at save time
/// with a clear error, and the stored copy is left as it was.
#[tokio::test]
async fn a_session_over_the_item_limit_serves_reads_and_refuses_changes_clearly() {
    let server = MemcachedServer::start();
    let c = client(&server, Duration::from_secs(2)).await;
    let clock = cgi_session_core::ManualClock::new(1_800_000_000);
    let roomy = SessionStore::builder(MemcacheDriver::new(c.clone()))
        .default_expire(1800)
        .clock(clock.clone())
        .build();
    let mut s = roomy.new_session(None, None).await.unwrap();
    s.set("blob", &"x".repeat(20_000)).unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();

    let tight_driver = MemcacheDriver::builder(c.clone())
        .item_size_max(10_000)
        .build()
        .unwrap();
    let tight = SessionStore::builder(tight_driver)
        .default_expire(1800)
        .clock(clock.clone())
        .build();
    // Past half the timeout a read wants to write the access time back: that write does not
    // fit, and the request still succeeds.
    clock.advance(1000);
    for _ in 0..3 {
        let mut s = tight.new_session(Some(&id), None).await.unwrap();
        assert_eq!(
            s.get::<String>("blob").unwrap().map(|b| b.len()),
            Some(20_000)
        );
        s.flush().await.unwrap();
    }
    // A change fails at save time with an error that says what to do.
    let mut s = tight.new_session(Some(&id), None).await.unwrap();
    s.set("more", "y").unwrap();
    let err = s.flush().await.unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
    s.discard();
    let s = roomy.load(Some(&id), None).await.unwrap();
    assert_eq!(
        s.get::<String>("more").unwrap(),
        None,
        "nothing half-written"
    );
}
