//! `cgi-session-demo`: the demo web app. `cargo run -p cgi-session-demo`, then open the
//! address it prints. `--help` lists the options.
#![forbid(unsafe_code)]

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = cgi_session_demo::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = cgi_session_demo::metrics::install() {
        eprintln!("error: cannot record metrics: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match cgi_session_demo::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
