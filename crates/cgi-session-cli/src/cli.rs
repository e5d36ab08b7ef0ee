//! The command line: options, subcommands, and how a command fails.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Operator tool for cgi-session stores: memcached health and statistics, session listing,
/// inspection and removal, purging expired session files.
#[derive(Debug, Parser)]
#[command(name = "cgi-session", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options shared by every subcommand.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The store, as a CGI::Session DSN: driver:file, driver:memcache (keys `<prefix><id>`) or
    /// driver:memcached (keys are the bare ids, as Debian's Perl
    /// CGI::Session::Driver::memcached stores them; they share the server with every other
    /// key, so `ls` and `rm` check that a key holds a session of that id). Serializer and id
    /// parts are accepted; `show` detects json and Perl's default format by itself.
    #[arg(long, global = true, default_value = "driver:file")]
    pub(crate) dsn: String,
    /// Directory of the file driver (default: the system's temp directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) dir: Option<std::path::PathBuf>,
    /// memcached servers, host:port, comma-separated. check and stats report on each one;
    /// ls, show and rm work on the whole pool, placing keys as the application's client does
    /// (see --distribution).
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT[,HOST:PORT]",
        value_delimiter = ',',
        default_value = "127.0.0.1:11211"
    )]
    pub(crate) servers: Vec<String>,
    /// How keys are spread over several servers: ketama (the bundled client's default) or
    /// modula (Perl's Cache::Memcached). Must match the application's client.
    #[arg(long, global = true, default_value = "ketama", value_parser = ["ketama", "modula"])]
    pub(crate) distribution: String,
    /// Key prefix of driver:memcache (default `sessions:`); driver:memcached has none.
    #[arg(long, global = true, value_name = "PREFIX")]
    pub(crate) prefix: Option<String>,
    /// The application keeps each session on N more servers of the pool
    /// (`ReplicatedHandle::new(pool, N)`): ls, show and rm then read and remove every copy as
    /// the application does. Without it, show and rm still recognise a replicated session by
    /// its envelope and work on all of its copies.
    #[arg(long, global = true, value_name = "N")]
    pub(crate) replicas: Option<usize>,
    /// The memcache driver stores sessions under SHA-256 digests of their ids (`ls` cannot
    /// list them then; `show` and `rm` need the session id itself).
    #[arg(long, global = true)]
    pub(crate) hashed_keys: bool,
    /// Deadline for connecting to and hearing from a server, e.g. 500ms, 2s.
    #[arg(long, global = true, default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Duration,
    /// Talk TLS to memcached (memcached -Z), trusting the CA certificates in this PEM file.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
    /// The name the servers' certificates must carry (default: each server's host).
    #[arg(long, global = true, value_name = "NAME", requires = "tls_ca")]
    pub(crate) tls_server_name: Option<String>,
    /// Client certificate (PEM) for servers that require one; needs --tls-key.
    #[arg(long, global = true, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// Log in to memcached (memcached -Y) as this user; the password is read from the
    /// MEMCACHED_PASSWORD environment variable (never from the command line, where `ps`
    /// would show it).
    #[arg(long, global = true, value_name = "USER")]
    pub(crate) auth_user: Option<String>,
    /// Print whole session ids (they are credentials: by default only 8 characters show).
    #[arg(long, global = true)]
    pub(crate) full_ids: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Per server: version, a set/get/delete round trip on a probe key, its latency and the
    /// item size limit. Exits 1 naming each failing server.
    Check,
    /// Per server: items, memory used and limit, hit ratio, evictions, connections.
    Stats(StatsArgs),
    /// The stored sessions: id, size, time to live, last access.
    Ls(LsArgs),
    /// One session, decoded (json or Perl's Data::Dumper format).
    Show(ShowArgs),
    /// Removes one session.
    Rm(IdArg),
    /// Removes the sessions of the file driver whose idle timeout has passed.
    Purge(PurgeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Refresh in place until interrupted (or until --count refreshes).
    #[arg(long)]
    pub(crate) watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) interval: u64,
    /// Stop after this many reports.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// JSON output, one object per server.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// JSON output: an array of sessions.
    #[arg(long)]
    pub(crate) json: bool,
    /// Show progress on standard error even when it is not a terminal.
    #[arg(long)]
    pub(crate) progress: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The session id, or a unique prefix of it (as `ls` shows it).
    pub(crate) id: String,
    /// JSON output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct IdArg {
    /// The session id, or a unique prefix of it (as `ls` shows it).
    pub(crate) id: String,
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// Remove the sessions whose idle timeout has passed (the only purge there is; required
    /// so that the command says what it does).
    #[arg(long, required = true)]
    pub(crate) expired: bool,
    /// Only report what would be removed.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// How a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The command line asks for something impossible: exit status 2.
    #[error("{0}")]
    Usage(String),
    /// The operation failed: exit status 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// An operational failure with `e`'s message.
    pub(crate) fn failed(e: impl std::fmt::Display) -> Self {
        CliError::Failed(e.to_string())
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::from(1),
        }
    }
}
