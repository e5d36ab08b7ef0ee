//! The demo in a real browser: headless Chromium driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`, through the `fantoccini` client). The demo runs in-process on the
//! default store (files in a temporary directory) on a free loopback port; two more demos
//! over the same store sign their browser-session cookies, one with an old key, one with a
//! new key that still accepts the old one (key rotation).
//!
//! This test fails (it does not skip) when Chromium is missing: `scripts/test.sh` installs it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cgi_session_demo::{app_with_layer, open_store, serve, Args};
use clap::Parser;
use cookie::SameSite;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

const INSTALL_HINT: &str = "headless Chromium is needed for the browser test: run scripts/test.sh (it installs the Debian packages `chromium` and `chromium-driver`), or `apt-get install -y chromium chromium-driver`";

fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Polls until `addr` accepts TCP connections, up to `within`.
async fn wait_for_port(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
        .text()
        .await
        .unwrap()
}

/// Polls (the form's navigation may still be under way) until `css` shows `expected`.
async fn wait_for_text(client: &Client, css: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while Instant::now() < deadline {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            if let Ok(t) = element.text().await {
                if t == expected {
                    return;
                }
                seen = t;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css} shows {seen:?}, not {expected:?}");
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
        .click()
        .await
        .unwrap();
}

/// Waits (the navigation may still be under way) until `css` is on the page, up to 20 s.
async fn wait_for_element(client: &Client, css: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"));
}

async fn counter(client: &Client) -> u64 {
    text(client, "#counter").await.parse().unwrap()
}

async fn session_id(client: &Client) -> String {
    client
        .get_named_cookie("CGISESSID")
        .await
        .expect("the CGISESSID cookie")
        .value()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_works_in_headless_chromium() {
    let chromium = find_program(&["/usr/lib/chromium/chromium", "/usr/bin/chromium"])
        .unwrap_or_else(|| panic!("chromium not found. {INSTALL_HINT}"));
    let chromedriver = find_program(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
        .unwrap_or_else(|| panic!("chromedriver not found. {INSTALL_HINT}"));

    // The demo, as `cargo run -p cgi-session-demo` would start it, on a free port.
    let args = Args::parse_from(["cgi-session-demo", "--listen", "127.0.0.1:0"]);
    let opened = open_store(&args).await.unwrap();
    let listener = tokio::net::TcpListener::bind(args.listen).await.unwrap();
    let demo = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        cgi_session_demo::app(opened.store.clone()),
        async {
            let _ = stopped.await;
        },
    ));
    // Two demos over the same store with signed browser-session cookies: the old release
    // signs with k1; the new one signs with k2 and still accepts k1.
    let keys = tempfile::tempdir().unwrap();
    let (k1, k2) = (keys.path().join("k1"), keys.path().join("k2"));
    std::fs::write(&k1, [1u8; 64]).unwrap();
    std::fs::write(&k2, [2u8; 64]).unwrap();
    let old_args = Args::parse_from([
        "cgi-session-demo".as_ref(),
        "--browser-session-cookies".as_ref(),
        "--cookie-key-file".as_ref(),
        k1.as_os_str(),
    ]);
    let new_args = Args::parse_from([
        "cgi-session-demo".as_ref(),
        "--browser-session-cookies".as_ref(),
        "--cookie-key-file".as_ref(),
        k2.as_os_str(),
        "--previous-cookie-key-file".as_ref(),
        k1.as_os_str(),
    ]);
    // One store for both (a temporary directory), opened as the options say.
    let signed_store = open_store(&old_args).await.unwrap();
    let mut signed = Vec::new();
    for args in [old_args, new_args] {
        let layer = args.session_layer(signed_store.store.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app_with_layer(layer), async {
            let _ = stopped.await;
        }));
        signed.push((addr, stop, server));
    }
    let signed_addrs = [signed[0].0, signed[1].0];

    // chromedriver on a free loopback port.
    let port = free_loopback_port();
    let mut driver = tokio::process::Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}. {INSTALL_HINT}",
                chromedriver.display()
            )
        });
    let driver_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(
        wait_for_port(driver_addr, Duration::from_secs(30)).await,
        "chromedriver did not listen on {driver_addr} within 30 s"
    );

    let profile = tempfile::tempdir().unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(180),
        drive(&chromium, profile.path(), driver_addr, demo, signed_addrs),
    )
    .await;

    let _ = driver.kill().await;
    let _ = stop.send(());
    let _ = server.await;
    for (_, stop, server) in signed {
        let _ = stop.send(());
        let _ = server.await;
    }
    drop(signed_store);
    drop(opened);
    match result {
        Ok(()) => {}
        Err(_) => panic!("the browser test did not finish within 180 s"),
    }
}

