//! `cgi-session`: the operator tool of cgi-session.
//!
//! ```text
//! cgi-session --dsn driver:memcache --servers 127.0.0.1:11211,10.0.0.2:11211 check
//! cgi-session --dsn driver:memcache stats --watch --interval 2
//! cgi-session --dsn driver:memcache ls --json
//! cgi-session --dsn driver:file --dir /var/lib/myapp/sessions show 5ee0c1d2
//! cgi-session --dsn driver:file --dir /var/lib/myapp/sessions rm 5ee0c1d2
//! cgi-session --dsn driver:file --dir /var/lib/myapp/sessions purge --expired
//! cgi-session --dsn driver:memcached show 5ee0c1d2        # Debian's driver: bare-id keys
//! cgi-session --dsn driver:memcache --servers a:11211,b:11211 --replicas 1 rm 5ee0c1d2
//! ```
//!
//! Exit status: 0 when everything worked, 1 for an operational failure (a dead server, a
//! missing session), 2 for a usage error. Session ids are shown shortened (`5ee0c1d2…`)
//! unless `--full-ids` is given; `show` and `rm` accept any unique prefix of an id. Text from
//! the store (parameter names, addresses) and from the command line (a mistyped id) is printed
//! with control characters escaped (`\u{1b}`, `\r`), as values are.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod memcached;
mod store;
mod util;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", util::escape_message(&e.to_string()));
            e.exit_code()
        }
    }
}
