//! `purge --expired`: removes the session files whose idle timeout has passed.

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::time::Duration;

use cgi_session::{Driver, OpenedDriver, StoreKind};

use crate::cli::{CliError, Global, PurgeArgs};
use crate::store::{spec, Store};
use crate::util::{decode, now, print_out};

pub(crate) async fn run(g: &Global, args: &PurgeArgs) -> Result<(), CliError> {
    if !matches!(spec(g)?.1, StoreKind::File { .. }) {
        return Err(CliError::Usage(
            "purge --expired is for the file driver: memcached removes expired sessions by itself (each item's TTL follows the session's idle timeout)".into(),
        ));
    }
    debug_assert!(args.expired);
    let store = Store::open(g).await?;
    let OpenedDriver::File(driver) = &store.opened else {
        return Err(CliError::Failed(format!(
            "{} is not a session directory",
            store.describe()
        )));
    };
    let mut ids = Vec::new();
    driver
        .list(&mut |listed| {
            ids.push(listed.id);
            ControlFlow::Continue(())
        })
        .await
        .map_err(CliError::failed)?;
    let now = now();
    let (mut expired, mut kept, mut undecodable) = (0usize, 0usize, 0usize);
    for id in &ids {
        let Some(loaded) = driver.load(id, None).await.map_err(CliError::failed)? else {
            continue; // removed meanwhile
        };
        let Ok((_, record)) = decode(&loaded.data) else {
            undecodable += 1;
            continue;
        };
        if record
            .expires_at(loaded.last_access)
            .is_some_and(|at| at <= now)
        {
            expired += 1;
            if !args.dry_run {
                driver.remove(id).await.map_err(CliError::failed)?;
            }
        } else {
            kept += 1;
        }
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut out = format!(
        "{verb} {expired} expired session(s) in {}; {kept} kept",
        driver.dir().display()
    );
    if undecodable > 0 {
        let _ = write!(
            out,
            "; {undecodable} do not decode and were left alone (see `show`)"
        );
    }
    out.push('\n');
    if !args.dry_run {
        let temps = driver
            .purge_temp_files(Duration::from_secs(3600))
            .await
            .map_err(CliError::failed)?;
        if temps > 0 {
            let _ = writeln!(
                out,
                "removed {temps} leftover file(s): temporary files of interrupted writes, session locks whose lease ended"
            );
        }
    }
    print_out(&out);
    Ok(())
}
