//! The sealed driver under a session store: rotation, moved and changed items, unknown keys,
//! unsealed items, and arbitrary stored bytes.

use std::sync::Arc;

use cgi_session_core::{
    Driver, DriverError, Error, MemoryDriver, SessionId, SessionStore, StoreMode,
};
use cgi_session_sealed::{key_id_of, KeyRing, OpenError, SealError, SealedDriver, SealingKey};

fn key(id: u32) -> SealingKey {
    SealingKey::new(id, [id as u8 + 100; 32])
}

fn ring(current: u32, previous: &[u32]) -> KeyRing {
    KeyRing::new(key(current))
        .with_previous(previous.iter().map(|&i| key(i)))
        .unwrap()
}

/// A store over `memory` sealing with `keys`.
fn store(memory: &Arc<MemoryDriver>, keys: KeyRing) -> SessionStore {
    SessionStore::builder(SealedDriver::from_arc(memory.clone(), keys)).build()
}

async fn create(store: &SessionStore, value: &str) -> String {
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("greeting", value).unwrap();
    s.flush().await.unwrap();
    s.id().unwrap().as_str().to_owned()
}

async fn raw(memory: &MemoryDriver, id: &str) -> Vec<u8> {
    let id = SessionId::parse(id).unwrap();
    memory.load(&id, None).await.unwrap().unwrap().data
}

/// The open failure inside a load error, which must be a store failure, not a new session.
fn open_error(err: &Error) -> &OpenError {
    let Error::Driver(DriverError::Backend { source, .. }) = err else {
        panic!("expected a store failure, got {err:?}");
    };
    match source.downcast_ref::<SealError>() {
        Some(SealError::Open { source, .. }) => source,
        other => panic!("expected SealError::Open, got {other:?}"),
    }
}

#[tokio::test]
async fn rotation_reads_old_items_and_reseals_them_on_the_next_save() {
    let memory = Arc::new(MemoryDriver::new());
    let id = create(&store(&memory, ring(1, &[])), "hello").await;
    assert_eq!(key_id_of(&raw(&memory, &id).await), Some(1));

    let rotated = store(&memory, ring(2, &[1]));
    let s = rotated.load(Some(&id), None).await.unwrap();
    assert_eq!(
        s.get::<String>("greeting").unwrap().as_deref(),
        Some("hello")
    );
    drop(s);
    // Only read: not rewritten, still under the old key.
    assert_eq!(key_id_of(&raw(&memory, &id).await), Some(1));

    let mut s = rotated.load(Some(&id), None).await.unwrap();
    s.set("greeting", "hello again").unwrap();
    s.flush().await.unwrap();
    assert_eq!(
        key_id_of(&raw(&memory, &id).await),
        Some(2),
        "resealed with the newest key"
    );

    // The old key can now be retired for this session.
    let retired = store(&memory, ring(2, &[]));
    let s = retired.load(Some(&id), None).await.unwrap();
    assert_eq!(
        s.get::<String>("greeting").unwrap().as_deref(),
        Some("hello again")
    );
}

