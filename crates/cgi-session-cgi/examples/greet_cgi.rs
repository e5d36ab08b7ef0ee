//! The seed's synopsis as a CGI program (binary `greet-cgi`): read `greet_en` from the session,
//! then set it, and answer with CGI::Session's header (the session cookie) and a short text.
//!
//! The store is memcached when `CGI_SESSION_MEMCACHED=host:port` is set in the environment
//! (pass it with the web server's configuration, e.g. lighttpd's `setenv.add-environment`),
//! otherwise files in `CGI_SESSION_DIR` (default: the temp directory). The new value of
//! `greet_en` is the request's `greet_en` parameter, or the seed's `"Hi !"`.
//!
//! Build with `cargo build -p cgi-session-cgi --bin greet-cgi` and point a CGI-capable web
//! server at `target/debug/greet-cgi`; with lighttpd:
//!
//! ```text
//! server.modules += ("mod_cgi", "mod_setenv")
//! setenv.add-environment = ("CGI_SESSION_MEMCACHED" => "127.0.0.1:11211")
//! $HTTP["url"] =~ "^/cgi-bin/" { cgi.assign = ("" => "") }
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use cgi_session_cgi::{
    connect_memcached, CgiError, CgiRequest, CgiSession, ClientConfig, DriverArgs,
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => {}
        Err(e) => {
            // The client gets the status; the web server's error log gets the details.
            eprintln!("greet-cgi: {e}");
            print!("{}", e.response());
        }
    }
    // CGI reports failures through the Status header; the exit status is for the server.
    ExitCode::SUCCESS
}

fn run() -> Result<(), CgiError> {
    let (dsn, args) = match std::env::var("CGI_SESSION_MEMCACHED") {
        Ok(server) if !server.is_empty() => {
            // my $memd = new Cache::Memcached({servers => ['localhost:11211']});
            // if (!$memd) {die("No Connection to Memcached !");}
            let memd = connect_memcached(ClientConfig::new(server))?;
            ("driver:memcache", DriverArgs::new().handle(memd))
        }
        _ => {
            let dir = std::env::var_os("CGI_SESSION_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            ("driver:file", DriverArgs::new().directory(dir))
        }
    };

    // my $cgi = CGI->new();
    let cgi = CgiRequest::from_env()?;
    // my $sess = CGI::Session->new("driver:memcache", $cgi, {'Handle' => $memd});
    let mut sess = CgiSession::new(dsn, &cgi, args)?;
    let was_new = sess.is_new();

    // Get
    // my $v = $sess->param('greet_en');
    let v: Option<String> = sess.param("greet_en")?;
    // Set
    // $sess->param('greet_en', "Hi !");
    let greeting = cgi.param("greet_en").unwrap_or("Hi !");
    sess.set_param("greet_en", greeting)?;
    sess.set_expire("+1h")?;

    // Saved before the header goes out, so that a store failure can still become a 503.
    sess.flush()?;
    print!("{}", sess.header("text/plain; charset=UTF-8"));
    println!("greet_en before: {}", v.as_deref().unwrap_or("(none)"));
    println!("greet_en now: {greeting}");
    println!("new session: {was_new}");
    println!("store: {dsn}");
    Ok(())
}
