//! Rust and Perl's CGI::Session sharing sessions in one real memcached: both directions,
//! nested data, UTF-8, numbers vs numeric strings, expiry and per-parameter expiry set on one
//! side and honoured by the other, delete seen across, and the stored item's shape.

use cgi_session::memcache::client::{Client, GetOptions};
use cgi_session::{ManualClock, SessionStore};
use cgi_session_e2e::{connect, perl_sharing_store, Perl};
use memcached_harness::MemcachedServer;
use serde_json::json;

struct Fixture {
    server: MemcachedServer,
    client: Client,
    perl: Perl,
    clock: ManualClock,
    store: SessionStore,
}

async fn fixture() -> Fixture {
    let server = MemcachedServer::start();
    let client = connect(&server).await;
    let clock = ManualClock::starting_now();
    // What a Rust service sharing sessions with Perl configures: the DSN's serializer is
    // `default` (CGI::Session's), the key prefix stays `sessions:`, keys are not hashed.
    let store = perl_sharing_store(&client).clock(clock.clone()).build();
    let perl = Perl::new(server.addr().to_string());
    Fixture {
        server,
        client,
        perl,
        clock,
        store,
    }
}

#[tokio::test]
async fn perl_creates_rust_reads_and_edits_perl_reads_the_edit() {
    let f = fixture().await;
    let id = f.perl.create(
        &json!({
            "user": "alice", "n": 42, "s": "42", "smile": "☺ café",
            "list": [1, null, "x"], "h": {"./lost+found": 1, "deep": {"k": ["v"]}}
        }),
        Some("600"),
        &["logged_in=300"],
    );

    let mut s = f.store.new_session(Some(&id), None).await.unwrap();
    assert_eq!(s.id().unwrap().as_str(), id, "Rust found Perl's session");
    assert!(!s.is_new());
    assert_eq!(s.get_value("user"), Some(&json!("alice")));
    assert_eq!(
        s.get_value("n"),
        Some(&json!(42)),
        "a Perl number is a number"
    );
    assert_eq!(
        s.get_value("s"),
        Some(&json!("42")),
        "a Perl string stays a string"
    );
    assert_eq!(s.get::<String>("smile").unwrap().as_deref(), Some("☺ café"));
    assert_eq!(s.get_value("list"), Some(&json!([1, null, "x"])));
    assert_eq!(s.get_value("h").unwrap()["deep"]["k"][0], "v");
    assert_eq!(s.expire(), Some(600));
    assert_eq!(s.param_expire("logged_in"), Some(300));

    s.set("user", "bob").unwrap();
    s.set("n", &43).unwrap();
    s.set("from_rust", &json!({"nested": ["a", "b"], "none": null}))
        .unwrap();
    s.set("utf", "日本語").unwrap();
    s.flush().await.unwrap();

    let seen = f.perl.read(&id);
    assert_eq!(seen["is_empty"], false);
    let p = &seen["params"];
    assert_eq!(p["user"], "bob");
    assert_eq!(
        seen["plus_one"]["n"], 44,
        "Perl does arithmetic on Rust's number"
    );
    assert_eq!(p["s"], "42");
    assert_eq!(p["from_rust"], json!({"nested": ["a", "b"], "none": null}));
    assert_eq!(p["utf"], "日本語");
    assert_eq!(seen["lengths"]["utf"], 3, "Perl sees characters, not bytes");
    assert_eq!(seen["lengths"]["smile"], 6);
    assert_eq!(seen["expire"], 600);
}

#[tokio::test]
async fn rust_creates_perl_reads() {
    let f = fixture().await;
    let mut s = f.store.new_session(None, Some("192.0.2.7")).await.unwrap();
    s.set("user", "carol").unwrap();
    s.set("count", &7).unwrap();
    s.set("zip", "007").unwrap();
    s.set("neg", &-12).unwrap();
    s.set("quote", "it's a \\ \"test\" $x @y").unwrap();
    s.set("smile", "☺").unwrap();
    s.set_value("mixed", json!([1, "two", null, {"three": [3]}]))
        .unwrap();
    s.set_expire_str("+10m").unwrap();
    s.set_param_expire_str("logged_in", "+5m").unwrap();
    s.set("logged_in", &1).unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();

    let seen = f.perl.read(&id);
    assert_eq!(seen["id"], id.as_str());
    let p = &seen["params"];
    assert_eq!(p["user"], "carol");
    assert_eq!(seen["plus_one"]["count"], 8);
    assert_eq!(seen["plus_one"]["neg"], -11);
    assert_eq!(p["zip"], "007", "a numeric string keeps its leading zeros");
    assert_eq!(p["quote"], "it's a \\ \"test\" $x @y");
    assert_eq!(seen["lengths"]["smile"], 1);
    assert_eq!(p["mixed"], json!([1, "two", null, {"three": [3]}]));
    assert_eq!(seen["expire"], 600);
    assert_eq!(seen["param_expires"]["logged_in"], json!(300));
    assert_eq!(seen["remote_addr"], "192.0.2.7");
    assert_eq!(seen["ctime"], s.ctime());
}

