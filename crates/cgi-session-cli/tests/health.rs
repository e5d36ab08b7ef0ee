//! `check` and `stats` against real memcached processes (memcached-harness), over TLS and
//! with a login, and on a session directory: output and exit codes.

mod common;

use cgi_session::memcache::client::SetOptions;
use common::{cli, connect, file, make_session, mc, memcache_store, rt, stdout_json};
use memcached_harness::MemcachedServer;
use predicates::prelude::*;

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

#[test]
fn stats_reports_counters_and_warns_about_evictions() {
    let server = MemcachedServer::builder().memory_mb(2).start();
    let runtime = rt();
    runtime.block_on(async {
        let client = connect(&server).await;
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
        let client = connect(&server).await;
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
