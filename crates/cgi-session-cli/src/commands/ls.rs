//! `ls`: the stored sessions with their sizes, times to live and last accesses.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use cgi_session::{DriverError, ListedSession, OpenedDriver};
use serde_json::{json, Value};

use crate::cli::{CliError, Global, LsArgs};
use crate::store::Store;
use crate::util::{
    decode, escape_json, fmt_bytes, fmt_secs, fmt_when, last_access, now, print_out, show_id,
};

/// One listed session.
struct Listed {
    id: String,
    size: Option<u64>,
    /// Unix time it expires, `None` for never.
    expires_at: Option<i64>,
    last_access: Option<i64>,
    /// Why the expiry is unknown (sessions that do not decode).
    problem: Option<String>,
}

/// Progress on standard error, when it is a terminal or `--progress` asks for it.
struct Progress {
    on: bool,
}

impl Progress {
    fn update(&self, text: &str) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{text}");
            let _ = err.flush();
        }
    }

    fn done(&self, text: &str) {
        if self.on {
            eprintln!("\r\x1b[K{text}");
        }
    }

    /// A ticking "listing keys" line while memcached's crawler works, until it is aborted.
    fn spinner(&self, what: String) -> Option<tokio::task::JoinHandle<()>> {
        self.on.then(|| {
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    {
                        let mut err = std::io::stderr().lock();
                        let _ = write!(
                            err,
                            "\r\x1b[K{what}... {:.1}s",
                            started.elapsed().as_secs_f64()
                        );
                        let _ = err.flush();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        })
    }
}

/// What `list` found: the sessions, and how many id-shaped keys of a bare-id store hold no
/// session of that id (another application's keys).
struct Listing {
    sessions: Vec<Listed>,
    foreign: usize,
}

/// The sessions the driver lists (each once, even when several servers hold a copy). A
/// session is read when the store keeps no expiry of its own (files: the record's idle rule
/// decides), when its key may be another application's (bare ids) and when it may be a
/// replica's tombstone (a removed session).
async fn list(store: &Store, progress: &Progress) -> Result<Listing, CliError> {
    let started = Instant::now();
    let driver = store.driver();
    let spinner = match &store.opened {
        OpenedDriver::Memcache(_) => progress.spinner(format!(
            "listing keys on {} (lru_crawler metadump)",
            store.describe()
        )),
        _ => None,
    };
    let mut seen = BTreeSet::new();
    let mut candidates: Vec<ListedSession> = Vec::new();
    let listed = driver
        .list(&mut |s| {
            if seen.insert(s.id.clone()) {
                candidates.push(s);
            }
            ControlFlow::Continue(())
        })
        .await;
    if let Some(spinner) = spinner {
        spinner.abort();
    }
    match listed {
        Ok(()) => {}
        Err(DriverError::Unsupported { .. }) => {
            return Err(CliError::Usage(
                "ls cannot list sessions stored under hashed keys (--hashed-keys): their keys are SHA-256 digests, not ids; show and rm take the session id itself".into(),
            ))
        }
        Err(e) => return Err(CliError::failed(e)),
    }
    let bare = store.bare_ids();
    let checked = bare || store.memcache().is_some_and(|m| m.replicated.is_some());
    let total = candidates.len();
    let mut sessions = Vec::with_capacity(total);
    let mut foreign = 0;
    for (i, s) in candidates.into_iter().enumerate() {
        let mut item = Listed {
            id: s.id.as_str().to_owned(),
            size: s.size,
            expires_at: s.expires_at,
            last_access: s.last_access,
            problem: None,
        };
        if !checked && s.expires_at.is_some() {
            sessions.push(item);
            continue;
        }
        if i % 100 == 0 {
            progress.update(&format!("reading sessions: {i}/{total}"));
        }
        match driver.load(&s.id, None).await {
            Ok(None) => {} // removed meanwhile, or a tombstone
            Ok(Some(loaded)) => match decode(&loaded.data) {
                Ok((_, record)) if bare && record.id != s.id.as_str() => foreign += 1,
                Ok((_, record)) => {
                    let store_access = loaded.last_access.or(s.last_access);
                    item.last_access = Some(last_access(&record, store_access));
                    item.expires_at = match (s.expires_at, record.expires_at(store_access)) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    sessions.push(item);
                }
                Err(_) if bare => foreign += 1,
                Err(e) => {
                    item.problem = Some(e);
                    sessions.push(item);
                }
            },
            Err(_) if bare => foreign += 1,
            Err(e) if !checked => {
                item.problem = Some(e.to_string());
                sessions.push(item);
            }
            Err(e) => return Err(CliError::failed(e)),
        }
    }
    progress.done(&format!(
        "listed {} session(s) on {} in {:.1}s",
        sessions.len(),
        store.describe(),
        started.elapsed().as_secs_f64()
    ));
    Ok(Listing { sessions, foreign })
}

pub(crate) async fn run(g: &Global, args: &LsArgs) -> Result<(), CliError> {
    let store = Store::open(g).await?;
    let progress = Progress {
        on: args.progress || std::io::stderr().is_terminal(),
    };
    let Listing {
        mut sessions,
        foreign,
    } = list(&store, &progress).await?;
    sessions.sort_by(|a, b| b.last_access.cmp(&a.last_access).then(a.id.cmp(&b.id)));
    let now = now();
    if args.json {
        let items: Vec<Value> = sessions
            .iter()
            .map(|s| {
                json!({
                    "id": show_id(&s.id, g.full_ids),
                    "size": s.size,
                    "ttl_secs": s.expires_at.map(|e| e.saturating_sub(now).max(0)),
                    "expires_at": s.expires_at.map(|e| e.max(0)),
                    "last_access": s.last_access,
                    "error": s.problem,
                })
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&Value::Array(items)).unwrap_or_default();
        text.push('\n');
        print_out(&escape_json(&text));
        return Ok(());
    }
    let mut out = String::new();
    let width = if g.full_ids {
        sessions
            .iter()
            .map(|s| s.id.len())
            .max()
            .unwrap_or(2)
            .max(2)
    } else {
        9
    };
    let _ = writeln!(
        out,
        "{:<width$}  {:>9}  {:>12}  LAST ACCESS",
        "ID", "SIZE", "TTL"
    );
    for s in &sessions {
        let ttl = match (s.expires_at, &s.problem) {
            (_, Some(_)) => "?".to_owned(),
            (None, None) => "never".to_owned(),
            (Some(e), None) if e <= now => "expired".to_owned(),
            (Some(e), None) => fmt_secs(e - now),
        };
        let size = s.size.map_or_else(|| "?".to_owned(), fmt_bytes);
        let last = s
            .last_access
            .map_or_else(|| "?".to_owned(), |t| fmt_when(t, now));
        let _ = writeln!(
            out,
            "{:<width$}  {size:>9}  {ttl:>12}  {last}",
            show_id(&s.id, g.full_ids)
        );
    }
    let undecodable = sessions.iter().filter(|s| s.problem.is_some()).count();
    let _ = writeln!(
        out,
        "{} session(s) on {}{}",
        sessions.len(),
        store.describe(),
        if undecodable > 0 {
            format!("; {undecodable} do not decode (TTL `?`): see `show`")
        } else {
            String::new()
        }
    );
    if foreign > 0 {
        let _ = writeln!(
            out,
            "{foreign} other key(s) that look like session ids hold nothing this tool reads as a session stored under that id (other applications' keys, as driver:memcached shares the server's key space) and were left out"
        );
    }
    print_out(&out);
    Ok(())
}
