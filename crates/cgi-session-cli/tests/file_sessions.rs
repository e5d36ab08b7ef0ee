//! `ls`, `show`, `rm`, `purge` and `stats` on the file driver's session directory.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use cgi_session::{builder_from_dsn, store_from_dsn, DriverArgs, ManualClock};
use common::{cli, file, make_session, rt, stdout_json};
use predicates::prelude::*;
use serde_json::Value;

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
fn show_names_an_absolute_expiry_that_comes_before_the_idle_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_from_dsn("driver:file", &DriverArgs::new().directory(dir.path())).unwrap();
    let id = rt().block_on(async {
        let mut s = store.new_session(None, None).await.unwrap();
        s.set("greet_en", "Hi !").unwrap();
        s.set_expire(3600);
        s.set_expires_at(SystemTime::now() + Duration::from_secs(600));
        s.flush().await.unwrap();
        s.id().unwrap().as_str().to_owned()
    });
    let out = cli()
        .args(file(dir.path()))
        .args(["show", &id])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("expires      at a fixed time: "), "{text}");
    let out = cli()
        .args(file(dir.path()))
        .args(["show", "--json", &id])
        .assert()
        .success();
    let json = stdout_json(&out);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = json["expires_at"].as_i64().unwrap();
    assert!((now + 590..=now + 600).contains(&at), "{at} vs now {now}");
}
