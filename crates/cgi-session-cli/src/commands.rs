//! The subcommands.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::Arc;

use cgi_session::memcache::client::GetOptions;
use cgi_session::memcache::decode_replica;
use cgi_session::record::Record;
use cgi_session::{Driver, Loaded, SessionId, StoreMode, StoreOutcome};
use serde_json::{json, Map, Value};

use crate::target::{connect, file_driver, memcache_driver, target, Memcache, Store, Target};
use crate::util::{
    decode, escape, escape_json, fmt_bytes, fmt_secs, fmt_time, fmt_when, now, print_out, show_id,
};
use crate::{Cli, CliError, Command, Global, LsArgs, PurgeArgs, ShowArgs, StatsArgs};

/// memcached keys of the driver's health probe (deleted right after; never a session).
const PROBE_MARKER: &str = "__cgi_session_probe__";

pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    let g = &cli.global;
    crate::target::password(g)?;
    match &cli.command {
        Command::Check => check(g).await,
        Command::Stats(args) => stats(g, args).await,
        Command::Ls(args) => ls(g, args).await,
        Command::Show(args) => show(g, args).await,
        Command::Rm(args) => rm(g, &args.id).await,
        Command::Purge(args) => purge(g, args).await,
    }
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

// ----- check ------------------------------------------------------------------------------

