//! The synopsis of CGI::Session::Driver::memcache (the Perl driver this project started from) as a CGI program (binary `greet-cgi`): read `greet_en` from the session,
//! then set it, count the visit, and answer with CGI::Session's header (the session cookie)
//! and a short text.
//!
//! The store is memcached when `CGI_SESSION_MEMCACHED=host:port` is set in the environment
//! (pass it with the web server's configuration, e.g. lighttpd's `setenv.add-environment`;
//! built without the `memcache` feature, the program then answers 500 and says why in the
//! error log), otherwise files in `CGI_SESSION_DIR` (default: the temp directory). The new value of
//! `greet_en` is the request's `greet_en` parameter, or the Perl driver's `"Hi !"`.
//!
//! A browser sends several requests of one session at once, and under CGI each is its own
//! process. The visit counter shows both ways of keeping every update:
//!
//! * by default (`CGI_SESSION_LOCK` unset or `off`) requests run concurrently and
//!   [`CgiSession::update`] is the read-modify-write: it re-runs the change when another
//!   process wrote the session in between (a 503 with `Retry-After` only past the store's save
//!   deadline);
//! * `CGI_SESSION_LOCK=every-request` builds the store with [`LockMode::EveryRequest`]: each
//!   request holds the session lock from before it reads the session until it is saved, so the
//!   requests of one session run one at a time (a 503 if the lock stays busy past the lock
//!   wait); `CGI_SESSION_LOCK=on-demand` takes the lock with [`CgiSession::lock`] instead.
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

use cgi_session::StoreSpec;
use cgi_session_cgi::{CgiError, CgiRequest, CgiSession, LockMode};

fn main() -> ExitCode {
    let lock_mode = match std::env::var("CGI_SESSION_LOCK") {
        Ok(mode) if !mode.is_empty() => match LockMode::parse(&mode) {
            Some(mode) => mode,
            None => {
                return misconfigured(
                    &format!(
                        "CGI_SESSION_LOCK={mode:?} is not one of off, every-request, on-demand"
                    ),
                    "the session lock mode is misconfigured",
                )
            }
        },
        _ => LockMode::Off,
    };
    let store = match std::env::var("CGI_SESSION_MEMCACHED") {
        #[cfg(feature = "memcache")]
        Ok(server) if !server.is_empty() => Store::Memcached(server),
        #[cfg(not(feature = "memcache"))]
        Ok(server) if !server.is_empty() => {
            return misconfigured(
                "CGI_SESSION_MEMCACHED is set but greet-cgi was built without the `memcache` feature; rebuild it with `--features memcache` or unset it",
                "the session store is misconfigured",
            )
        }
        _ => Store::Files(
            std::env::var_os("CGI_SESSION_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
        ),
    };
    match run(lock_mode, store) {
        Ok(()) => {}
        Err(e) => {
            // The visitor gets the status and a sentence; the details (e.g. the memcached
            // server's address) go to the web server's error log.
            print!("{}", e.response());
        }
    }
    // CGI reports failures through the Status header; the exit status is for the server.
    ExitCode::SUCCESS
}

/// Where the sessions are kept.
enum Store {
    /// `CGI_SESSION_MEMCACHED`: a memcached server's `host:port`.
    #[cfg(feature = "memcache")]
    Memcached(String),
    /// `CGI_SESSION_DIR`: a directory of session files.
    Files(PathBuf),
}

/// A configuration mistake: the server's log says which, the client gets a 500.
fn misconfigured(detail: &str, for_the_visitor: &str) -> ExitCode {
    eprintln!("greet-cgi: {detail}");
    print!("Status: 500 Internal Server Error\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{for_the_visitor}\n");
    ExitCode::SUCCESS
}

fn run(lock_mode: LockMode, store: Store) -> Result<(), CgiError> {
    // CGI::Session::Driver::memcache's `my $memd = new Cache::Memcached({servers => ['localhost:11211']})` and
    // `CGI::Session->new("driver:memcache", $cgi, {'Handle' => $memd})` in one step: the
    // store is opened from its server list (or directory) as the demo and the CLI open theirs;
    // a dead server is an error (the Perl driver's `die("No Connection to Memcached !")`), a 503.
    let (dsn, spec) = match store {
        #[cfg(feature = "memcache")]
        Store::Memcached(server) => (
            "driver:memcache",
            StoreSpec::new("driver:memcache").servers([server]),
        ),
        Store::Files(dir) => ("driver:file", StoreSpec::new("driver:file").directory(dir)),
    };

    // my $cgi = CGI->new();
    let cgi = CgiRequest::from_env()?;
    // With `LockMode::EveryRequest` the session lock is taken here, before the session is
    // read, and held until `close`.
    let mut sess = CgiSession::open(&spec, &cgi, |store| store.lock_mode(lock_mode))?;
    if lock_mode == LockMode::OnDemand {
        // Locks the session (if it is stored already) and reloads it under the lock.
        sess.lock()?;
    }
    let was_new = sess.is_new();

    // Get
    // my $v = $sess->param('greet_en');
    let v: Option<String> = sess.param("greet_en")?;
    // Set
    // $sess->param('greet_en', "Hi !");
    let greeting = cgi.param("greet_en").unwrap_or("Hi !");
    sess.set_param("greet_en", greeting)?;
    sess.set_expire("+1h")?;

    // A value computed from its old value: `update` reads the freshest stored copy and writes
    // it at once (with the changes above), re-running the closure if another request wrote
    // the session in between, so that no visit of a parallel request is lost.
    let visits = sess.update(|s| {
        let n = s.get::<u64>("visits")?.unwrap_or(0) + 1;
        s.set("visits", &n)?;
        Ok(n)
    })?;

    // Saved (and the lock released) before the header goes out, so that a store failure can
    // still become a 503.
    sess.flush()?;
    let header = sess.header("text/plain; charset=UTF-8");
    sess.close()?;
    print!("{header}");
    println!("greet_en before: {}", v.as_deref().unwrap_or("(none)"));
    println!("greet_en now: {greeting}");
    println!("new session: {was_new}");
    println!("visits: {visits}");
    println!("store: {dsn}");
    println!(
        "lock: {}",
        match lock_mode {
            LockMode::EveryRequest => "every-request",
            LockMode::OnDemand => "on-demand",
            _ => "off",
        }
    );
    Ok(())
}