async fn drive(
    chromium: &Path,
    profile: &Path,
    driver: SocketAddr,
    demo: SocketAddr,
    [old_key, new_key]: [SocketAddr; 2],
) {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": chromium.to_string_lossy(),
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://{driver}"))
        .await
        .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}. {INSTALL_HINT}"));

    let outcome = {
        let client = client.clone();
        async move {
            let home = format!("http://{demo}/");
            client.goto(&home).await.unwrap();
            // An anonymous view stores nothing: not counted, no cookie.
            assert_eq!(counter(&client).await, 0);
            assert!(
                client.get_named_cookie("CGISESSID").await.is_err(),
                "no session cookie for an anonymous view"
            );
            wait_for_element(&client, "#no-session").await;

            // Set greet_en through the form: the visitor acted, now there is a session, and
            // the page the form leads back to is its first counted view.
            let input = client.find(Locator::Css("#greet-input")).await.unwrap();
            input.clear().await.unwrap();
            input.send_keys("Hi <b>there</b> !").await.unwrap();
            click(&client, "#greet-submit").await;
            wait_for_text(&client, "#greeting", "Hi <b>there</b> !").await;
            assert_eq!(counter(&client).await, 1);

            // The counter goes up across reloads.
            let mut last = 1;
            for _ in 0..3 {
                client.refresh().await.unwrap();
                let now = counter(&client).await;
                assert!(now > last, "counter {now} after {last}");
                last = now;
            }
            assert_eq!(last, 4);

            // The cookie's flags, as the browser stored them.
            let cookie = client.get_named_cookie("CGISESSID").await.unwrap();
            assert_eq!(cookie.http_only(), Some(true), "HttpOnly");
            assert_eq!(cookie.same_site(), Some(SameSite::Lax), "SameSite=Lax");
            assert_eq!(cookie.path(), Some("/"));
            assert_ne!(cookie.secure(), Some(true), "not Secure on plain http");
            // Idle expiry: a persistent cookie, kept until the idle timeout (30 minutes).
            let expiry = cookie
                .expires_datetime()
                .expect("the idle-expiry cookie has an expiry in the browser")
                .unix_timestamp();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            assert!(
                (now + 1700..=now + 1900).contains(&expiry),
                "expiry {expiry}, now {now}"
            );
            let first_id = cookie.value().to_owned();
            assert_eq!(first_id.len(), 32);
            // HttpOnly: page scripts cannot read it.
            let visible = client
                .execute("return document.cookie;", vec![])
                .await
                .unwrap();
            assert!(
                !visible.as_str().unwrap_or("").contains(&first_id),
                "document.cookie shows the session id: {visible}"
            );
            // The page shows only a prefix of the id.
            assert_eq!(
                text(&client, "#id-prefix").await,
                format!("{}…", &first_id[..8])
            );
            assert!(!client.source().await.unwrap().contains(&first_id));

            // Log in: a new id, the data kept.
            let name = client.find(Locator::Css("#username")).await.unwrap();
            name.send_keys("ann").await.unwrap();
            click(&client, "#login").await;
            wait_for_element(&client, "#user").await;
            assert_eq!(text(&client, "#user").await, "ann");
            let logged_in_id = session_id(&client).await;
            assert_ne!(logged_in_id, first_id, "login regenerates the id");
            assert!(
                counter(&client).await > last,
                "the counter moved with the session"
            );

            // Log out: the session ends and its cookie is removed; the next view is anonymous
            // again (nothing stored, not counted).
            click(&client, "#logout").await;
            wait_for_element(&client, "#username").await;
            assert_eq!(counter(&client).await, 0);
            assert!(
                client.get_named_cookie("CGISESSID").await.is_err(),
                "logout removes the session cookie"
            );
            wait_for_element(&client, "#no-session").await;

            signed_browser_session_cookies(&client, old_key, new_key).await;
        }
    };
    // Close the browser session whatever happened, then report.
    let outcome = futures_catch(outcome).await;
    let _ = client.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The signed demos: a browser-session cookie (no expiry in the browser) whose signed value
/// round-trips; key rotation from the old release to the new one (the old key's cookie is
/// accepted and re-signed), and the old release refusing the new signature. Cookies are per
/// host, not per port: all demos on 127.0.0.1 see the same cookie.
async fn signed_browser_session_cookies(client: &Client, old_key: SocketAddr, new_key: SocketAddr) {
    client.delete_all_cookies().await.unwrap();
    client.goto(&format!("http://{old_key}/")).await.unwrap();
    assert_eq!(counter(client).await, 0, "an anonymous view");
    // The visitor acts: the session starts.
    let input = client.find(Locator::Css("#greet-input")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys("signed").await.unwrap();
    click(client, "#greet-submit").await;
    wait_for_text(client, "#greeting", "signed").await;
    assert_eq!(counter(client).await, 1);
    let cookie = client.get_named_cookie("CGISESSID").await.unwrap();
    assert_eq!(
        cookie.expires(),
        None,
        "a browser-session cookie has no expiry in the browser"
    );
    let by_old = cookie.value().to_owned();
    assert!(by_old.len() > 32, "signed: {by_old}");
    let id = by_old[by_old.len() - 32..].to_owned();
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{by_old}");
    // The signed cookie round-trips: the same session counts on.
    client.refresh().await.unwrap();
    assert_eq!(counter(client).await, 2);

    // The new release accepts the old key's cookie, and re-signs it with its own key.
    client.goto(&format!("http://{new_key}/")).await.unwrap();
    assert_eq!(
        counter(client).await,
        3,
        "the old key's cookie was accepted"
    );
    let cookie = client.get_named_cookie("CGISESSID").await.unwrap();
    assert_eq!(cookie.expires(), None);
    let by_new = cookie.value().to_owned();
    assert_ne!(by_new, by_old, "re-signed with the new key");
    assert!(by_new.ends_with(&id), "the same session id");
    client.refresh().await.unwrap();
    assert_eq!(counter(client).await, 4);

    // The old release does not know the new key: the cookie counts as none (an anonymous
    // view), and it is removed.
    client.goto(&format!("http://{old_key}/")).await.unwrap();
    assert_eq!(
        counter(client).await,
        0,
        "the new signature is refused by the old key"
    );
    if let Ok(cookie) = client.get_named_cookie("CGISESSID").await {
        assert!(!cookie.value().ends_with(&id), "{}", cookie.value());
    }
}

/// Runs `f`, catching a panic so that the browser can be closed before it propagates.
async fn futures_catch<F: std::future::Future<Output = ()> + Send + 'static>(
    f: F,
) -> Result<(), Box<dyn std::any::Any + Send>> {
    match tokio::spawn(f).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_panic() => Err(e.into_panic()),
        Err(e) => Err(Box::new(e.to_string())),
    }
}
