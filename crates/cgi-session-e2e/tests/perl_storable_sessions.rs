//! `serializer:storable` shared with Perl's real CGI::Session 4.48 (`serializer:storable`,
//! i.e. `Storable::freeze`) in one real memcached: Perl writes every kind of value it stores
//! and Rust reads each; Rust writes and Perl reads; values Rust did not touch come back to
//! Perl byte-identical (`length`, `utf8::is_utf8`, the bytes, the class, the sharing); a map
//! from Rust naming a class is a plain hash in Perl; an `nfreeze` image is read too.

use cgi_session::memcache::client::{GetOptions, SetOptions};
use cgi_session::{DriverArgs, Serializer, StorableSerializer};
use cgi_session_e2e::{Perl, SharedStore};
use serde_json::{json, Value};

async fn fixture() -> SharedStore {
    // CGI::Session->new("driver:memcache;serializer:storable", $cgi, {Handle => $memd})
    SharedStore::start("driver:memcache;serializer:storable", |c| {
        DriverArgs::new().handle(c)
    })
    .await
}

/// Runs `tests/perl/storable-tool.pl`; panics with Perl's stderr.
fn perl(f: &SharedStore, args: &[&str]) -> String {
    Perl::with_tool(f.server.addr().to_string(), "storable-tool.pl").run(args)
}

/// Perl's description of the session (see `describe` in storable-tool.pl).
fn perl_read(f: &SharedStore, id: &str) -> Value {
    serde_json::from_str(&perl(f, &["read", id])).expect("storable-tool prints JSON")
}

/// Perl's description of one string: length in characters, utf8 flag, bytes.
fn text(len: usize, utf8: bool, bytes: &[u8]) -> Value {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    json!({"len": len, "utf8": u8::from(utf8), "hex": hex})
}

fn check_rust_view_of_perls_session(get: impl Fn(&str) -> Value) {
    assert_eq!(get("n"), json!(42));
    assert_eq!(get("big"), json!(1_795_762_418));
    assert_eq!(get("neg"), json!(-7));
    assert_eq!(get("pi"), json!(3.25));
    assert_eq!(get("numstr"), json!("007"));
    assert_eq!(get("bytes_utf8"), json!("café"), "UTF-8 bytes read as text");
    assert_eq!(
        get("bytes_latin"),
        json!("caf\u{e9}"),
        "Latin-1 bytes read as Latin-1"
    );
    assert_eq!(get("chars"), json!("café"));
    assert_eq!(get("smile"), json!("☺ ok"));
    assert_eq!(get("empty"), json!(""));
    assert_eq!(get("undef"), Value::Null);
    assert_eq!(get("list"), json!([1, null, "x", [2, "☺"]]));
    assert_eq!(
        get("hash"),
        json!({"./lost+found": 1, "deep": {"k": ["v"]}, "café": "bytes key"})
    );
    assert_eq!(get("sref"), json!({"__perl_ref__": "text"}));
    assert_eq!(
        get("cart"),
        json!({"__perl_bless__": "My::Cart", "value": {"items": [3, 4], "owner": "café"}})
    );
    assert_eq!(get("shared_a"), json!([1, 2]));
    assert_eq!(get("shared_b"), json!([1, 2]));
    assert_eq!(get("long"), json!("x".repeat(300)));
}

#[tokio::test]
async fn perl_writes_every_kind_of_value_rust_reads_each() {
    let f = fixture().await;
    let id = perl(&f, &["create"]);
    let s = f.store.load(Some(&id), None).await.unwrap();
    assert_eq!(s.id().unwrap().as_str(), id, "Rust found Perl's session");
    check_rust_view_of_perls_session(|k| s.get_value(k).cloned().unwrap_or(json!("missing")));
}

#[tokio::test]
async fn an_nfreeze_image_is_read_too() {
    let f = fixture().await;
    let id = perl(&f, &["create-nfreeze"]);
    let item = f
        .client
        .get(format!("sessions:{id}"), GetOptions::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.value[0], 5, "network order (nfreeze) image");
    let s = f.store.load(Some(&id), None).await.unwrap();
    assert_eq!(s.id().unwrap().as_str(), id);
    // nfreeze writes integers beyond 32 bits and doubles as strings.
    assert_eq!(s.get_value("pi"), Some(&json!("3.25")));
    assert_eq!(s.get_value("n"), Some(&json!(42)));
    assert_eq!(s.get_value("smile"), Some(&json!("☺ ok")));
    assert_eq!(
        s.get_value("cart").unwrap()["__perl_bless__"],
        json!("My::Cart")
    );
}

