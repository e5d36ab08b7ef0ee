//! The demo behind a reverse proxy: `--trusted-proxies` makes the forwarded address the
//! client's (for `--ip-match` and the session's `remote_addr`); without it the header is
//! ignored.

use cgi_session_demo::SessionInfo;

mod common;
use common::{http_request, Demo};

/// `POST /greet` as the client `xff` (through a proxy on loopback): the session's cookie.
fn act_as(demo: &Demo, xff: &str) -> String {
    let header = format!("X-Forwarded-For: {xff}");
    let (status, cookie, body) =
        http_request(demo.addr, "POST", "/greet", None, &[&header], "greet_en=Hi");
    assert_eq!(status, 303, "{body}");
    cookie.expect("a session")
}

/// `GET /api/session` with `cookie` as the client `xff`.
fn info_as(demo: &Demo, cookie: &str, xff: &str) -> SessionInfo {
    let header = format!("X-Forwarded-For: {xff}");
    let (status, _, body) = http_request(
        demo.addr,
        "GET",
        "/api/session",
        Some(cookie),
        &[&header],
        "",
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let demo = Demo::start(&["--ip-match", "--trusted-proxies", "127.0.0.1,::1"]);
    let cookie = act_as(&demo, "192.0.2.1");
    let info = info_as(&demo, &cookie, "192.0.2.1");
    assert_eq!(info.remote_addr.as_deref(), Some("192.0.2.1"));
    assert_eq!(info.greet_en.as_deref(), Some("Hi"));
    // A client who prepends an address of their own changes nothing.
    let info = info_as(&demo, &cookie, "198.51.100.1, 192.0.2.1");
    assert_eq!(info.greet_en.as_deref(), Some("Hi"));
    // The cookie used from another client address: ip matching gives no session.
    let info = info_as(&demo, &cookie, "192.0.2.2");
    assert_eq!((info.greet_en, info.id_prefix), (None, None));
    // The owner still has it.
    let info = info_as(&demo, &cookie, "192.0.2.1");
    assert_eq!(info.greet_en.as_deref(), Some("Hi"));
}

#[test]
fn without_trusted_proxies_the_forwarding_header_is_ignored() {
    let demo = Demo::start(&["--ip-match"]);
    let cookie = act_as(&demo, "192.0.2.1");
    let info = info_as(&demo, &cookie, "192.0.2.2");
    assert_eq!(info.remote_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        info.greet_en.as_deref(),
        Some("Hi"),
        "same connection address"
    );
}

#[test]
fn a_bad_trusted_proxy_list_is_refused_with_the_entry_named() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cgi-session-demo"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--trusted-proxies",
            "127.0.0.1,nginx",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"nginx\"") && stderr.contains("CIDR"),
        "{stderr}"
    );
}
