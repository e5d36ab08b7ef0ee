//! `ls`, `show` and `rm` on memcached: one server, a pool, replicated sessions, and
//! `driver:memcached`'s bare-id keys among other applications' keys.

mod common;

use std::time::{Duration, Instant};

use cgi_session::memcache::client::{Client, ClientConfig, SetOptions};
use cgi_session::{store_from_dsn, DriverArgs, SessionStore};
use common::{cli, connect, make_session, mc, memcache_store, rt, stdout_json};
use memcached_harness::MemcachedServer;
use predicates::prelude::*;
use serde_json::Value;

#[test]
fn ls_show_rm_on_memcached() {
    let server = MemcachedServer::start();
    let runtime = rt();
    let (ids, client) = runtime.block_on(async {
        let client = connect(&server).await;
        let store = memcache_store(&client);
        let mut ids = Vec::new();
        for user in ["ann", "bob", "cyd"] {
            let params = [
                ("user", Value::from(user)),
                ("cart", serde_json::json!({"items": [1, 2], "total": 9.5})),
            ];
            ids.push(make_session(&store, &params, 600).await);
        }
        (ids, client)
    });

    // ls: short ids only, sizes, TTLs.
    let out = cli().args(mc(&server)).arg("ls").assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for id in &ids {
        assert!(text.contains(&format!("{}…", &id[..8])), "{text}");
        assert!(!text.contains(id.as_str()), "a full id was printed: {text}");
    }
    assert!(text.contains("3 session(s) on memcached"), "{text}");
    assert!(text.contains("ago)"), "{text}");

    let out = cli()
        .args(mc(&server))
        .args(["ls", "--json", "--full-ids", "--progress"])
        .assert()
        .success()
        .stderr(predicate::str::contains("listing keys on memcached"))
        .stderr(predicate::str::contains("listed 3 session(s)"));
    let json = stdout_json(&out);
    let listed = json.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for item in listed {
        assert!(ids.contains(&item["id"].as_str().unwrap().to_owned()));
        let ttl = item["ttl_secs"].as_i64().unwrap();
        assert!((590..=620).contains(&ttl), "{item}");
        assert!(item["size"].as_u64().unwrap() > 50);
        assert!(item["last_access"].as_i64().is_some());
    }

    // show by unique prefix: decoded, times, pretty params; the full id never printed.
    let prefix = &ids[0][..10];
    cli()
        .args(mc(&server))
        .args(["show", prefix])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "session      {}…",
            &ids[0][..8]
        )))
        .stdout(predicate::str::contains("format       json"))
        .stdout(predicate::str::contains("user = \"ann\""))
        .stdout(predicate::str::contains("\"total\": 9.5"))
        .stdout(predicate::str::contains("after 10m idle"))
        .stdout(predicate::str::contains("remote addr  192.0.2.7"))
        .stdout(predicate::str::contains("UTC"))
        .stdout(predicate::str::contains(ids[0].as_str()).not());
    let out = cli()
        .args(mc(&server))
        .args(["show", &ids[1], "--json", "--full-ids"])
        .assert()
        .success();
    let json = stdout_json(&out);
    assert_eq!(json["id"], ids[1].as_str());
    assert_eq!(json["params"]["user"], "bob");
    assert_eq!(json["etime"], 600);
    assert_eq!(json["expired"], false);

    // A session Perl wrote in CGI::Session's default (Data::Dumper) format.
    let perl_id = "5ee0c1d2a1b2c3d4e5f60718293a4b5c";
    let perl = format!(
        "$D = {{'_SESSION_ETIME' => 600,'_SESSION_ID' => '{perl_id}','user' => 'alice','_SESSION_REMOTE_ADDR' => '192.0.2.7','_SESSION_CTIME' => 1795762413,'_SESSION_EXPIRE_LIST' => {{'logged_in' => 300}},'_SESSION_ATIME' => 1795762413,'logged_in' => 1}};;$D"
    );
    runtime.block_on(async {
        client
            .set(
                format!("sessions:{perl_id}"),
                perl.as_bytes(),
                SetOptions::new().ttl(600),
            )
            .await
            .unwrap();
    });
    cli()
        .args(mc(&server))
        .args(["show", perl_id])
        .assert()
        .success()
        .stdout(predicate::str::contains("format       default"))
        .stdout(predicate::str::contains("user = \"alice\""))
        .stdout(predicate::str::contains("param expiry logged_in: 5m idle"));

    // Ambiguous and missing prefixes, malformed ids.
    cli()
        .args(mc(&server))
        .args(["show", "zzzz"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no session"));
    cli()
        .args(mc(&server))
        .args(["show", "../etc/passwd"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a session id"));

    // rm: removed, then missing.
    cli()
        .args(mc(&server))
        .args(["rm", &ids[2]])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "removed session {}…",
            &ids[2][..8]
        )));
    cli()
        .args(mc(&server))
        .args(["rm", &ids[2]])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no session"));
    // ann, bob and Perl's session remain. `lru_crawler metadump all` can miss an item for a
    // moment after it was read (memcached is moving it between LRU segments), so poll.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = cli()
            .args(mc(&server))
            .args(["ls", "--json"])
            .assert()
            .success();
        let listed = stdout_json(&out).as_array().unwrap().len();
        if listed == 3 {
            break;
        }
        assert!(
            listed < 3 && Instant::now() < deadline,
            "{listed} sessions listed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // purge is for files; with several servers a listing covers all of them, so a dead one
    // fails it clearly instead of returning a silently partial list.
    cli()
        .args(mc(&server))
        .args(["purge", "--expired"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("file driver"));
    let two = format!("{},127.0.0.1:1", server.addr());
    cli()
        .args(["--dsn", "driver:memcache", "--servers", &two, "ls"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("127.0.0.1:1"));
}

/// With several servers, `ls`, `show` and `rm` work on the whole pool, placing keys as the
/// application's client does (ketama by default, modula on request).
#[test]
fn session_commands_span_a_pool_of_servers() {
    use cgi_session::memcache::client::Distribution;
    let (a, b) = (MemcachedServer::start(), MemcachedServer::start());
    let servers = format!("{},{}", a.addr(), b.addr());
    let rt = rt();
    for (name, distribution) in [
        ("ketama", Distribution::Ketama),
        ("modula", Distribution::Modula),
    ] {
        let client = rt
            .block_on(Client::connect(
                ClientConfig::pool([a.addr().to_string(), b.addr().to_string()])
                    .distribution(distribution),
            ))
            .unwrap();
        let store = memcache_store(&client);
        let ids: Vec<String> = (0..12)
            .map(|n| rt.block_on(make_session(&store, &[("n", n.into())], 600)))
            .collect();
        let on_b: Vec<&String> = ids
            .iter()
            .filter(|id| client.server_for(format!("sessions:{id}")) == 1)
            .collect();
        assert!(
            !on_b.is_empty(),
            "{name}: some sessions live on the second server"
        );

        let args = [
            "--dsn",
            "driver:memcache",
            "--servers",
            &servers,
            "--distribution",
            name,
        ];
        let listed = stdout_json(
            &cli()
                .args(args)
                .args(["ls", "--json", "--full-ids"])
                .assert()
                .success(),
        );
        let listed: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["id"].as_str())
            .collect();
        for id in &ids {
            assert!(listed.contains(&id.as_str()), "{name}: ls missed {id}");
        }
        let target = on_b[0];
        cli()
            .args(args)
            .args(["show", &target[..12]])
            .assert()
            .success()
            .stdout(predicate::str::contains("n = "));
        cli()
            .args(args)
            .args(["rm", &target[..12]])
            .assert()
            .success();
        assert!(rt
            .block_on(store.load(Some(target), None))
            .unwrap()
            .is_empty());
        for id in ids.iter().filter(|id| *id != target) {
            let mut s = rt.block_on(store.load(Some(id), None)).unwrap();
            assert!(!s.is_empty(), "{name}: rm removed only its target");
            s.delete();
            rt.block_on(s.flush()).unwrap();
        }
    }
}

/// Sessions kept by `ReplicatedHandle` (one replica over two servers): `show` decodes the
/// replica envelope, `rm` removes every copy (tombstones, so the application's next read
/// cannot bring the session back from the other server), with or without `--replicas`.
#[test]
fn replicated_sessions_are_shown_decoded_and_removed_from_every_copy() {
    use cgi_session::memcache::client::GetOptions;
    use cgi_session::memcache::{decode_replica, MemcacheDriver, ReplicatedHandle};

    let (a, b) = (MemcachedServer::start(), MemcachedServer::start());
    let servers = format!("{},{}", a.addr(), b.addr());
    let rt = rt();
    let client = rt
        .block_on(Client::connect(ClientConfig::pool([
            a.addr().to_string(),
            b.addr().to_string(),
        ])))
        .unwrap();
    let store = SessionStore::builder(MemcacheDriver::new(ReplicatedHandle::new(
        client.clone(),
        1,
    )))
    .build();
    let first = rt.block_on(make_session(&store, &[("user", "ann".into())], 600));
    let second = rt.block_on(make_session(&store, &[("user", "bob".into())], 600));
    let copies = |id: &str| -> Vec<Option<bool>> {
        (0..2)
            .map(|server| {
                rt.block_on(
                    client
                        .server(server)
                        .unwrap()
                        .get(format!("sessions:{id}"), GetOptions::new()),
                )
                .unwrap()
                .map(|item| {
                    decode_replica(&item.value)
                        .expect("in the replica envelope")
                        .tombstone
                })
            })
            .collect()
    };
    assert_eq!(
        copies(&first),
        [Some(false), Some(false)],
        "two live copies"
    );
    let args = ["--dsn", "driver:memcache", "--servers", &servers];

    // show, without and with --replicas: decoded, and where the copies are.
    cli()
        .args(args)
        .args(["show", &first[..12]])
        .assert()
        .success()
        .stdout(predicate::str::contains("user = \"ann\""))
        .stdout(predicate::str::contains(
            "replicated   2 copies (version 1) on ",
        ))
        .stdout(predicate::str::contains(a.addr().to_string()))
        .stdout(predicate::str::contains(b.addr().to_string()))
        .stdout(predicate::str::contains(first.as_str()).not());
    let json = stdout_json(
        &cli()
            .args(args)
            .args(["--replicas", "1", "show", &first[..12], "--json"])
            .assert()
            .success(),
    );
    assert_eq!(json["params"]["user"], "ann");
    assert_eq!(json["replicas"]["copies"], 2);

    // ls with --replicas: each session once.
    let listed = stdout_json(
        &cli()
            .args(args)
            .args(["--replicas", "1", "ls", "--json", "--full-ids"])
            .assert()
            .success(),
    );
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = [first.as_str(), second.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);

    // rm without --replicas: every copy, said so.
    cli()
        .args(args)
        .args(["rm", &first[..12]])
        .assert()
        .success()
        .stdout(predicate::str::contains("all 2 copies (on 127.0.0.1:"))
        .stdout(predicate::str::contains(
            "replaced by a tombstone, so none comes back",
        ));
    assert_eq!(
        copies(&first),
        [Some(true), Some(true)],
        "no live copy left"
    );
    for _ in 0..2 {
        let s = rt.block_on(store.load(Some(&first), None)).unwrap();
        assert!(s.is_empty(), "the session did not come back");
    }
    cli()
        .args(args)
        .args(["--full-ids", "show", &first])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no session"));

    // rm with --replicas, and ls then leaves the tombstones out.
    cli()
        .args(args)
        .args(["--replicas", "1", "rm", &second[..12]])
        .assert()
        .success()
        .stdout(predicate::str::contains("all 2 copies"));
    assert_eq!(copies(&second), [Some(true), Some(true)]);
    assert!(rt
        .block_on(store.load(Some(&second), None))
        .unwrap()
        .is_empty());
    let listed = stdout_json(
        &cli()
            .args(args)
            .args(["--replicas", "1", "ls", "--json"])
            .assert()
            .success(),
    );
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");

    // A compressed session in the envelope (the plain driver cannot gunzip it).
    let compressed = SessionStore::builder(
        MemcacheDriver::builder(ReplicatedHandle::new(client.clone(), 1))
            .compress_above(16)
            .build()
            .unwrap(),
    )
    .build();
    let third = rt.block_on(make_session(&compressed, &[("user", "cyd".into())], 600));
    cli()
        .args(args)
        .args(["--full-ids", "show", &third])
        .assert()
        .success()
        .stdout(predicate::str::contains("user = \"cyd\""));
    cli()
        .args(args)
        .args(["--full-ids", "rm", &third])
        .assert()
        .success()
        .stdout(predicate::str::contains("all 2 copies"));
    assert_eq!(copies(&third), [Some(true), Some(true)]);
}

/// `driver:memcached` (Debian's Perl driver's scheme): sessions under their bare ids, among
/// other applications' keys, which `ls` leaves out and `rm` refuses to remove.
#[test]
fn driver_memcached_keys_are_bare_ids_among_other_keys() {
    let server = MemcachedServer::start();
    let rt = rt();
    let client = rt.block_on(connect(&server));
    let store = store_from_dsn(
        "driver:memcached;serializer:default",
        &DriverArgs::new().memcached(client.clone()),
    )
    .unwrap();
    let id = rt.block_on(make_session(&store, &[("user", "ann".into())], 600));
    for (key, value) in [
        ("42", &b"7"[..]),
        ("user_7", br#"{"name":"x"}"#),
        ("cache:page", b"<html>"),
    ] {
        rt.block_on(client.set(key, value, SetOptions::new()))
            .unwrap();
    }
    let args = [
        "--dsn",
        "driver:memcached",
        "--servers",
        &server.addr().to_string(),
    ]
    .map(|s| s.to_owned());

    let listed = stdout_json(
        &cli()
            .args(&args)
            .args(["ls", "--json", "--full-ids"])
            .assert()
            .success(),
    );
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], id.as_str());
    cli()
        .args(&args)
        .arg("ls")
        .assert()
        .success()
        .stdout(predicate::str::contains("1 session(s)"))
        .stdout(predicate::str::contains("2 other key(s)"));
    cli()
        .args(&args)
        .args(["show", &id[..12]])
        .assert()
        .success()
        .stdout(predicate::str::contains("format       default"))
        .stdout(predicate::str::contains("user = \"ann\""));

    cli()
        .args(&args)
        .args(["rm", "user_7"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not removed"));
    assert!(rt
        .block_on(client.get("user_7", Default::default()))
        .unwrap()
        .is_some());
    cli().args(&args).args(["rm", &id[..12]]).assert().success();
    assert!(rt
        .block_on(client.get(id.as_str(), Default::default()))
        .unwrap()
        .is_none());

    cli()
        .args(&args)
        .args(["--prefix", "myapp:", "ls"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bare ids"));
}
