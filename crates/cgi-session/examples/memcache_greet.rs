//! The synopsis of CGI::Session::Driver::memcache (the Perl driver this project started from) in Rust: build a memcached client, hand it to the session layer as the
//! driver's handle, then get and set `greet_en` the CGI::Session way.
//!
//! Run against a memcached on 127.0.0.1:11211 (or pass another `host:port`):
//! `cargo run -p cgi-session --example memcache_greet -- 127.0.0.1:11211`

use cgi_session::memcache::client::{Client, ClientConfig};
use cgi_session::memcache::MemcacheDriver;
use cgi_session::{store_from_dsn, DriverArgs};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:11211".to_owned());

    // my $memd = Cache::Memcached->new({servers => ['localhost:11211']});
    // if (!$memd) {die("No Connection to Memcached !");}
    // The bundled client connects at once, so a dead server fails here, clearly.
    let memd = Client::connect(ClientConfig::new(server)).await?;

    // CGI::Session::Driver::memcache's manual "is memcached alive?" test, built in.
    let report = MemcacheDriver::new(memd.clone()).check().await?;
    println!(
        "{} is alive: version {}, set/get/delete probe {:?}, item limit {} bytes",
        report.server, report.version, report.probe_time, report.item_size_max
    );

    // my $sess = CGI::Session->new("driver:memcache", $cgi, {'Handle' => $memd});
    let store = store_from_dsn("driver:memcache", &DriverArgs::new().handle(memd))?;

    // First request: no cookie yet.
    let mut sess = store.new_session(None, None).await?;
    // my $v = $sess->param('greet_en');
    let v: Option<String> = sess.get("greet_en")?;
    println!(
        "request 1: greet_en = {v:?} (new session {})",
        sess.id().ok_or("no id")?
    );
    // $sess->param('greet_en', "Hi !");
    sess.set("greet_en", "Hi !")?;
    sess.flush().await?;
    let cookie = sess.cookie().ok_or("a stored session has a cookie")?;

    // Second request: the browser sends the cookie back.
    let mut again = store.new_session(Some(cookie.value()), None).await?;
    let v: Option<String> = again.get("greet_en")?;
    println!(
        "request 2: greet_en = {v:?} (same session: {})",
        !again.is_new()
    );

    // Clean up: $sess->delete; $sess->flush.
    again.delete();
    again.flush().await?;
    Ok(())
}
