//! `stats`: each memcached server's counters, or the session directory's size.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use cgi_session::{FileDriver, StoreKind, StoreSpec};
use serde_json::{json, Value};

use crate::cli::{CliError, Global, StatsArgs};
use crate::memcached;
use crate::store::spec;
use crate::util::{count_sessions, fmt_bytes, fmt_secs, fmt_time, now, print_out};

pub(crate) async fn run(g: &Global, args: &StatsArgs) -> Result<(), CliError> {
    let (spec, kind) = spec(g)?;
    let reports = args.count.unwrap_or(if args.watch { u64::MAX } else { 1 });
    let mut failures = Vec::new();
    for i in 0..reports {
        let (text, failed_now) = report(&spec, &kind, args.json).await;
        if args.watch {
            let header = format!(
                "cgi-session stats, every {}s (Ctrl-C to stop)  {}\n\n",
                args.interval,
                fmt_time(now())
            );
            print_out(&format!("\x1b[2J\x1b[H{header}{text}"));
        } else {
            print_out(&text);
        }
        failures = failed_now;
        if i + 1 < reports {
            tokio::time::sleep(Duration::from_secs(args.interval)).await;
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "no statistics from: {}",
            failures.join(", ")
        )))
    }
}

fn num(stats: &HashMap<String, String>, key: &str) -> u64 {
    stats.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// One report: its text and the servers that failed.
async fn report(spec: &StoreSpec, kind: &StoreKind, as_json: bool) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut failures = Vec::new();
    let mut objects = Vec::new();
    match kind {
        StoreKind::File { directory: dir } => match file_stats(dir).await {
            Ok((sessions, bytes)) => {
                objects.push(json!({"dir": dir.display().to_string(), "ok": true, "sessions": sessions, "bytes": bytes}));
                let _ = writeln!(out, "{}  file driver", dir.display());
                let _ = writeln!(out, "  sessions     {sessions}");
                let _ = writeln!(out, "  disk used    {}", fmt_bytes(bytes));
            }
            Err(e) => {
                objects.push(json!({"dir": dir.display().to_string(), "ok": false, "error": e}));
                let _ = writeln!(out, "FAIL  {}  {e}", dir.display());
                failures.push(dir.display().to_string());
            }
        },
        StoreKind::Memcache { servers, .. } => {
            for server in servers {
                match memcached::stats(spec, server).await {
                    Ok(stats) => {
                        objects.push(server_report(&mut out, server, &stats));
                    }
                    Err(e) => {
                        objects.push(json!({"server": server, "ok": false, "error": e}));
                        let _ = writeln!(out, "FAIL  {server}  {e}");
                        failures.push(server.clone());
                    }
                }
            }
        }
        _ => {}
    }
    if as_json {
        out = serde_json::to_string_pretty(&Value::Array(objects)).unwrap_or_default();
        out.push('\n');
    }
    (out, failures)
}

/// One server's statistics: written to `out` as text, returned as JSON.
fn server_report(out: &mut String, server: &str, stats: &HashMap<String, String>) -> Value {
    let hits = num(stats, "get_hits");
    let misses = num(stats, "get_misses");
    let ratio = (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64);
    let used = num(stats, "bytes");
    let limit = num(stats, "limit_maxbytes");
    let evictions = num(stats, "evictions");
    let version = stats.get("version").cloned().unwrap_or_default();
    let _ = writeln!(
        out,
        "{server}  memcached {version}, up {}",
        fmt_secs(i64::try_from(num(stats, "uptime")).unwrap_or(i64::MAX))
    );
    let _ = writeln!(out, "  items        {}", num(stats, "curr_items"));
    let pct = if limit > 0 {
        format!(" ({:.1}%)", used as f64 * 100.0 / limit as f64)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  memory       {} used of {}{pct}",
        fmt_bytes(used),
        fmt_bytes(limit)
    );
    match ratio {
        Some(r) => {
            let _ = writeln!(
                out,
                "  hit ratio    {:.1}% ({hits} hits, {misses} misses)",
                r * 100.0
            );
        }
        None => {
            let _ = writeln!(out, "  hit ratio    n/a (no reads yet)");
        }
    }
    if evictions > 0 {
        let _ = writeln!(
            out,
            "  evictions    {evictions}  WARNING: items were evicted before they expired, so sessions were lost (users logged out); give memcached more memory (-m) or store less per session"
        );
    } else {
        let _ = writeln!(out, "  evictions    0 (no session lost to memory pressure)");
    }
    let _ = writeln!(
        out,
        "  connections  {} open, {} since start",
        num(stats, "curr_connections"),
        num(stats, "total_connections")
    );
    json!({
        "server": server,
        "ok": true,
        "version": version,
        "uptime_secs": num(stats, "uptime"),
        "items": num(stats, "curr_items"),
        "bytes": used,
        "limit_bytes": limit,
        "get_hits": hits,
        "get_misses": misses,
        "hit_ratio": ratio,
        "evictions": evictions,
        "curr_connections": num(stats, "curr_connections"),
        "total_connections": num(stats, "total_connections"),
    })
}

/// The sessions in the directory and the bytes they take, as the file driver lists them.
async fn file_stats(dir: &Path) -> Result<(u64, u64), String> {
    let driver = FileDriver::new(dir).map_err(|e| e.to_string())?;
    count_sessions(&driver).await.map_err(|e| e.to_string())
}
