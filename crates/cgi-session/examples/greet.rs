//! The synopsis of CGI::Session::Driver::memcache (the Perl driver this project started from) in Rust, on the embedded default store (files in the temp directory):
//! set `greet_en`, then read it back in a "second request" that only knows the cookie.
//!
//! Run: `cargo run -p cgi-session --example greet`

use cgi_session::{store_from_dsn, DriverArgs};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // CGI::Session->new(undef, $cgi): the default DSN, driver:file;serializer:json;id:random.
    let store = store_from_dsn("", &DriverArgs::new())?;

    // First request: no cookie, so a new session.
    let mut session = store.new_session(None, Some("127.0.0.1")).await?;
    session.set_expire_str("+10m")?;
    session.set("greet_en", "Hi !")?;
    session.flush().await?;
    let cookie = session
        .cookie()
        .ok_or("a new session always has a cookie")?;
    println!(
        "request 1: stored greet_en for session {}",
        session.id().ok_or("no id")?
    );
    println!("request 1: Set-Cookie: {}", cookie.name());

    // Second request: the browser sends the cookie back.
    let mut again = store
        .new_session(Some(cookie.value()), Some("127.0.0.1"))
        .await?;
    let greeting: Option<String> = again.get("greet_en")?;
    println!(
        "request 2: greet_en = {:?} (same session: {}, new: {})",
        greeting.as_deref().unwrap_or("<missing>"),
        again.id().map(|i| i.as_str()) == Some(cookie.value()),
        again.is_new()
    );

    // Clean up: CGI::Session's delete + flush.
    again.delete();
    again.flush().await?;
    println!("request 3: session deleted");
    Ok(())
}
