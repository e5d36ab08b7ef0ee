//! Usage errors, hostile ids and options, and text from the store or the command line that a
//! terminal would act on: refused or escaped, nothing changed, no panic.

mod common;

use std::time::SystemTime;

use cgi_session::memcache::client::SetOptions;
use common::{cli, connect, make_session, mc, memcache_store, rt, stdout_json};
use memcached_harness::MemcachedServer;
use predicates::prelude::*;

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
    let client = rt.block_on(connect(&server));
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

/// Text from the store and from the command line reaches the terminal escaped: a parameter
/// name with ESC and CR (in `show`'s parameters and per-parameter expiry), the remote
/// address, and a mistyped id with control characters in the error.
#[test]
fn names_and_mistyped_ids_are_printed_escaped() {
    let server = MemcachedServer::start();
    let rt = rt();
    let client = rt.block_on(connect(&server));
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