#[tokio::test]
async fn an_item_sealed_with_a_retired_key_fails_the_request_naming_the_key() {
    let memory = Arc::new(MemoryDriver::new());
    let id = create(&store(&memory, ring(1, &[])), "hello").await;
    let retired = store(&memory, ring(2, &[]));
    for result in [
        retired.load(Some(&id), None).await,
        retired.new_session(Some(&id), None).await,
    ] {
        let err = result.expect_err("no silent new session");
        assert!(
            matches!(open_error(&err), OpenError::UnknownKey { key_id: 1, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("key id 1") && text.contains("add that key"),
            "{text}"
        );
        assert!(!text.contains(&id), "the full id is never printed: {text}");
    }
    assert_eq!(
        key_id_of(&raw(&memory, &id).await),
        Some(1),
        "left untouched"
    );
}

#[tokio::test]
async fn an_item_moved_to_another_id_is_refused() {
    let memory = Arc::new(MemoryDriver::new());
    let store = store(&memory, ring(1, &[]));
    let victim = create(&store, "victim's data").await;
    let attacker = create(&store, "attacker's data").await;
    // Someone with write access to the store copies the victim's item under their own id.
    let stolen = raw(&memory, &victim).await;
    let attacker_id = SessionId::parse(&attacker).unwrap();
    memory
        .store(
            &attacker_id,
            &stolen,
            StoreMode::Replace { expected: None },
            None,
        )
        .await
        .unwrap();
    let err = store.load(Some(&attacker), None).await.unwrap_err();
    assert_eq!(open_error(&err), &OpenError::Forged { key_id: 1 });
    // The victim's session is unharmed.
    let s = store.load(Some(&victim), None).await.unwrap();
    assert_eq!(
        s.get::<String>("greeting").unwrap().as_deref(),
        Some("victim's data")
    );
}

#[tokio::test]
async fn a_changed_byte_fails_the_request_and_is_left_alone() {
    let memory = Arc::new(MemoryDriver::new());
    let store = store(&memory, ring(1, &[]));
    let id = create(&store, "hello").await;
    let mut item = raw(&memory, &id).await;
    let last = item.len() - 1;
    item[last] ^= 0x80;
    let sid = SessionId::parse(&id).unwrap();
    memory
        .store(&sid, &item, StoreMode::Replace { expected: None }, None)
        .await
        .unwrap();
    let err = store.new_session(Some(&id), None).await.unwrap_err();
    assert_eq!(open_error(&err), &OpenError::Forged { key_id: 1 });
    assert!(err.to_string().contains("failed authentication"), "{err}");
    assert_eq!(raw(&memory, &id).await, item, "left untouched");
}

#[tokio::test]
async fn unsealed_items_are_refused_unless_migrating() {
    let memory = Arc::new(MemoryDriver::new());
    let plain_store = SessionStore::builder_dyn(memory.clone()).build();
    let id = create(&plain_store, "from before sealing").await;

    let err = store(&memory, ring(1, &[]))
        .load(Some(&id), None)
        .await
        .unwrap_err();
    assert_eq!(open_error(&err), &OpenError::NotSealed);
    assert!(err.to_string().contains("not sealed"), "{err}");

    let migrating = SessionStore::builder(
        SealedDriver::from_arc(memory.clone(), ring(1, &[])).accept_unsealed(true),
    )
    .build();
    let mut s = migrating.load(Some(&id), None).await.unwrap();
    assert_eq!(
        s.get::<String>("greeting").unwrap().as_deref(),
        Some("from before sealing")
    );
    assert_eq!(key_id_of(&raw(&memory, &id).await), None);
    s.set("greeting", "sealed now").unwrap();
    s.flush().await.unwrap();
    assert_eq!(key_id_of(&raw(&memory, &id).await), Some(1));
    // A sealed item that fails to open is refused even while migrating.
    let mut item = raw(&memory, &id).await;
    item[20] ^= 1;
    let sid = SessionId::parse(&id).unwrap();
    memory
        .store(&sid, &item, StoreMode::Replace { expected: None }, None)
        .await
        .unwrap();
    let err = migrating.load(Some(&id), None).await.unwrap_err();
    assert_eq!(open_error(&err), &OpenError::Forged { key_id: 1 });
}

#[tokio::test]
async fn the_driver_debug_shows_no_key_material() {
    let driver = SealedDriver::new(MemoryDriver::new(), ring(3, &[2]));
    let shown = format!("{driver:?}");
    assert!(shown.contains("SealingKey { id: 3, .. }"), "{shown}");
    assert!(!shown.contains("103") && !shown.contains("0x67"), "{shown}");
}

mod arbitrary_bytes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// Opening untrusted bytes never panics, and only bytes sealed for the id open.
        #[test]
        fn opening_arbitrary_bytes_never_panics(
            tail in proptest::collection::vec(any::<u8>(), 0..200),
            sealed_prefix in any::<bool>(),
            key_id in 0u32..4,
        ) {
            let keys = ring(1, &[2]);
            let id = SessionId::parse("abcdef").unwrap();
            let mut item = Vec::new();
            if sealed_prefix {
                item.extend_from_slice(&cgi_session_sealed::MAGIC);
                item.push(cgi_session_sealed::VERSION);
                item.extend_from_slice(&key_id.to_be_bytes());
            }
            item.extend_from_slice(&tail);
            prop_assert!(cgi_session_sealed::open(&keys, &id, &item).is_err());
        }

        /// Whatever is sealed opens to the same bytes under its id only.
        #[test]
        fn sealed_bytes_round_trip(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let keys = ring(2, &[1]);
            let id = SessionId::parse("abcdef").unwrap();
            let sealed = cgi_session_sealed::seal(&keys, &id, &data).unwrap();
            prop_assert_eq!(cgi_session_sealed::open(&keys, &id, &sealed).unwrap(), data);
            let other = SessionId::parse("abcdeg").unwrap();
            prop_assert!(cgi_session_sealed::open(&keys, &other, &sealed).is_err());
        }
    }
}
