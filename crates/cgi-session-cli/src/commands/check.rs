//! `check`: each memcached server's health, or a round trip through the session directory.

use std::path::Path;
use std::time::Instant;

use cgi_session::{Driver, FileDriver, SessionId, StoreKind, StoreMode, StoreOutcome};

use crate::cli::{CliError, Global};
use crate::memcached;
use crate::store::spec;
use crate::util::{count_sessions, fmt_bytes, print_out};

pub(crate) async fn run(g: &Global) -> Result<(), CliError> {
    let (spec, kind) = spec(g)?;
    let servers = match kind {
        StoreKind::File { directory } => return check_file(&directory).await,
        StoreKind::Memcache { servers, .. } => servers,
        _ => return Ok(()),
    };
    let mut failures = Vec::new();
    for server in &servers {
        match memcached::check(&spec, server).await {
            Ok(report) => print_out(&format!(
                "ok    {server}  memcached {}  set/get/delete round trip {:.2} ms  item size limit {}\n",
                report.version,
                report.probe_time.as_secs_f64() * 1000.0,
                fmt_bytes(report.item_size_max),
            )),
            Err(e) => {
                print_out(&format!("FAIL  {server}  {e}\n"));
                failures.push(server.clone());
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} of {} memcached server(s) failed the check: {}",
            failures.len(),
            servers.len(),
            failures.join(", ")
        )))
    }
}

/// Writes, reads back and removes a probe session, then counts the sessions.
async fn check_file(dir: &Path) -> Result<(), CliError> {
    let fail = |what: String| {
        print_out(&format!("FAIL  {}  {what}\n", dir.display()));
        CliError::Failed(format!(
            "the session directory {} failed the check",
            dir.display()
        ))
    };
    let driver = FileDriver::new(dir).map_err(|e| fail(e.to_string()))?;
    let mut token = [0u8; 8];
    let _ = getrandom::fill(&mut token);
    let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
    let id =
        SessionId::parse(&format!("cgi-session-check-{hex}")).map_err(|e| fail(e.to_string()))?;
    let started = Instant::now();
    let probe = async {
        match driver.store(&id, b"probe", StoreMode::Create, None).await? {
            StoreOutcome::Stored(_) => {}
            other => return Ok(Err(format!("writing a probe file failed: {other:?}"))),
        }
        let read = driver.load(&id, None).await?;
        let removed = driver.remove(&id).await?;
        if read.map(|l| l.data) != Some(b"probe".to_vec()) || !removed {
            return Ok(Err("the probe file did not read back".to_owned()));
        }
        Ok::<_, cgi_session::DriverError>(Ok(()))
    };
    match probe.await {
        Ok(Ok(())) => {}
        Ok(Err(what)) => return Err(fail(what)),
        Err(e) => return Err(fail(e.to_string())),
    }
    let elapsed = started.elapsed();
    let (count, _) = count_sessions(&driver)
        .await
        .map_err(|e| fail(e.to_string()))?;
    print_out(&format!(
        "ok    {}  file driver  write/read/remove round trip {:.2} ms  {count} session(s)\n",
        dir.display(),
        elapsed.as_secs_f64() * 1000.0,
    ));
    Ok(())
}
