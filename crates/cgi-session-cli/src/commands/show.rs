//! `show`: one session, decoded.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::cli::{CliError, Global, ShowArgs};
use crate::commands::session::{resolve, session_driver};
use crate::store::Store;
use crate::util::{
    decode, escape, escape_json, fmt_secs, fmt_time, fmt_when, last_access, now, print_out, show_id,
};

pub(crate) async fn run(g: &Global, args: &ShowArgs) -> Result<(), CliError> {
    let store = Store::open(g).await?;
    let (id, loaded) = resolve(g, &store, &args.id).await?;
    let shown = show_id(id.as_str(), g.full_ids);
    let (driver, replicas) = session_driver(&store, &id).await?;
    let loaded = match &replicas {
        // The newest copy, unwrapped from its envelope; none when it is a tombstone.
        Some(_) => Some(
            driver
                .load(&id, None)
                .await
                .map_err(CliError::failed)?
                .ok_or_else(|| {
                    CliError::Failed(format!(
                        "no session {shown} on {} (removed: its newest copy is a tombstone)",
                        store.describe()
                    ))
                })?,
        ),
        None => loaded,
    };
    let loaded = loaded.ok_or_else(|| {
        CliError::Failed(format!(
            "session {shown} disappeared while it was read (removed or expired)"
        ))
    })?;
    let (format, record) = decode(&loaded.data).map_err(|e| {
        CliError::Failed(format!(
            "session {shown} ({} bytes) could not be decoded: {e}",
            loaded.data.len()
        ))
    })?;
    let now = now();
    let last = last_access(&record, loaded.last_access);
    let expires_at = record.expires_at(loaded.last_access);
    let expire_list: Map<String, Value> = record
        .expire_list
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), Value::from(*v)))
        .collect();
    if args.json {
        let value = json!({
            "id": shown,
            "format": format,
            "size": loaded.data.len(),
            "ctime": record.ctime,
            "ctime_utc": fmt_time(record.ctime),
            "atime": last,
            "atime_utc": fmt_time(last),
            "etime": record.etime,
            "expires_at": expires_at.map(|e| e.max(0)),
            "expired": expires_at.is_some_and(|e| e <= now),
            "remote_addr": record.remote_addr,
            "expire_list": expire_list,
            "params": record.params,
            "reserved_extra": record.extra,
            "replicas": replicas.as_ref().map(|r| json!({
                "copies": r.copies,
                "servers": r.servers,
                "version": loaded.version,
            })),
        });
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        print_out(&escape_json(&text));
        return Ok(());
    }
    let mut out = String::new();
    let _ = writeln!(out, "session      {shown}");
    let _ = writeln!(
        out,
        "format       {format} ({} bytes on {})",
        loaded.data.len(),
        store.describe()
    );
    if let Some(r) = &replicas {
        let _ = writeln!(
            out,
            "replicated   {} cop{} (version {}) on {}",
            r.copies,
            if r.copies == 1 { "y" } else { "ies" },
            loaded.version.unwrap_or(0),
            r.servers.join(", ")
        );
    }
    let _ = writeln!(out, "created      {}", fmt_when(record.ctime, now));
    let _ = writeln!(out, "accessed     {}", fmt_when(last, now));
    let absolute = record.absolute_expiry();
    let expiry = match (record.etime, expires_at) {
        // The absolute expiry comes first (or is the only one).
        (_, Some(at)) if absolute == Some(at) => {
            let state = if at > now { "" } else { "EXPIRED " };
            format!("at a fixed time: {state}{}", fmt_when(at, now))
        }
        (Some(e), Some(at)) if e > 0 && at > now => {
            format!("after {} idle: {}", fmt_secs(e), fmt_when(at, now))
        }
        (Some(e), _) if e > 0 => format!(
            "after {} idle: EXPIRED {} (removed at its next load or purge)",
            fmt_secs(e),
            expires_at.map_or_else(String::new, |at| fmt_when(at, now))
        ),
        (Some(e), _) if e < 0 => "EXPIRED (negative idle timeout)".to_owned(),
        _ => "never (no idle timeout)".to_owned(),
    };
    let _ = writeln!(out, "expires      {expiry}");
    let remote = if record.remote_addr.is_empty() {
        "unknown".to_owned()
    } else {
        escape(&record.remote_addr)
    };
    let _ = writeln!(out, "remote addr  {remote}");
    // Names and addresses come from the store as they are: escaped like the values (which
    // are JSON), so no escape sequence or CR reaches the terminal.
    for (name, secs) in &expire_list {
        let _ = writeln!(
            out,
            "param expiry {}: {} idle",
            escape(name),
            fmt_secs(secs.as_i64().unwrap_or(0))
        );
    }
    for (name, value) in &record.extra {
        let _ = writeln!(
            out,
            "reserved     {} = {}",
            escape(name),
            escape_json(&value.to_string())
        );
    }
    let _ = writeln!(out, "params ({}):", record.params.len());
    for (name, value) in &record.params {
        let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
        let pretty = escape_json(&pretty).replace('\n', "\n    ");
        let _ = writeln!(out, "  {} = {pretty}", escape(name));
    }
    print_out(&out);
    Ok(())
}
