//! CGI::Session's own behaviour list (`t/g4` of CGI::Session 4.48), `b1_`..`b7_`.

use cgi_session_core::SessionId;
use serde_json::json;

use super::{clock, id_of};
use crate::{store_builder, Fixture};

/// 1. `load` with no id: an empty session, not expired.
pub async fn b1_load_without_id_is_empty(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let s = store.load(None, None).await.unwrap();
    assert!(s.id().is_none());
    assert!(s.is_empty());
    assert!(!s.is_expired());
    assert!(!s.is_new());
}

/// 2. `new` with an unknown id issues a fresh id (strict); scalar, array and hash values
///    (with odd keys) round-trip in memory; `names` lists 3.
pub async fn b2_new_with_unknown_id_gets_fresh_id_and_keeps_values(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let claimed = "0123456789abcdef0123456789abcdef";
    let mut s = store.new_session(Some(claimed), None).await.unwrap();
    assert_ne!(
        id_of(&s),
        claimed,
        "an unknown claimed id must not be adopted"
    );
    assert!(s.is_new());
    assert_eq!(s.ctime(), s.atime());
    assert_eq!(s.expire(), None);
    s.set("author", "Sherzod Ruzmetov").unwrap();
    s.set("emails", &["sherzodr@cpan.org", "sherzodr@handalak.com"])
        .unwrap();
    s.set(
        "blogs",
        &json!({"./lost+found": "http://author.handalak.com/", "Yigitlik": "http://yigitlik.uz/"}),
    )
    .unwrap();
    assert_eq!(s.names().len(), 3);
    assert_eq!(
        s.get::<Vec<String>>("emails").unwrap().unwrap()[1],
        "sherzodr@handalak.com"
    );
    assert_eq!(
        s.get_value("blogs").unwrap()["./lost+found"],
        "http://author.handalak.com/"
    );
    s.flush().await.unwrap();
    assert!(!s.is_new(), "flush clears is_new");
}

/// 3. Reloading a second later: same id, not expired, atime > ctime, values intact.
pub async fn b3_reload_keeps_id_values_and_times(f: Fixture) {
    let clock = clock();
    let store = store_builder(f.driver.clone(), &clock).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("author", "Sherzod").unwrap();
    s.set("emails", &["a@x", "b@x"]).unwrap();
    s.set(
        "blogs",
        &json!({"./lost+found": "x", "nested": {"deep": [1, 2]}}),
    )
    .unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    clock.advance(1);
    let s = store.load(Some(&id), None).await.unwrap();
    assert_eq!(id_of(&s), id);
    assert!(!s.is_expired());
    assert!(s.atime() > s.ctime());
    assert_eq!(s.names().len(), 3);
    assert_eq!(
        s.get_value("blogs").unwrap()["nested"]["deep"],
        json!([1, 2])
    );
    for (t, v) in [
        ("+1s", 1),
        ("+1m", 60),
        ("2h", 7200),
        ("5d", 432_000),
        ("-10s", -10),
        ("1s", 1),
    ] {
        assert_eq!(cgi_session_core::parse_expire(t).unwrap(), v);
    }
}

/// 4. Once the idle timeout passed, `load` gives an empty, expired session, the data is gone
///    from the store, and a new session gets a different fresh id.
pub async fn b4_expired_session_is_empty_and_removed(f: Fixture) {
    let clock = clock();
    let store = store_builder(f.driver.clone(), &clock).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("author", "x").unwrap();
    s.set_expire_str("+1s").unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    clock.advance(2);
    let s = store.load(Some(&id), None).await.unwrap();
    assert!(s.id().is_none());
    assert!(s.is_empty());
    assert!(s.is_expired());
    assert!(s.get_value("author").is_none());
    let sid = SessionId::parse(&id).unwrap();
    assert!(
        f.driver.load(&sid, None).await.unwrap().is_none(),
        "an expired session is removed when loaded"
    );
    let fresh = store.new_session(None, None).await.unwrap();
    assert_ne!(id_of(&fresh), id);
    assert!(!fresh.is_expired());
    assert!(!fresh.is_empty());
    assert_eq!(fresh.atime(), fresh.ctime());
    let mut renewed = store.new_session(Some(&id), None).await.unwrap();
    assert_ne!(id_of(&renewed), id);
    renewed.discard();
}

/// 5. A session the driver removed directly is not found: `new(id)` issues another id.
pub async fn b5_session_removed_by_driver_gets_new_id(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    assert!(f
        .driver
        .remove(&SessionId::parse(&id).unwrap())
        .await
        .unwrap());
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    assert_ne!(id_of(&s), id);
    assert!(s.is_new());
    s.discard();
}

/// 6. A flushed session is found again by `new(id)`; `delete` + `flush` removes it.
pub async fn b6_flushed_session_is_found_and_delete_removes_it(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let id = {
        let mut s = store.new_session(None, None).await.unwrap();
        s.set("k", "v").unwrap();
        s.flush().await.unwrap();
        id_of(&s)
    };
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    assert_eq!(id_of(&s), id);
    assert!(!s.is_new());
    assert_eq!(s.get::<String>("k").unwrap().as_deref(), Some("v"));
    s.delete();
    s.flush().await.unwrap();
    let sid = SessionId::parse(&id).unwrap();
    assert!(f.driver.load(&sid, None).await.unwrap().is_none());
}

/// 7. After delete, `new(id)` gets a new id; an array with a null element and structured
///    values survive a reload.
pub async fn b7_after_delete_new_id_and_structured_values_survive(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    s.delete();
    s.flush().await.unwrap();
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    assert_ne!(id_of(&s), id);
    let value = json!([1, null, "three", {"four": [4.5, {"five": true}]}, "ünïcödé ☺"]);
    s.set_value("list", value.clone()).unwrap();
    s.flush().await.unwrap();
    let new_id = id_of(&s);
    let s = store.load(Some(&new_id), None).await.unwrap();
    assert_eq!(s.get_value("list"), Some(&value));
}
