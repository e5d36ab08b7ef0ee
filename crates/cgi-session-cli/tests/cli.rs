//! Every subcommand against real memcached processes (memcached-harness) and a temporary
//! directory for the file driver: output and exit codes.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use assert_cmd::Command;
use cgi_session::memcache::client::{Client, ClientConfig, SetOptions};
use cgi_session::{builder_from_dsn, store_from_dsn, DriverArgs, ManualClock, SessionStore};
use memcached_harness::MemcachedServer;
use predicates::prelude::*;
use serde_json::Value;

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cgi-session"))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Creates a session with `params` and an idle timeout; returns its full id.
async fn make_session(store: &SessionStore, params: &[(&str, Value)], expire: i64) -> String {
    let mut s = store.new_session(None, Some("192.0.2.7")).await.unwrap();
    for (k, v) in params {
        s.set_value(k, v.clone()).unwrap();
    }
    s.set_expire(expire);
    s.flush().await.unwrap();
    s.id().unwrap().as_str().to_owned()
}

fn memcache_store(client: &Client) -> SessionStore {
    store_from_dsn("driver:memcache", &DriverArgs::new().handle(client.clone())).unwrap()
}

fn mc(server: &MemcachedServer) -> [String; 4] {
    [
        "--dsn".into(),
        "driver:memcache".into(),
        "--servers".into(),
        server.addr().to_string(),
    ]
}

fn file(dir: &Path) -> [String; 4] {
    [
        "--dsn".into(),
        "driver:file".into(),
        "--dir".into(),
        dir.display().to_string(),
    ]
}

fn stdout_json(assert: &assert_cmd::assert::Assert) -> Value {
    serde_json::from_slice(&assert.get_output().stdout).unwrap()
}

#[test]
fn check_reports_each_server_and_names_the_dead_one() {
    let alive = MemcachedServer::builder().args(["-I", "2m"]).start();
    let mut dead = MemcachedServer::start();
    let (a, d) = (alive.addr().to_string(), dead.addr().to_string());

    cli()
        .args(["--dsn", "driver:memcache", "--servers", &a, "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "ok    {a}  memcached 1.6"
        )))
        .stdout(predicate::str::contains("item size limit 2.0 MiB"))
        .stdout(predicate::str::contains("round trip"));

    dead.kill();
    let servers = format!("{a},{d}");
    cli()
        .args(["--dsn", "driver:memcache", "--servers", &servers, "check"])
        .args(["--timeout", "500ms"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!("ok    {a}")))
        .stdout(predicate::str::contains(format!("FAIL  {d}")))
        .stderr(predicate::str::contains(format!(
            "1 of 2 memcached server(s) failed the check: {d}"
        )));
}

#[test]
fn check_on_the_file_driver_probes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    cli()
        .args(file(dir.path()))
        .arg("check")
        .assert()
        .success()
        .stdout(predicate::str::contains("file driver"))
        .stdout(predicate::str::contains("0 session(s)"));
    // The probe leaves nothing behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let missing = dir.path().join("missing");
    cli()
        .args(file(&missing))
        .arg("check")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL"))
        .stderr(predicate::str::contains(missing.display().to_string()));
}