async fn check(g: &Global) -> Result<(), CliError> {
    match target(g)? {
        Target::File(dir) => check_file(&dir).await,
        Target::Memcache(servers) => {
            let mut failures = Vec::new();
            for server in &servers {
                let result = match memcache_driver(g, std::slice::from_ref(server)).await {
                    Ok(driver) => driver.check().await.map_err(failed),
                    Err(e) => Err(e),
                };
                match result {
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
    }
}

async fn check_file(dir: &Path) -> Result<(), CliError> {
    let fail = |what: String| {
        print_out(&format!("FAIL  {}  {what}\n", dir.display()));
        CliError::Failed(format!(
            "the session directory {} failed the check",
            dir.display()
        ))
    };
    let driver = file_driver(dir).map_err(|e| fail(e.to_string()))?;
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
    let count = count_sessions(&driver)
        .await
        .map_err(|e| fail(e.to_string()))?;
    print_out(&format!(
        "ok    {}  file driver  write/read/remove round trip {:.2} ms  {count} session(s)\n",
        dir.display(),
        elapsed.as_secs_f64() * 1000.0,
    ));
    Ok(())
}

async fn count_sessions(driver: &dyn Driver) -> Result<usize, cgi_session::DriverError> {
    let mut n = 0;
    driver
        .list(&mut |_| {
            n += 1;
            ControlFlow::Continue(())
        })
        .await?;
    Ok(n)
}

// ----- stats ------------------------------------------------------------------------------

async fn stats(g: &Global, args: &StatsArgs) -> Result<(), CliError> {
    let target = target(g)?;
    let reports = args.count.unwrap_or(if args.watch { u64::MAX } else { 1 });
    let mut failures = Vec::new();
    for i in 0..reports {
        let (text, failed_now) = stats_once(g, &target, args.json).await;
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

fn num(stats: &std::collections::HashMap<String, String>, key: &str) -> u64 {
    stats.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// One report: its text and the servers that failed.
async fn stats_once(g: &Global, target: &Target, as_json: bool) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut failures = Vec::new();
    let mut objects = Vec::new();
    match target {
        Target::File(dir) => {
            let result = file_stats(dir);
            match result {
                Ok((sessions, bytes)) => {
                    objects.push(json!({"dir": dir.display().to_string(), "ok": true, "sessions": sessions, "bytes": bytes}));
                    let _ = writeln!(out, "{}  file driver", dir.display());
                    let _ = writeln!(out, "  sessions     {sessions}");
                    let _ = writeln!(out, "  disk used    {}", fmt_bytes(bytes));
                }
                Err(e) => {
                    objects
                        .push(json!({"dir": dir.display().to_string(), "ok": false, "error": e}));
                    let _ = writeln!(out, "FAIL  {}  {e}", dir.display());
                    failures.push(dir.display().to_string());
                }
            }
        }
        Target::Memcache(servers) => {
            for server in servers {
                let result = match connect(g, std::slice::from_ref(server)).await {
                    Ok(client) => client.stats().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let stats = match result {
                    Ok(stats) => stats,
                    Err(e) => {
                        objects.push(json!({"server": server, "ok": false, "error": e}));
                        let _ = writeln!(out, "FAIL  {server}  {e}");
                        failures.push(server.clone());
                        continue;
                    }
                };
                let hits = num(&stats, "get_hits");
                let misses = num(&stats, "get_misses");
                let ratio = (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64);
                let used = num(&stats, "bytes");
                let limit = num(&stats, "limit_maxbytes");
                let evictions = num(&stats, "evictions");
                let version = stats.get("version").cloned().unwrap_or_default();
                objects.push(json!({
                    "server": server,
                    "ok": true,
                    "version": version,
                    "uptime_secs": num(&stats, "uptime"),
                    "items": num(&stats, "curr_items"),
                    "bytes": used,
                    "limit_bytes": limit,
                    "get_hits": hits,
                    "get_misses": misses,
                    "hit_ratio": ratio,
                    "evictions": evictions,
                    "curr_connections": num(&stats, "curr_connections"),
                    "total_connections": num(&stats, "total_connections"),
                }));
                let _ = writeln!(
                    out,
                    "{server}  memcached {version}, up {}",
                    fmt_secs(i64::try_from(num(&stats, "uptime")).unwrap_or(i64::MAX))
                );
                let _ = writeln!(out, "  items        {}", num(&stats, "curr_items"));
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
                    num(&stats, "curr_connections"),
                    num(&stats, "total_connections")
                );
            }
        }
    }
    if as_json {
        out = serde_json::to_string_pretty(&Value::Array(objects)).unwrap_or_default();
        out.push('\n');
    }
    (out, failures)
}

fn file_stats(dir: &Path) -> Result<(u64, u64), String> {
    let mut sessions = 0;
    let mut bytes = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read the directory: {e}"))?;
    for entry in entries.flatten() {
        if file_session_id(&entry.file_name()).is_none() {
            continue;
        }
        if let Ok(meta) = entry.metadata() {
            if meta.is_file() {
                sessions += 1;
                bytes += meta.len();
            }
        }
    }
    Ok((sessions, bytes))
}

fn file_session_id(name: &std::ffi::OsStr) -> Option<SessionId> {
    SessionId::parse(name.to_str()?.strip_prefix("cgisess_")?).ok()
}

// ----- ls ---------------------------------------------------------------------------------

/// One listed session.
struct Listed {
    /// The id (a digest with hashed keys).
    id: String,
    size: Option<u64>,
    /// Unix time it expires, `None` for never.
    expires_at: Option<i64>,
    last_access: Option<i64>,
    /// Why the expiry is unknown (file sessions that do not decode).
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
}

/// What `list` found: the sessions, and how many id-shaped keys of a bare-id store hold no
/// session of that id (another application's keys).
struct Listing {
    sessions: Vec<Listed>,
    foreign: usize,
}

async fn list(store: &Store, progress: &Progress) -> Result<Listing, CliError> {
    let started = Instant::now();
    let mut foreign = 0;
    let listed = match store {
        Store::Memcache(m) => {
            let driver = &m.driver;
            let spinner = progress.on.then(|| {
                let server = m.servers.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    loop {
                        {
                            let mut err = std::io::stderr().lock();
                            let _ = write!(
                                err,
                                "\r\x1b[Klisting keys on memcached {server} (lru_crawler metadump)... {:.1}s",
                                started.elapsed().as_secs_f64()
                            );
                            let _ = err.flush();
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                })
            });
            let keys = driver.list_keys().await;
            if let Some(spinner) = spinner {
                spinner.abort();
            }
            let keys = keys.map_err(failed)?;
            let prefix_len = driver.key_for(&probe_id()).len() - probe_id().as_str().len();
            // A key is listed once even when several servers hold a copy of it.
            let mut seen = std::collections::BTreeSet::new();
            let candidates: Vec<Listed> = keys
                .into_iter()
                .filter_map(|k| {
                    let id = k.key.get(prefix_len..)?.to_owned();
                    if id.starts_with(PROBE_MARKER)
                        || SessionId::parse(&id).is_err()
                        || !seen.insert(id.clone())
                    {
                        return None;
                    }
                    Some(Listed {
                        id,
                        size: k.size,
                        expires_at: k.exp,
                        last_access: k.last_access,
                        problem: None,
                    })
                })
                .collect();
            if m.bare_ids || m.replicated.is_some() {
                // Bare ids share the server with other applications' keys: keep the keys
                // that hold a session stored under that id. Replicated keys may hold a
                // tombstone (a removed session): keep the live ones.
                let total = candidates.len();
                let mut kept = Vec::with_capacity(total);
                for (i, item) in candidates.into_iter().enumerate() {
                    if i % 100 == 0 {
                        progress.update(&format!("reading sessions: {i}/{total}"));
                    }
                    let id = SessionId::parse(&item.id)
                        .unwrap_or_else(|_| unreachable!("checked above"));
                    match driver.load(&id, None).await {
                        Ok(Some(loaded)) if m.bare_ids => match decode(&loaded.data) {
                            Ok((_, record)) if record.id == item.id => kept.push(item),
                            _ => foreign += 1,
                        },
                        Ok(Some(_)) => kept.push(item),
                        Ok(None) => {} // removed meanwhile, or a tombstone
                        Err(_) if m.bare_ids => foreign += 1,
                        Err(e) => return Err(failed(e)),
                    }
                }
                kept
            } else {
                candidates
            }
        }
        Store::File(driver) => {
            let dir = driver.dir().to_owned();
            let mut names = Vec::new();
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| failed(format!("cannot read {}: {e}", dir.display())))?;
            for entry in entries.flatten() {
                if let Some(id) = file_session_id(&entry.file_name()) {
                    names.push((id, entry.path()));
                }
            }
            let total = names.len();
            let mut listed = Vec::with_capacity(total);
            for (i, (id, path)) in names.into_iter().enumerate() {
                if i % 100 == 0 {
                    progress.update(&format!("reading session files: {i}/{total}"));
                }
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue; // removed meanwhile
                };
                if !meta.is_file() {
                    continue;
                }
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                let mut item = Listed {
                    id: id.as_str().to_owned(),
                    size: Some(meta.len()),
                    expires_at: None,
                    last_access: mtime,
                    problem: None,
                };
                match std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| decode(&b))
                {
                    Ok((_, record)) => {
                        let last = mtime.unwrap_or(record.atime).max(record.atime);
                        item.last_access = Some(last);
                        item.expires_at = idle_expiry(&record, last);
                    }
                    Err(e) => item.problem = Some(e),
                }
                listed.push(item);
            }
            listed
        }
    };
    progress.done(&format!(
        "listed {} session(s) on {} in {:.1}s",
        listed.len(),
        store.describe(),
        started.elapsed().as_secs_f64()
    ));
    Ok(Listing {
        sessions: listed,
        foreign,
    })
}

fn probe_id() -> SessionId {
    SessionId::parse("x").unwrap_or_else(|_| unreachable!("`x` is a well-formed id"))
}

/// When a session with this record, last accessed at `last`, expires (`None`: never).
fn idle_expiry(record: &Record, last: i64) -> Option<i64> {
    match record.etime {
        Some(e) if e < 0 => Some(i64::MIN),
        Some(e) if e > 0 => Some(last.saturating_add(e)),
        _ => None,
    }
}

async fn ls(g: &Global, args: &LsArgs) -> Result<(), CliError> {
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

// ----- show / rm --------------------------------------------------------------------------

/// Finds the session `input` names: an exact id, or a unique prefix of one.
async fn resolve(
    g: &Global,
    store: &Store,
    input: &str,
) -> Result<(SessionId, Option<Loaded>), CliError> {
    let shown = show_id(input, g.full_ids);
    let id = SessionId::parse(input).map_err(|_| {
        CliError::Usage(format!(
            "{shown} is not a session id: ids are 1 to 128 characters of A-Z a-z 0-9 _ -"
        ))
    })?;
    let driver = store.driver();
    match driver.load(&id, None).await {
        Ok(Some(loaded)) => return Ok((id, Some(loaded))),
        Ok(None) => {}
        Err(e) => {
            // A replicated copy read over the plain pool: its envelope hides the gzip a
            // compressed session has, so only the replicated driver reads it.
            if let Store::Memcache(m) = store {
                if m.replicated.is_none() && replicas(m, &id).await?.is_some() {
                    return Ok((id, None));
                }
            }
            return Err(failed(e));
        }
    }
    let missing = || CliError::Failed(format!("no session {shown} on {}", store.describe()));
    if g.hashed_keys {
        return Err(missing());
    }
    let mut matches = Vec::new();
    match driver
        .list(&mut |listed| {
            let candidate = listed.id;
            // A key several servers hold (replicas) is listed once per server.
            if candidate.as_str().starts_with(input) && !matches.contains(&candidate) {
                matches.push(candidate);
            }
            ControlFlow::Continue(())
        })
        .await
    {
        Ok(()) => {}
        Err(cgi_session::DriverError::Unsupported { .. }) => return Err(missing()),
        Err(e) => return Err(failed(e)),
    }
    match matches.len() {
        0 => Err(missing()),
        1 => {
            let id = matches.remove(0);
            let loaded = driver.load(&id, None).await.map_err(failed)?;
            Ok((id, loaded))
        }
        n => Err(CliError::Failed(format!(
            "{n} sessions start with {shown}; give more characters"
        ))),
    }
}

/// The copies of a replicated session: how many the servers hold, where, and the driver that
/// reads and removes all of them.
struct Replicas {
    driver: Arc<dyn Driver>,
    copies: usize,
    servers: Vec<String>,
}

/// Whether session `id` is replicated (`--replicas`, or found in the replica envelope on a
/// server of the pool), and if so how. Without `--replicas`, every server is asked for the key
/// (read only); the number of copies is the fewest that, placed as the application's
/// `ReplicatedHandle` places them, cover every server that holds one.
async fn replicas(m: &Memcache, id: &SessionId) -> Result<Option<Replicas>, CliError> {
    let key = m.driver.key_for(id);
    let names = m.client.servers();
    let describe = |at: &[usize]| at.iter().map(|&i| names[i].clone()).collect::<Vec<_>>();
    if let Some(handle) = &m.replicated {
        let at = handle.servers_for(&key);
        return Ok(Some(Replicas {
            driver: Arc::new(m.driver.clone()),
            copies: at.len(),
            servers: describe(&at),
        }));
    }
    let mut holders = Vec::new();
    let mut enveloped = false;
    for (server, name) in names.iter().enumerate() {
        match m.client.get_on(server, &key, GetOptions::new()).await {
            Ok(Some(item)) => {
                enveloped |= decode_replica(&item.value).is_some();
                holders.push(server);
            }
            Ok(None) => {}
            // A server that is down holds no copy we could read or remove now; the
            // application's next read repairs it from the others.
            Err(e) if e.is_unavailable() => {
                eprintln!(
                    "warning: {name} did not answer: {}",
                    crate::util::escape_message(&e.to_string())
                );
            }
            Err(e) => return Err(failed(e)),
        }
    }
    if !enveloped {
        return Ok(None);
    }
    let copies = (1..=names.len())
        .find(|&k| {
            let at = m.client.placement(&key, k);
            holders.iter().all(|h| at.contains(h))
        })
        .unwrap_or(names.len());
    let (driver, handle) = m.replicated_driver(copies)?;
    Ok(Some(Replicas {
        driver: Arc::new(driver),
        copies,
        servers: describe(&handle.servers_for(&key)),
    }))
}

/// The driver that reads and removes session `id` whole: the store's, or for a replicated
/// session one that works on all of its copies.
async fn session_driver(
    store: &Store,
    id: &SessionId,
) -> Result<(Arc<dyn Driver>, Option<Replicas>), CliError> {
    match store {
        Store::Memcache(m) => match replicas(m, id).await? {
            Some(r) => Ok((r.driver.clone(), Some(r))),
            None => Ok((store.driver(), None)),
        },
        Store::File(_) => Ok((store.driver(), None)),
    }
}

async fn show(g: &Global, args: &ShowArgs) -> Result<(), CliError> {
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
                .map_err(failed)?
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
    let last = loaded
        .last_access
        .map_or(record.atime, |la| la.max(record.atime));
    let expires_at = idle_expiry(&record, last);
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
    let expiry = match (record.etime, expires_at) {
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

async fn rm(g: &Global, input: &str) -> Result<(), CliError> {
    let store = Store::open(g).await?;
    let (id, _) = resolve(g, &store, input).await?;
    let shown = show_id(id.as_str(), g.full_ids);
    let (driver, replicas) = session_driver(&store, &id).await?;
    if matches!(&store, Store::Memcache(m) if m.bare_ids) {
        // Bare-id keys share the server with other applications: remove only a session
        // stored under this id.
        let is_session = match driver.load(&id, None).await.map_err(failed)? {
            Some(loaded) => decode(&loaded.data).is_ok_and(|(_, r)| r.id == id.as_str()),
            None => true, // nothing there: the removal below reports it
        };
        if !is_session {
            return Err(CliError::Failed(format!(
                "the key {shown} on {} holds no session stored under that id that this tool can read (driver:memcached shares the server's key space with other applications); not removed",
                store.describe()
            )));
        }
    }
    if driver.remove(&id).await.map_err(failed)? {
        let copies = match &replicas {
            Some(r) => format!(
                ": replicated, all {} cop{} (on {}) replaced by a tombstone, so none comes back",
                r.copies,
                if r.copies == 1 { "y" } else { "ies" },
                r.servers.join(", ")
            ),
            None => String::new(),
        };
        print_out(&format!(
            "removed session {shown} from {}{copies}\n",
            store.describe()
        ));
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "no session {shown} on {} (already removed or expired)",
            store.describe()
        )))
    }
}

// ----- purge ------------------------------------------------------------------------------

async fn purge(g: &Global, args: &PurgeArgs) -> Result<(), CliError> {
    let dir = match target(g)? {
        Target::File(dir) => dir,
        Target::Memcache(_) => {
            return Err(CliError::Usage(
                "purge --expired is for the file driver: memcached removes expired sessions by itself (each item's TTL follows the session's idle timeout)".into(),
            ))
        }
    };
    debug_assert!(args.expired);
    let driver = file_driver(&dir)?;
    let mut ids = Vec::new();
    driver
        .list(&mut |listed| {
            let id = listed.id;
            ids.push(id);
            ControlFlow::Continue(())
        })
        .await
        .map_err(failed)?;
    let now = now();
    let (mut expired, mut kept, mut undecodable) = (0usize, 0usize, 0usize);
    for id in &ids {
        let Some(loaded) = driver.load(id, None).await.map_err(failed)? else {
            continue; // removed meanwhile
        };
        let Ok((_, record)) = decode(&loaded.data) else {
            undecodable += 1;
            continue;
        };
        let last = loaded
            .last_access
            .map_or(record.atime, |la| la.max(record.atime));
        if idle_expiry(&record, last).is_some_and(|at| at <= now) {
            expired += 1;
            if !args.dry_run {
                driver.remove(id).await.map_err(failed)?;
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
        dir.display()
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
            .map_err(failed)?;
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
