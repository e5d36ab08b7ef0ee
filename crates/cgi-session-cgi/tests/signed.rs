//! Signed cookies with key rotation in the CGI adapter, request after request over one store.

use std::time::{Duration, SystemTime};

use cgi_session::cookie::{Key, SigningKeys};
use cgi_session::{Expiry, MemoryDriver};
use cgi_session_cgi::{CgiRequest, CgiSession, SessionStore};

fn request(cookie: Option<&str>, query: Option<&str>) -> CgiRequest {
    let mut env = vec![("REQUEST_METHOD", "GET")];
    if let Some(c) = cookie {
        env.push(("HTTP_COOKIE", c));
    }
    if let Some(q) = query {
        env.push(("QUERY_STRING", q));
    }
    CgiRequest::from_parts(env, std::io::empty(), 0).unwrap()
}

/// The `Set-Cookie` value of a header block, as the browser sends it back.
fn cookie_pair(header: &str) -> String {
    let line = header
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .expect("a Set-Cookie line");
    line.split(';').next().unwrap().to_owned()
}

fn store() -> SessionStore {
    SessionStore::builder(MemoryDriver::new())
        .default_expire(600)
        .build()
}

/// A first request that logs in: the header's cookie pair.
fn login(store: &SessionStore, keys: &SigningKeys) -> String {
    let mut s = CgiSession::from_store_signed(store, &request(None, None), keys).unwrap();
    s.set_param("user", "ann").unwrap();
    s.flush().unwrap();
    cookie_pair(&s.header("text/html"))
}

fn user(store: &SessionStore, keys: &SigningKeys, cookie: &str) -> (Option<String>, String) {
    let mut s = CgiSession::from_store_signed(store, &request(Some(cookie), None), keys).unwrap();
    let user = s.param::<String>("user").unwrap();
    let header = s.header("text/html");
    s.discard();
    (user, cookie_pair(&header))
}

#[test]
fn a_signed_cookie_round_trips_and_an_unsigned_or_altered_one_is_no_session() {
    let store = store();
    let keys = SigningKeys::new(Key::generate());
    let cookie = login(&store, &keys);
    let value = &cookie["CGISESSID=".len()..];
    assert!(value.len() > 32, "signed: {value}");
    let (who, again) = user(&store, &keys, &cookie);
    assert_eq!(who.as_deref(), Some("ann"));
    assert_eq!(again, cookie, "the same key signs the same value");

    // The bare id (what an unsigned CGI::Session would send) and an altered value.
    let bare = format!("CGISESSID={}", &value[value.len() - 32..]);
    let mut altered = cookie.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'a' { b'b' } else { b'a' };
    for forged in [bare, String::from_utf8(altered).unwrap()] {
        let (who, fresh) = user(&store, &keys, &forged);
        assert_eq!(who, None, "{forged} reached the session");
        assert_ne!(fresh, cookie);
    }
    // Without keys, the signed value is not an id either: the adapters must agree.
    let mut plain = CgiSession::from_store(&store, &request(Some(&cookie), None)).unwrap();
    assert!(plain.is_new());
    plain.discard();
}

#[test]
fn rotation_accepts_the_previous_key_resigns_with_the_newest_and_refuses_a_retired_one() {
    let store = store();
    let (k1, k2, k3) = (Key::generate(), Key::generate(), Key::generate());
    let by_k1 = login(&store, &SigningKeys::new(k1.clone()));

    let rotated = SigningKeys::new(k2.clone()).previous(k1.clone());
    let (who, resigned) = user(&store, &rotated, &by_k1);
    assert_eq!(
        who.as_deref(),
        Some("ann"),
        "the previous key still verifies"
    );
    assert_ne!(
        resigned, by_k1,
        "the header carries the newest key's signature"
    );
    let value = &resigned["CGISESSID=".len()..];
    assert!(rotated.verify("CGISESSID", value).unwrap().by_newest);

    let retired = SigningKeys::new(k3).previous(k2);
    assert_eq!(user(&store, &retired, &by_k1).0, None, "k1 is retired");
    assert_eq!(user(&store, &retired, &resigned).0.as_deref(), Some("ann"));
}

#[test]
fn a_signed_id_in_the_query_string_counts_and_a_deleted_session_gets_an_unsigned_removal() {
    let store = store();
    let keys = SigningKeys::new(Key::generate());
    let cookie = login(&store, &keys);
    let value = &cookie["CGISESSID=".len()..];
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("CGISESSID", value)
        .finish();
    let mut s = CgiSession::from_store_signed(&store, &request(None, Some(&query)), &keys).unwrap();
    assert_eq!(s.param::<String>("user").unwrap().as_deref(), Some("ann"));
    s.delete();
    s.flush().unwrap();
    let removal = s.cookie().unwrap();
    assert_eq!(removal.value(), "");
    assert_eq!(removal.max_age(), Some(cookie::time::Duration::ZERO));
}

#[test]
fn the_cgi_header_carries_each_kind_of_expiry() {
    let store = store();
    let keys = SigningKeys::new(Key::generate());
    let mut s = CgiSession::from_store_signed(&store, &request(None, None), &keys).unwrap();
    assert!(s.header("text/html").contains("; Max-Age=600"));
    s.set_expiry(Expiry::OnSessionEnd);
    let header = s.header("text/html");
    assert!(
        !header.contains("Max-Age") && !header.contains("Expires"),
        "{header}"
    );
    s.set_expiry(Expiry::AtDateTime(
        SystemTime::now() + Duration::from_secs(60),
    ));
    let header = s.header("text/html");
    assert!(
        header.contains("Expires=") && header.contains("Max-Age="),
        "{header}"
    );
    s.flush().unwrap();
}