#[test]
fn stats_reports_counters_and_warns_about_evictions() {
    let server = MemcachedServer::builder().memory_mb(2).start();
    let runtime = rt();
    runtime.block_on(async {
        let client = Client::connect(ClientConfig::new(server.addr().to_string()))
            .await
            .unwrap();
        let store = memcache_store(&client);
        make_session(&store, &[("greet_en", "Hi !".into())], 600).await;
    });

    let out = cli()
        .args(mc(&server))
        .args(["stats", "--json"])
        .assert()
        .success();
    let json = stdout_json(&out);
    let s = &json[0];
    assert_eq!(s["ok"], true);
    assert_eq!(s["server"], server.addr().to_string());
    assert_eq!(s["items"], 1);
    assert_eq!(s["limit_bytes"], 2 * 1024 * 1024);
    assert_eq!(s["evictions"], 0);
    assert!(s["curr_connections"].as_u64().unwrap() >= 1);
    cli()
        .args(mc(&server))
        .arg("stats")
        .assert()
        .success()
        .stdout(predicate::str::contains("items        1"))
        .stdout(predicate::str::contains("used of 2.0 MiB"))
        .stdout(predicate::str::contains("no session lost"));

    // Fill the 2 MiB server far beyond its memory: memcached evicts, the report says what
    // that means.
    runtime.block_on(async {
        let client = Client::connect(ClientConfig::new(server.addr().to_string()))
            .await
            .unwrap();
        let big = vec![b'x'; 100_000];
        for i in 0..60 {
            client
                .set(format!("filler{i}"), &big, SetOptions::new())
                .await
                .unwrap();
        }
    });
    cli()
        .args(mc(&server))
        .arg("stats")
        .assert()
        .success()
        .stdout(predicate::str::contains("sessions were lost"));

    // --watch refreshes in place (clear screen) --count times.
    let out = cli()
        .args(mc(&server))
        .args(["stats", "--watch", "--interval", "1", "--count", "2"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert_eq!(text.matches("\x1b[2J\x1b[H").count(), 2, "{text}");
}

#[test]
fn stats_on_a_dead_server_fails() {
    let mut server = MemcachedServer::start();
    server.kill();
    cli()
        .args(mc(&server))
        .args(["stats", "--timeout", "500ms"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!("FAIL  {}", server.addr())))
        .stderr(predicate::str::contains(server.addr().to_string()));
}

#[test]
fn ls_show_rm_on_memcached() {
    let server = MemcachedServer::start();
    let runtime = rt();
    let (ids, client) = runtime.block_on(async {
        let client = Client::connect(ClientConfig::new(server.addr().to_string()))
            .await
            .unwrap();
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

fn set_mtime(path: &Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

#[test]
fn ls_show_rm_purge_on_the_file_driver() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = rt();
    let store = store_from_dsn("driver:file", &DriverArgs::new().directory(dir.path())).unwrap();
    // A store whose clock runs an hour late writes sessions last accessed an hour ago.
    let an_hour_ago = builder_from_dsn("driver:file", &DriverArgs::new().directory(dir.path()))
        .unwrap()
        .clock(ManualClock::new(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
                - 3600,
        ))
        .build();
    let (live, stale, forever) = runtime.block_on(async {
        (
            make_session(&store, &[("greet_en", "Hi !".into())], 600).await,
            make_session(&an_hour_ago, &[("greet_en", "old".into())], 60).await,
            make_session(&store, &[("greet_en", "kept".into())], 0).await,
        )
    });
    // The stale session was last touched an hour ago: its 60 s idle timeout has passed.
    let stale_path = dir.path().join(format!("cgisess_{stale}"));
    set_mtime(&stale_path, Duration::from_secs(3600));
    // A file that is not a session decodes to nothing but does not break the listing.
    std::fs::write(
        dir.path().join("cgisess_garbage"),
        b"\xff\xfe not a session",
    )
    .unwrap();

    let out = cli().args(file(dir.path())).args(["ls"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("4 session(s)"), "{text}");
    assert!(text.contains("expired"), "{text}");
    assert!(text.contains("never"), "{text}");
    assert!(text.contains("1 do not decode"), "{text}");

    let out = cli()
        .args(file(dir.path()))
        .args(["ls", "--json", "--full-ids"])
        .assert()
        .success();
    let json = stdout_json(&out);
    let find = |id: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(find(&stale)["ttl_secs"], 0);
    assert_eq!(find(&forever)["ttl_secs"], Value::Null);
    assert!((590..=600).contains(&find(&live)["ttl_secs"].as_i64().unwrap()));

    cli()
        .args(file(dir.path()))
        .args(["show", &live])
        .assert()
        .success()
        .stdout(predicate::str::contains("greet_en = \"Hi !\""));
    cli()
        .args(file(dir.path()))
        .args(["show", &stale])
        .assert()
        .success()
        .stdout(predicate::str::contains("EXPIRED"));
    cli()
        .args(file(dir.path()))
        .args(["show", "garbage"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("could not be decoded"));

    // purge --expired: a dry run first, then for real; undecodable files are left alone.
    cli()
        .args(file(dir.path()))
        .args(["purge", "--expired", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "would remove 1 expired session(s)",
        ));
    assert!(stale_path.exists());
    cli()
        .args(file(dir.path()))
        .args(["purge", "--expired"])
        .assert()
        .success()
        .stdout(predicate::str::contains("removed 1 expired session(s)"))
        .stdout(predicate::str::contains("2 kept"))
        .stdout(predicate::str::contains("1 do not decode"));
    assert!(!stale_path.exists());
    assert!(dir.path().join(format!("cgisess_{live}")).exists());

    cli()
        .args(file(dir.path()))
        .args(["rm", &forever])
        .assert()
        .success();
    assert!(!dir.path().join(format!("cgisess_{forever}")).exists());
    cli()
        .args(file(dir.path()))
        .args(["stats", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"sessions\": 2"));
}

#[test]
fn usage_errors_exit_2() {
    cli()
        .args(["--dsn", "driver:memory", "ls"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("driver:memory"));
    cli().args(["--dsn", "driver:mysql", "ls"]).assert().code(2);
    cli().args(["--dsn", "nonsense", "ls"]).assert().code(2);
    cli().args(["purge"]).assert().code(2);
    cli().args(["frobnicate"]).assert().code(2);
    cli().args(["stats", "--interval", "0"]).assert().code(2);
    cli().arg("--help").assert().success();
}

/// Hostile ids and options on the command line: a clear error and a non-zero exit, nothing
/// written to or removed from memcached, no panic.
#[test]
fn hostile_arguments_are_refused_and_change_nothing() {
    let server = MemcachedServer::start();
    let rt = rt();
    let client = rt
        .block_on(Client::connect(ClientConfig::new(
            server.addr().to_string(),
        )))
        .unwrap();
    let store = memcache_store(&client);
    let id = rt.block_on(make_session(&store, &[("user", "ann".into())], 600));
    let before = server.stats();
    let long = "a".repeat(300);
    for hostile in [
        "abc\r\nflush_all",
        "abc def",
        "../../etc/passwd",
        "..",
        "a/b",
        "ünïcödé",
        long.as_str(),
        "",
    ] {
        for command in ["show", "rm"] {
            let out = cli().args(mc(&server)).args([command, hostile]).assert();
            let output = out.get_output();
            let code = output.status.code().unwrap_or(-1);
            assert!(code == 1 || code == 2, "{command} {hostile:?}: exit {code}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!stderr.is_empty(), "{command} {hostile:?}: says why");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
    let bad_prefix = cli()
        .args(mc(&server))
        .args(["--prefix", "bad prefix", "ls"])
        .assert();
    assert_ne!(bad_prefix.get_output().status.code(), Some(0));
    let after = server.stats();
    for counter in ["cmd_set", "delete_hits", "curr_items", "cmd_flush"] {
        assert_eq!(before[counter], after[counter], "{counter} changed");
    }
    let s = rt.block_on(store.load(Some(&id), None)).unwrap();
    assert_eq!(s.get::<String>("user").unwrap().as_deref(), Some("ann"));
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

/// `check` over TLS (memcached -Z, certificates made here) and with memcached's -Y login:
/// the right settings pass; a wrong CA or password fails clearly, naming the server.
#[test]
fn check_over_tls_and_with_authentication() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    };
    let (ca_pem, issuer) = ca("test CA");
    let (other_pem, _) = ca("other CA");
    let server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let ca_file = write("ca.pem", &ca_pem);
    let other_ca = write("other.pem", &other_pem);
    let cert = write("server.pem", &server_cert.pem());
    let key = write("server.key", &server_key.serialize_pem());

    let tls = MemcachedServer::builder().tls(&cert, &key).start();
    let addr = tls.addr().to_string();
    let base = ["--dsn", "driver:memcache", "--servers", &addr];
    cli()
        .args(base)
        .args(["--tls-ca", ca_file.to_str().unwrap(), "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ok"));
    cli()
        .args(base)
        .args(["--tls-ca", other_ca.to_str().unwrap(), "check"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(addr.as_str()))
        .stdout(predicate::str::contains("CA file"));

    let auth = MemcachedServer::builder().auth("ops", "s3cret").start();
    let addr = auth.addr().to_string();
    let base = ["--dsn", "driver:memcache", "--servers", &addr];
    cli()
        .args(base)
        .args(["--auth-user", "ops", "check"])
        .env("MEMCACHED_PASSWORD", "s3cret")
        .assert()
        .success();
    cli()
        .args(base)
        .args(["--auth-user", "ops", "check"])
        .env("MEMCACHED_PASSWORD", "Xq7-bad-pass")
        .assert()
        .code(1)
        .stdout(predicate::str::contains(addr.as_str()))
        .stdout(predicate::str::contains("refused authentication"))
        .stdout(predicate::str::contains("Xq7-bad-pass").not());
    cli()
        .args(base)
        .args(["--auth-user", "ops", "check"])
        .env_remove("MEMCACHED_PASSWORD")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("MEMCACHED_PASSWORD"));
}

/// Text from the store and from the command line reaches the terminal escaped: a parameter
/// name with ESC and CR (in `show`'s parameters and per-parameter expiry), the remote
/// address, and a mistyped id with control characters in the error.
#[test]
fn names_and_mistyped_ids_are_printed_escaped() {
    let server = MemcachedServer::start();
    let rt = rt();
    let client = rt
        .block_on(Client::connect(ClientConfig::new(
            server.addr().to_string(),
        )))
        .unwrap();
    let id = "0123456789abcdef0123456789abcdef";
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // As another program may store it: the name is the application's (or an attacker's).
    let stored = serde_json::json!({
        "_SESSION_ID": id,
        "_SESSION_CTIME": now,
        "_SESSION_ATIME": now,
        "_SESSION_REMOTE_ADDR": "192.0.2.7\u{1b}[8m",
        "_SESSION_EXPIRE_LIST": {"evil\u{1b}[2J\rname": 60},
        "evil\u{1b}[2J\rname": "v\u{1b}[0m",
        "csi\u{9b}2J": 1,
    });
    rt.block_on(client.set(
        format!("sessions:{id}"),
        serde_json::to_vec(&stored).unwrap(),
        SetOptions::new(),
    ))
    .unwrap();

    let raw_controls = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        text.chars()
            .any(|c| c != '\n' && (c.is_control() || c == '\u{9b}'))
    };
    let out = cli()
        .args(mc(&server))
        .args(["show", &id[..12]])
        .assert()
        .success();
    let stdout = &out.get_output().stdout;
    assert!(!raw_controls(stdout), "{}", String::from_utf8_lossy(stdout));
    let text = String::from_utf8_lossy(stdout);
    assert!(
        text.contains(r#"  evil\u{1b}[2J\rname = "v\u001b[0m""#),
        "{text}"
    );
    assert!(
        text.contains(r"param expiry evil\u{1b}[2J\rname: 1m idle"),
        "{text}"
    );
    assert!(text.contains(r"csi\u{9b}2J = 1"), "{text}");
    assert!(text.contains(r"remote addr  192.0.2.7\u{1b}[8m"), "{text}");

    // --json stays valid JSON with the same names, and has no raw control characters either.
    let out = cli()
        .args(mc(&server))
        .args(["show", &id[..12], "--json"])
        .assert()
        .success();
    assert!(!raw_controls(&out.get_output().stdout));
    let json = stdout_json(&out);
    assert_eq!(json["params"]["evil\u{1b}[2J\rname"], "v\u{1b}[0m");
    assert_eq!(json["params"]["csi\u{9b}2J"], 1);

    // A mistyped id: the error shows it escaped, with and without --full-ids.
    for full in [false, true] {
        let mut cmd = cli();
        cmd.args(mc(&server));
        if full {
            cmd.arg("--full-ids");
        }
        let out = cmd.args(["show", "ab\u{1b}[2J\rcd"]).assert().code(2);
        let stderr = &out.get_output().stderr;
        assert!(!raw_controls(stderr), "{}", String::from_utf8_lossy(stderr));
        let stderr = String::from_utf8_lossy(stderr);
        assert!(stderr.contains(r"ab\u{1b}[2J\r"), "{stderr}");
        assert!(stderr.contains("is not a session id"), "{stderr}");
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
                rt.block_on(client.get_on(server, format!("sessions:{id}"), GetOptions::new()))
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
    let client = rt
        .block_on(Client::connect(ClientConfig::new(
            server.addr().to_string(),
        )))
        .unwrap();
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
