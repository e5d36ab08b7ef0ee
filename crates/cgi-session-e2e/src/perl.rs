//! The Perl side of the cross-language tests: `tests/perl/session-tool.pl`, which drives the
//! real CGI::Session 4.48 (Debian's `libcgi-session-perl`) over Cache::Memcached through
//! `tests/perl/CGI/Session/Driver/memcache.pm`, a re-creation of `CGI::Session::Driver::memcache`
//! (the Perl driver this project started from: keys `sessions:<id>`, the application's own
//! memcached handle); or another tool script of `tests/perl` ([`Perl::with_tool`]).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The Perl side, pointed at one memcached server.
#[derive(Debug, Clone)]
pub struct Perl {
    server: String,
    time_offset: i64,
    tool: &'static str,
}

impl Perl {
    /// CGI::Session over the memcached at `server` (`host:port`).
    pub fn new(server: impl Into<String>) -> Self {
        Self::with_tool(server, "session-tool.pl")
    }

    /// Another tool of `tests/perl` (called as `TOOL SERVER ARGS...`), at `server`.
    pub fn with_tool(server: impl Into<String>, tool: &'static str) -> Self {
        Self {
            server: server.into(),
            time_offset: 0,
            tool,
        }
    }

    /// The same, with CGI::Session's clock moved `secs` seconds ahead (no sleeping in tests).
    #[must_use]
    pub fn at_offset(&self, secs: i64) -> Self {
        Self {
            time_offset: secs,
            ..self.clone()
        }
    }

    fn tool(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/perl")
            .join(self.tool)
    }

    /// Runs the tool; panics with Perl's stderr and an install hint when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("perl")
            .arg(self.tool())
            .arg(&self.server)
            .args(args)
            .env("PERL_TIME_OFFSET", self.time_offset.to_string())
            .output()
            .expect("perl must be installed (scripts/test.sh installs what the tests need)");
        assert!(
            out.status.success(),
            "perl {} {args:?} failed: {}\n(needs what scripts/test.sh installs: libcgi-session-perl, libcache-memcached-perl, libcgi-session-driver-memcached-perl)",
            self.tool,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("perl printed UTF-8")
            .trim()
            .to_owned()
    }

    /// `CGI::Session->new` + params + expiry + flush; returns the new id.
    pub fn create(&self, params: &Value, expire: Option<&str>, param_expires: &[&str]) -> String {
        let params = params.to_string();
        let mut args = vec!["create", params.as_str(), expire.unwrap_or("")];
        args.extend_from_slice(param_expires);
        self.run(&args)
    }

    /// `CGI::Session->load` of `id`, as JSON: `is_empty`, `is_expired`, `params`, `expire`,
    /// `param_expires`, `lengths` (characters), `plus_one` (integers + 1).
    pub fn read(&self, id: &str) -> Value {
        serde_json::from_str(&self.run(&["read", id])).expect("session-tool prints JSON")
    }

    /// Sets params on a stored session and flushes.
    pub fn set(&self, id: &str, params: &Value) {
        self.run(&["set", id, &params.to_string()]);
    }

    /// Deletes a session.
    pub fn delete(&self, id: &str) {
        self.run(&["delete", id]);
    }
}