#[tokio::test]
async fn expiry_set_on_one_side_is_honoured_by_the_other() {
    let f = fixture().await;
    // Perl sets the timeout; Rust, 20 s later, finds the session expired and removes it.
    let id = f.perl.create(&json!({"user": "dave"}), Some("10"), &[]);
    f.clock.advance(20);
    let s = f.store.load(Some(&id), None).await.unwrap();
    assert!(s.is_empty() && s.is_expired());
    assert_eq!(
        f.perl.read(&id)["is_empty"],
        true,
        "Rust removed it for Perl too"
    );

    // Rust sets the timeout; Perl, 20 s later, finds the session expired.
    let rust_now = ManualClock::starting_now();
    let store = perl_sharing_store(&f.client).clock(rust_now).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("user", "erin").unwrap();
    s.set_expire(10);
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    assert_eq!(f.perl.read(&id)["is_expired"], false, "alive now");
    let later = f.perl.at_offset(20).read(&id);
    assert_eq!(later["is_expired"], true, "{later}");
    assert_eq!(later["is_empty"], true);
}

#[tokio::test]
async fn per_parameter_expiry_crosses_both_ways() {
    let f = fixture().await;
    let id = f.perl.create(
        &json!({"user": "fay", "logged_in": 1}),
        None,
        &["logged_in=30"],
    );
    f.clock.advance(40);
    let mut s = f.store.load(Some(&id), None).await.unwrap();
    assert!(
        s.get_value("logged_in").is_none(),
        "expired parameter removed"
    );
    assert_eq!(s.get_value("user"), Some(&json!("fay")));
    assert_eq!(
        s.param_expire("logged_in"),
        Some(30),
        "the list entry stays"
    );
    s.flush().await.unwrap();

    let rust_now = ManualClock::starting_now();
    let store = perl_sharing_store(&f.client).clock(rust_now).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("user", "gus").unwrap();
    s.set("logged_in", &1).unwrap();
    s.set_param_expire("logged_in", 30);
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    let now = f.perl.read(&id);
    assert_eq!(now["params"]["logged_in"], 1);
    let later = f.perl.at_offset(40).read(&id);
    assert!(later["params"].get("logged_in").is_none(), "{later}");
    assert_eq!(later["params"]["user"], "gus");
}

#[tokio::test]
async fn delete_on_one_side_is_seen_on_the_other() {
    let f = fixture().await;
    let id = f.perl.create(&json!({"user": "hal"}), None, &[]);
    let mut s = f.store.load(Some(&id), None).await.unwrap();
    s.delete();
    s.flush().await.unwrap();
    assert_eq!(f.perl.read(&id)["is_empty"], true);

    let mut s = f.store.new_session(None, None).await.unwrap();
    s.set("user", "ida").unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    f.perl.delete(&id);
    assert!(f.store.load(Some(&id), None).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_stored_item_has_the_perl_memcache_drivers_shape() {
    let f = fixture().await;
    let perl_id = f.perl.create(&json!({"user": "jo"}), None, &[]);
    let mut s = f.store.new_session(None, None).await.unwrap();
    s.set("user", "kim").unwrap();
    s.flush().await.unwrap();
    let rust_id = s.id().unwrap().as_str().to_owned();

    for (id, expect_ttl) in [(&perl_id, false), (&rust_id, true)] {
        let item = f
            .client
            .get(
                format!("sessions:{id}"),
                GetOptions::new().flags(true).ttl_remaining(true),
            )
            .await
            .unwrap()
            .expect("stored under sessions:<id>");
        assert_eq!(
            item.flags,
            Some(0),
            "flags 0, as the Perl memcache driver stores"
        );
        let text = String::from_utf8(item.value.to_vec()).unwrap();
        assert!(text.starts_with("$D = {"), "{text}");
        assert!(text.ends_with(";;$D"), "{text}");
        // The Perl memcache driver stores without a TTL; ours sets one, which Perl ignores.
        assert_eq!(item.ttl_remaining.unwrap() > 0, expect_ttl, "{id}");
    }
    // Perl rewrites the Rust item on load (CGI::Session rewrites every loaded session), and
    // Rust still reads it afterwards.
    assert_eq!(f.perl.read(&rust_id)["params"]["user"], "kim");
    let s = f.store.load(Some(&rust_id), None).await.unwrap();
    assert_eq!(s.get::<String>("user").unwrap().as_deref(), Some("kim"));
    drop(f.server);
}
