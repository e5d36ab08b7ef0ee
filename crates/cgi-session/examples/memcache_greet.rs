//! The seed's synopsis in Rust: build a memcached client, hand it to the session layer as the
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

    // The seed's manual "is memcached alive?" test, built in.
    let report = MemcacheDriver::new(memd.clone()).check().await?;
    println!(
        "memcached {} at {}: alive (probe {:?}, item limit {} bytes)",
        report.version, report.server, report.probe_time, report.item_size_max
    );

    // my $sess = CGI::Session->new("driver:memcache", $cgi, {'Handle' => $memd});
    let store = store_from_dsn("driver:memcache", &DriverArgs::new().handle(memd))?;
    let cookie: Option<String> = std::env::var("CGISESSID").ok();
    let mut sess = store.new_session(cookie.as_deref(), None).await?;

    // my $v = $sess->param('greet_en');
    let v: Option<String> = sess.get("greet_en")?;
    println!("greet_en before: {v:?}");
    // $sess->param('greet_en', "Hi !");
    sess.set("greet_en", "Hi !")?;
    sess.flush().await?;
    println!("greet_en stored; run again with CGISESSID=<id> to read it back");
    if let Some(id) = sess.id() {
        // Printed so that the example can be re-run with the same session; a real app sends
        // it only in the Set-Cookie header and never logs it.
        println!("CGISESSID={}", id.as_str());
    }
    Ok(())
}
