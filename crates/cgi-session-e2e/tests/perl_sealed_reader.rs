//! What Perl's CGI::Session does with a sealed session (the documented limit: sealed sessions
//! are not for sharing with Perl). It runs `perl` with CGI::Session 4.48 and Debian's
//! `CGI::Session::Driver::memcached` over Cache::Memcached against a memcached of its own;
//! it fails, never skips, when they are missing (`scripts/test.sh` installs them).

use std::process::Command;

use cgi_session::SessionStore;
use cgi_session_memcache::client::{Client, ClientConfig};
use cgi_session_memcache::MemcacheDriver;
use cgi_session_sealed::{KeyRing, OpenError, SealError, SealedDriver, SealingKey};
use memcached_harness::MemcachedServer;

/// Loads `id` with CGI::Session; prints `LOADED <value of greeting>` or `FAILED <errstr>`.
const PERL_READ: &str = r#"
use strict; use warnings;
use CGI::Session; use CGI::Session::Driver::memcached; use Cache::Memcached;
my ($server, $id) = @ARGV;
my $memd = Cache::Memcached->new({ servers => [$server] });
my $s = CGI::Session->new("driver:memcached;serializer:default", $id, { Memcached => $memd });
if ($s) { print "LOADED ", ($s->param("greeting") // ""), " id=", $s->id, "\n" }
else { print "FAILED ", CGI::Session->errstr, "\n" }
"#;

/// Creates a session with CGI::Session; prints its id.
const PERL_CREATE: &str = r#"
use strict; use warnings;
use CGI::Session; use CGI::Session::Driver::memcached; use Cache::Memcached;
my ($server) = @ARGV;
my $memd = Cache::Memcached->new({ servers => [$server] });
my $s = CGI::Session->new("driver:memcached;serializer:default", undef, { Memcached => $memd })
    or die CGI::Session->errstr;
$s->param("greeting", "from perl");
$s->flush or die $s->errstr;
print $s->id, "\n";
"#;

fn perl(script: &str, args: &[&str]) -> String {
    let out = Command::new("perl")
        .arg("-e")
        .arg(script)
        .args(args)
        .output()
        .expect("run perl (scripts/test.sh installs it and CGI::Session)");
    assert!(
        out.status.success(),
        "perl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perl_cannot_read_a_sealed_session_and_sealed_stores_refuse_perl_sessions() {
    let server = MemcachedServer::start();
    let addr = server.addr().to_string();
    let client = Client::connect(ClientConfig::new(addr.clone()))
        .await
        .unwrap();
    // Debian's driver keeps sessions under their bare ids: the same keys on both sides.
    let memcache = MemcacheDriver::builder(client).prefix("").build().unwrap();
    let sealed = SealedDriver::new(memcache, KeyRing::new(SealingKey::generate(1).unwrap()));
    let store = SessionStore::builder(sealed)
        .serializer(cgi_session::DataDumperSerializer::new())
        .build();

    let mut s = store.new_session(None, None).await.unwrap();
    s.set("greeting", "secret-greeting-1234").unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();

    // Perl's serializer fails to thaw the sealed bytes: CGI::Session->new returns undef.
    let perl_saw = perl(PERL_READ, &[&addr, &id]);
    assert!(
        perl_saw.starts_with("FAILED ") && perl_saw.contains("couldn't thaw() data"),
        "{perl_saw}"
    );
    assert!(!perl_saw.contains("secret-greeting-1234"), "{perl_saw}");

    // And a session Perl wrote is not sealed: the sealed store refuses it (no new session).
    let perl_id = perl(PERL_CREATE, &[&addr]);
    let err = store.new_session(Some(&perl_id), None).await.unwrap_err();
    let cgi_session::Error::Driver(cgi_session::DriverError::Backend { source, .. }) = &err else {
        panic!("expected a store failure, got {err:?}");
    };
    assert!(
        matches!(
            source.downcast_ref::<SealError>(),
            Some(SealError::Open {
                source: OpenError::NotSealed,
                ..
            })
        ),
        "{err:?}"
    );
}
