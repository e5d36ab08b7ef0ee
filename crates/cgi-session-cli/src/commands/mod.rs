//! The subcommands, one module each; `session` finds the session `show` and `rm` name.

mod check;
mod ls;
mod purge;
mod rm;
mod session;
mod show;
mod stats;

use crate::cli::{Cli, CliError, Command};

pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    let g = &cli.global;
    crate::store::password(g)?;
    match &cli.command {
        Command::Check => check::run(g).await,
        Command::Stats(args) => stats::run(g, args).await,
        Command::Ls(args) => ls::run(g, args).await,
        Command::Show(args) => show::run(g, args).await,
        Command::Rm(args) => rm::run(g, &args.id).await,
        Command::Purge(args) => purge::run(g, args).await,
    }
}
