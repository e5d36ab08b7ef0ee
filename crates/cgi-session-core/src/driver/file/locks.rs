//! Lock files: `cgilock_<id>` holding a token and a lease, taken and released under `flock`.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::driver::{LockAttempt, LockToken};
use crate::SessionId;

use super::layout::{
    open_regular, TempFile, LOCK_MAGIC, LOCK_PREFIX, LOCK_TEMP_PREFIX, MAX_LOCK_ATTEMPTS,
    MAX_LOCK_FILE_LEN,
};

/// The content of a lock file: who holds the lock, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LockRecord {
    /// The holder's [`LockToken`].
    pub(super) token: u64,
    /// The last millisecond of the lease, since the Unix epoch.
    pub(super) until_ms: u64,
}

impl LockRecord {
    /// The line written to a lock file: `cgilock1 <16 hex digits> <until ms>\n`.
    pub(super) fn encode(&self) -> String {
        format!("{LOCK_MAGIC} {:016x} {}\n", self.token, self.until_ms)
    }

    /// Parses a lock file's content; `None` unless it is exactly one well-formed line.
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let line = std::str::from_utf8(bytes).ok()?.strip_suffix('\n')?;
        let mut words = line.split(' ');
        let (magic, token, until) = (words.next()?, words.next()?, words.next()?);
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        let well_formed = magic == LOCK_MAGIC
            && words.next().is_none()
            && token.len() == 16
            && token.chars().all(hex)
            && !until.is_empty()
            && until.chars().all(|c| c.is_ascii_digit());
        if !well_formed {
            return None;
        }
        Some(Self {
            token: u64::from_str_radix(token, 16).ok()?,
            until_ms: until.parse().ok()?,
        })
    }

    /// Whether the lease has ended when the clock reads `now_ms` (truncated to whole
    /// milliseconds: the lease runs through its last millisecond, `until_ms`).
    pub(super) fn ended(&self, now_ms: u64) -> bool {
        now_ms > self.until_ms
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(super) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A lease in whole milliseconds, rounded up (a lease never ends before it was asked to).
pub(super) fn lease_millis(lease: Duration) -> u64 {
    let ms = lease.as_millis() + u128::from(!lease.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// What taking the exclusive flock of an opened lock file found.
pub(super) enum Flocked {
    /// The flock is held and the path still names the locked file.
    Current(File),
    /// The path names another file now, or none: open it again.
    Changed,
    /// Another process holds the flock (only when not waiting for it).
    Busy,
}

/// Takes the exclusive flock of `file`, opened from `path`, and checks that `path` still names
/// it (the same inode re-check as [`lock_current`]): a file that was unlinked or replaced while
/// this one waited for the flock is reported as [`Flocked::Changed`]. Waits for the flock when
/// `wait`, else reports [`Flocked::Busy`].
pub(super) fn flock_current(file: File, path: &Path, wait: bool) -> io::Result<Flocked> {
    if wait {
        file.lock()?;
    } else {
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(Flocked::Busy),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    let locked = file.metadata()?;
    match fs::symlink_metadata(path) {
        Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => {
            Ok(Flocked::Current(file))
        }
        Ok(_) => Ok(Flocked::Changed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Flocked::Changed),
        Err(e) => Err(e),
    }
}

/// Opens a lock file for reading; `None` when there is none. Refuses symbolic links (dangling
/// ones included) and anything that is not a regular file.
pub(super) fn open_lock_file(path: &Path) -> io::Result<Option<File>> {
    if let Some(file) = open_regular(path, "a lock file")? {
        return Ok(Some(file));
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a lock file is a symbolic link; refusing to use it",
        )),
        _ => Ok(None),
    }
}

/// Reads the lease of a lock file (at most a few bytes: a planted huge file is not read
/// whole); `None` when it does not hold a well-formed one.
pub(super) fn read_lock_record(file: &mut File) -> io::Result<Option<LockRecord>> {
    let mut content = Vec::new();
    file.take(MAX_LOCK_FILE_LEN + 1).read_to_end(&mut content)?;
    if content.len() as u64 > MAX_LOCK_FILE_LEN {
        return Ok(None);
    }
    Ok(LockRecord::decode(&content))
}

/// The error after [`MAX_LOCK_ATTEMPTS`] lock files were replaced or removed under the caller.
pub(super) fn lock_file_churn() -> io::Error {
    io::Error::other(format!(
        "a lock file kept being replaced or removed while taking its flock \
         ({MAX_LOCK_ATTEMPTS} attempts)"
    ))
}

pub(super) fn try_lock_blocking(
    dir: &Path,
    id: &SessionId,
    path: &Path,
    lease: Duration,
) -> io::Result<LockAttempt> {
    let token = getrandom::u64().map_err(|e| io::Error::other(e.to_string()))?;
    // The lease is counted from now, before the lock is taken: it never ends later than the
    // caller expects.
    let record = LockRecord {
        token,
        until_ms: unix_millis(SystemTime::now()).saturating_add(lease_millis(lease)),
    };
    // Written only when needed, so that acquirers polling a held lock write nothing.
    let mut temp = None;
    for _ in 0..MAX_LOCK_ATTEMPTS {
        let Some(file) = open_lock_file(path)? else {
            // A free lock: `link` fails when the name exists, so of acquirers racing for it
            // only one creates it.
            let temp = lock_temp(&mut temp, dir, id, &record)?;
            match fs::hard_link(&temp.path, path) {
                Ok(()) => return Ok(LockAttempt::Acquired(LockToken(token))),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        // Held, or held until a lease that may have ended: look under the file's flock.
        let Flocked::Current(mut file) = flock_current(file, path, true)? else {
            continue; // Released or taken over just now: look again.
        };
        match read_lock_record(&mut file)? {
            Some(held) if !held.ended(unix_millis(SystemTime::now())) => {
                return Ok(LockAttempt::Held)
            }
            Some(_) => {
                tracing::debug!(session = %id, "taking over a session lock whose lease ended");
            }
            None => tracing::warn!(
                session = %id,
                "a session lock file does not hold a well-formed lease; taking it over"
            ),
        }
        // Still under the flock of the file the path names: nobody else can replace or
        // unlink it before the rename, and whoever waits for its flock finds the path changed.
        let temp = lock_temp(&mut temp, dir, id, &record)?;
        fs::rename(&temp.path, path)?;
        temp.keep = true;
        drop(file);
        return Ok(LockAttempt::Acquired(LockToken(token)));
    }
    Err(lock_file_churn())
}

/// The temporary file holding `record`, written into `slot` on first use.
///
/// Not fsynced: after a power loss no holder is left, and an empty or partial lock file counts
/// as an ended lease.
pub(super) fn lock_temp<'a>(
    slot: &'a mut Option<TempFile>,
    dir: &Path,
    id: &SessionId,
    record: &LockRecord,
) -> io::Result<&'a mut TempFile> {
    if slot.is_none() {
        let bytes = record.encode();
        *slot = Some(TempFile::write_as(
            dir,
            LOCK_TEMP_PREFIX,
            id.as_str(),
            bytes.as_bytes(),
            false,
        )?);
    }
    slot.as_mut()
        .ok_or_else(|| io::Error::other("no temporary lock file"))
}

pub(super) fn unlock_blocking(id: &SessionId, path: &Path, token: LockToken) -> io::Result<bool> {
    for _ in 0..MAX_LOCK_ATTEMPTS {
        let Some(file) = open_lock_file(path)? else {
            return Ok(false);
        };
        let Flocked::Current(mut file) = flock_current(file, path, true)? else {
            continue;
        };
        let Some(held) = read_lock_record(&mut file)? else {
            tracing::warn!(
                session = %id,
                "a session lock file does not hold a well-formed lease; not releasing it"
            );
            return Ok(false);
        };
        if held.token != token.0 {
            return Ok(false);
        }
        let live = !held.ended(unix_millis(SystemTime::now()));
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        drop(file);
        return Ok(live);
    }
    Err(lock_file_churn())
}

pub(super) fn purge_locks_blocking(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix(LOCK_PREFIX))
            .and_then(|n| SessionId::parse(n).ok())
        else {
            continue;
        };
        match entry.file_type() {
            Ok(t) if t.is_file() => {}
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        let path = entry.path();
        let file = match open_regular(&path, "a lock file") {
            Ok(Some(file)) => file,
            Ok(None) => continue,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => continue,
            Err(e) => return Err(e),
        };
        // Never wait: a file whose flock is held is being taken, released or purged right now.
        let Flocked::Current(mut file) = flock_current(file, &path, false)? else {
            continue;
        };
        match read_lock_record(&mut file)? {
            Some(held) if !held.ended(unix_millis(SystemTime::now())) => continue,
            Some(_) => {}
            None => tracing::warn!(
                session = %id,
                "removing a session lock file that does not hold a well-formed lease"
            ),
        }
        match fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        drop(file);
    }
    Ok(removed)
}