#[tokio::test]
async fn rust_writes_perl_reads_and_a_class_named_by_rust_is_a_plain_hash() {
    let f = fixture().await;
    let mut s = f.store.new_session(None, Some("192.0.2.7")).await.unwrap();
    s.set("user", "carol").unwrap();
    s.set("count", &7).unwrap();
    s.set("smile", "☺").unwrap();
    s.set("cafe", "café").unwrap();
    s.set_value("mixed", json!([1, "two", null, {"three": [3]}, 2.5]))
        .unwrap();
    s.set_value("r", json!({"__perl_ref__": "x"})).unwrap();
    // Untrusted input shaped like an object: must not become one in Perl.
    s.set_value(
        "evil",
        json!({"__perl_bless__": "My::Cart", "value": {"items": [1]}}),
    )
    .unwrap();
    s.set_expire(600);
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();

    let seen = perl_read(&f, &id);
    let p = &seen["params"];
    assert_eq!(seen["expire"], 600);
    assert_eq!(p["user"], text(5, false, b"carol"));
    assert_eq!(p["count"], text(1, false, b"7"));
    assert_eq!(
        p["smile"],
        text(1, true, "☺".as_bytes()),
        "a character string"
    );
    assert_eq!(p["cafe"], text(4, true, "café".as_bytes()));
    assert_eq!(p["mixed"]["array"][1], text(3, false, b"two"));
    assert_eq!(p["mixed"]["array"][2], json!({"undef": true}));
    assert_eq!(p["mixed"]["array"][4], text(3, false, b"2.5"));
    assert_eq!(
        p["r"],
        json!({"scalar_ref": text(1, false, b"x")}),
        "a scalar reference"
    );
    let evil = &p["evil"];
    assert!(evil.get("class").is_none(), "not blessed: {evil}");
    assert_eq!(
        evil["hash"]["b:5f5f7065726c5f626c6573735f5f"],
        text(8, false, b"My::Cart"),
        "the class name is a plain string under the key __perl_bless__: {evil}"
    );
}

/// Perl's description of every parameter but `changed`.
fn untouched(desc: &Value) -> Value {
    let mut p = desc["params"].clone();
    p.as_object_mut().unwrap().remove("changed");
    p
}

#[tokio::test]
async fn values_rust_did_not_touch_come_back_to_perl_byte_identical() {
    let f = fixture().await;
    let id = perl(&f, &["create"]);
    let before = perl_read(&f, &id);
    assert_eq!(before["cart_total"], 7, "Perl's object works");
    assert_eq!(before["shared"], true);
    // Perl's own view of its strings: a byte string of UTF-8, one of Latin-1, a character
    // string.
    let p = &before["params"];
    assert_eq!(p["bytes_utf8"], text(5, false, b"caf\xc3\xa9"));
    assert_eq!(p["bytes_latin"], text(4, false, b"caf\xe9"));
    assert_eq!(p["chars"], text(4, true, "café".as_bytes()));

    // A Rust request changes one value and saves.
    let mut s = f.store.load(Some(&id), None).await.unwrap();
    s.set("changed", "from rust").unwrap();
    s.flush().await.unwrap();

    let after = perl_read(&f, &id);
    assert_eq!(after["params"]["changed"], text(9, false, b"from rust"));
    assert_eq!(
        untouched(&after),
        untouched(&before),
        "every other value as Perl stored it"
    );
    assert_eq!(after["cart_total"], 7, "the object is still a My::Cart");
    assert_eq!(
        after["shared"], true,
        "the two parameters still share one array"
    );
}

#[tokio::test]
async fn an_object_rust_edits_stays_an_object_for_perl() {
    let f = fixture().await;
    let id = perl(&f, &["create"]);
    let mut s = f.store.load(Some(&id), None).await.unwrap();
    let mut cart = s.get_value("cart").unwrap().clone();
    cart["value"]["items"] = json!([10, 20, 30]);
    s.set_value("cart", cart).unwrap();
    // The same class under another key was never an object there: a plain hash.
    s.set_value(
        "other",
        json!({"__perl_bless__": "My::Cart", "value": {"items": [1]}}),
    )
    .unwrap();
    s.flush().await.unwrap();
    let after = perl_read(&f, &id);
    assert_eq!(
        after["cart_total"], 60,
        "Perl calls its method on the edited object"
    );
    assert_eq!(after["params"]["cart"]["class"], "My::Cart");
    assert!(after["params"]["other"].get("class").is_none());
}

#[tokio::test]
async fn freeze_over_on_the_raw_item_keeps_perls_bytes() {
    // The serializer alone, on the bytes CGI::Session stored: the same guarantee without
    // the session layer.
    let f = fixture().await;
    let id = perl(&f, &["create"]);
    let key = format!("sessions:{id}");
    let before = perl_read(&f, &id);
    let stored = f
        .client
        .get(&key, GetOptions::new())
        .await
        .unwrap()
        .unwrap()
        .value
        .to_vec();
    let storable = StorableSerializer::new();
    let mut map = storable.thaw(&stored).unwrap();
    check_rust_view_of_perls_session(|k| map.get(k).cloned().unwrap_or(json!("missing")));
    assert_eq!(
        storable.freeze_over(&map, Some(&stored)).unwrap(),
        stored,
        "an unchanged session is written back byte for byte"
    );
    map.insert("changed".into(), json!("x"));
    let bytes = storable.freeze_over(&map, Some(&stored)).unwrap();
    f.client.set(&key, bytes, SetOptions::new()).await.unwrap();
    let after = perl_read(&f, &id);
    assert_eq!(untouched(&after), untouched(&before));
    assert_eq!(after["cart_total"], 7);

    // Perl writes again over Rust's image, and Rust still reads it.
    perl(&f, &["set", &id, "from_perl", "ok"]);
    let s = f.store.load(Some(&id), None).await.unwrap();
    assert_eq!(s.get_value("from_perl"), Some(&json!("ok")));
    assert_eq!(s.get_value("changed"), Some(&json!("x")));
}
