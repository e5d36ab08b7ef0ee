//! The `file` driver: CGI::Session's layout, one file `cgisess_<id>` per session in a directory.
//!
//! # How concurrent requests stay consistent
//!
//! * **Every write is atomic.** The new bytes go to a temporary file in the same directory
//!   (`.cgisess_<id>.tmp.<random hex>`, mode 0600, fsynced), which is then either hard-linked to
//!   `cgisess_<id>` ([`StoreMode::Create`]: the link fails when the name exists, an atomic "add")
//!   or renamed over it ([`StoreMode::Replace`]). A reader therefore always sees a whole session,
//!   the old one or the new one, never a mix.
//! * **Writers serialize on the current file.** The path `cgisess_<id>` is only ever renamed over
//!   or unlinked by a writer that holds the exclusive lock ([`File::lock`]) on the inode the path
//!   points to, checked *after* the lock was taken (when another writer replaced the file in
//!   between, the lock is dropped and taken again on the new file). So a conditional replace
//!   reads the version and renames while no other writer can change the file, and a removal
//!   waits for an in-flight replace, so that a removed session is never brought back.
//! * **Versions are content hashes** (64-bit FNV-1a of the stored bytes). Identical content gives
//!   an identical version: a replace that expected it succeeds although someone rewrote the same
//!   bytes in between, which loses nothing.
//! * **Readers take a shared lock** ([`File::lock_shared`]). With rename-based writes they would
//!   see a whole file without it; the lock keeps them safe should an in-place writer ever be added
//!   (none exists today).
//!
//! # Lifetimes
//!
//! The driver keeps no expiry of its own: `ttl` arguments are ignored, the session layer enforces
//! idle timeouts when it loads a session, and the file's modification time records the last
//! access ([`Loaded::last_access`]); loading with `touch` and [`Driver::touch`] set it to now.
//! Files of sessions nobody loads again stay until a purge (a later CLI `purge`) removes them.
//!
//! # Session locks
//!
//! [`Driver::try_lock`] keeps a session's lock in a file of its own, `cgilock_<id>`, next to
//! the session file (and independent of it: a lock may be held for an id that has no session).
//! The file exists while the lock is held, and holds one line of ASCII:
//!
//! ```text
//! cgilock1 <token> <until>\n
//! ```
//!
//! * `cgilock1` names the format (version 1);
//! * `<token>` is the holder's [`LockToken`]: exactly 16 lowercase hexadecimal digits, drawn
//!   from the operating system's random generator for each acquisition;
//! * `<until>` is the last millisecond of the lease: milliseconds since the Unix epoch, in
//!   decimal (ASCII digits only). The lease has ended once the system clock, read in whole
//!   milliseconds, is past `<until>` (so a lease never ends before its full length, although
//!   the clock's reading is truncated).
//!
//! For example `cgilock1 9f86d081884c7d65 1718000000000` followed by a newline. Anything else
//! in a `cgilock_<id>` file (an empty file left by a power loss, a planted file, a truncated
//! line) counts as a lease that has ended: it is logged and taken over, never trusted.
//!
//! How processes sharing the directory agree on the holder:
//!
//! * **Taking a free lock** writes the line to a temporary file (`.cgilock_<id>.tmp.<hex>`,
//!   mode 0600) and hard-links it to `cgilock_<id>`: the link fails when the name exists, so of
//!   two acquirers only one creates the file, and nobody ever sees a half-written one.
//! * **Everything else is done under the lock file's exclusive [`File::lock`]**, re-checked
//!   against the path once taken, as for session files (a file unlinked or replaced while the
//!   flock was awaited is detected and the path opened again): reading the lease, taking over an
//!   ended one (a new temporary file renamed over the name), releasing and purging. The name is
//!   only ever renamed over or unlinked by the holder of the flock of the file it names, so two
//!   acquirers that both find an ended lease are serialized: the second one reads the first
//!   one's fresh lease and finds the lock held. The flock is held for a read and a rename or an
//!   unlink, never for the lease: [`Driver::try_lock`] does not wait for a holder.
//! * **Releasing** ([`Driver::unlock`]) compares the token under the flock and unlinks the file
//!   only when it matches. It returns `false` when the lease had ended, even if nobody took the
//!   lock since (the file is removed then all the same).
//! * **A crashed holder's file** is taken over by the next acquirer once its lease has ended,
//!   and removed by [`FileDriver::purge_temp_files`] (or [`FileDriver::purge_expired_locks`]).
//!
//! Leases are measured with the system's wall clock, which the processes of one machine share: a
//! clock stepped backwards makes leases last longer, one stepped forwards ends them early. The
//! directory must be on a local file system where `flock` and hard links work (not NFS).
//!
//! # Stale temporary files
//!
//! A writer that crashes (power loss, `SIGKILL`) between writing its temporary file and linking
//! or renaming it leaves a `.cgisess_<id>.tmp.<hex>` (or `.cgilock_<id>.tmp.<hex>`) file behind.
//! It is never mistaken for a session ([`Driver::list`] skips it, as it skips lock files)
//! and can be removed with [`FileDriver::purge_temp_files`].
//!
//! # Security
//!
//! Session files hold whatever the application stores in sessions. Use a directory only the
//! application's user can enter (mode 0700) rather than a shared temporary directory: files are
//! created with mode 0600 and the driver refuses to read through a symbolic link, but a shared
//! directory still lets other users see which sessions exist and plant files.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{
    Driver, ListedSession, Loaded, LockAttempt, LockToken, StoreMode, StoreOutcome, Version,
};
use crate::error::DriverError;
use crate::SessionId;

const DRIVER: &str = "file";

/// Default of [`FileDriver::max_session_size`]: 1 MiB, memcached's default item size limit, so
/// that a session that works on files also fits memcached.
pub const DEFAULT_MAX_SESSION_SIZE: u64 = 1024 * 1024;
/// Session files are named `cgisess_<id>`, as CGI::Session names them.
const PREFIX: &str = "cgisess_";
/// Temporary files are named `.cgisess_<id>.tmp.<hex>`: the leading dot keeps them apart.
const TEMP_PREFIX: &str = ".cgisess_";
const TEMP_MARKER: &str = ".tmp.";
/// Lock files are named `cgilock_<id>`: they never start like a session file.
const LOCK_PREFIX: &str = "cgilock_";
/// Temporary lock files are named `.cgilock_<id>.tmp.<hex>`.
const LOCK_TEMP_PREFIX: &str = ".cgilock_";
/// The first word of a lock file's line: the format and its version.
const LOCK_MAGIC: &str = "cgilock1";
/// The length of a well-formed lock file: magic, token, up to 20 digits, spaces and newline.
const MAX_LOCK_FILE_LEN: u64 = 64;
/// How many times a writer retakes the lock when the file keeps being replaced under it.
const MAX_LOCK_ATTEMPTS: u32 = 64;

/// Sessions kept as files in a directory, one `cgisess_<id>` file per session, as
/// CGI::Session's default `driver:file` keeps them.
///
/// Writes are atomic (temporary file, then link or rename), conditional replaces are serialized
/// with file locks and checked against a hash of the content, so a write of one process never
/// silently overwrites what another process wrote since it read the session (the session layer
/// then re-applies its changes); see the
/// [module documentation](self) for the details. Cloning shares the same directory.
///
/// ```
/// # tokio_test_block_on(async {
/// use cgi_session_core::{Driver, FileDriver, SessionId, StoreMode, StoreOutcome};
///
/// let dir = tempfile::tempdir().unwrap();
/// let driver = FileDriver::new(dir.path()).unwrap();
/// let id = SessionId::parse("5ee0c1d2a1b2c3d4e5f60718293a4b5c").unwrap();
///
/// let created = driver.store(&id, b"user=alice", StoreMode::Create, None).await.unwrap();
/// assert!(matches!(created, StoreOutcome::Stored(Some(_))));
/// assert!(dir.path().join("cgisess_5ee0c1d2a1b2c3d4e5f60718293a4b5c").is_file());
///
/// let loaded = driver.load(&id, None).await.unwrap().unwrap();
/// assert_eq!(loaded.data, b"user=alice");
///
/// // A conditional replace succeeds with the version just loaded...
/// let replace = StoreMode::Replace { expected: loaded.version };
/// let stored = driver.store(&id, b"user=bob", replace, None).await.unwrap();
/// assert!(matches!(stored, StoreOutcome::Stored(Some(_))));
/// // ...and fails once someone else wrote since.
/// let stale = driver.store(&id, b"user=eve", replace, None).await.unwrap();
/// assert_eq!(stale, StoreOutcome::Conflict);
///
/// assert!(driver.remove(&id).await.unwrap());
/// assert_eq!(driver.load(&id, None).await.unwrap(), None);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FileDriver {
    dir: Arc<PathBuf>,
    max_size: u64,
}

impl FileDriver {
    /// A driver keeping its session files in `dir`, which must exist and be a directory.
    ///
    /// This checks the directory once, with blocking calls: build the driver at start-up.
    ///
    /// # Errors
    /// [`DriverError::Config`] when `dir` does not exist, is not a directory or cannot be
    /// inspected; the message says what to do.
    ///
    /// ```
    /// use cgi_session_core::FileDriver;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let driver = FileDriver::new(dir.path()).unwrap();
    /// assert_eq!(driver.dir(), dir.path());
    /// assert!(FileDriver::new(dir.path().join("missing")).is_err());
    /// ```
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, DriverError> {
        let dir = dir.into();
        let config = |message: String| DriverError::Config {
            driver: DRIVER,
            message,
        };
        match fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => Ok(Self {
                dir: Arc::new(dir),
                max_size: DEFAULT_MAX_SESSION_SIZE,
            }),
            Ok(_) => Err(config(format!(
                "session directory {} is not a directory; pass the directory that should hold \
                 the cgisess_<id> files",
                dir.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(config(format!(
                "session directory {} does not exist; create it (mode 0700, owned by the \
                 application's user) or pass an existing directory",
                dir.display()
            ))),
            Err(e) => Err(config(format!(
                "session directory {} cannot be inspected ({e}); check its path and permissions",
                dir.display()
            ))),
        }
    }

    /// A driver keeping its files in the system's temporary directory
    /// ([`std::env::temp_dir`]), CGI::Session's default.
    ///
    /// Prefer [`FileDriver::new`] with a private directory in production: see the
    /// [module documentation](self#security).
    ///
    /// # Errors
    /// As [`FileDriver::new`], when the temporary directory (`TMPDIR`) is unusable.
    ///
    /// ```
    /// use cgi_session_core::FileDriver;
    ///
    /// let driver = FileDriver::in_temp_dir().unwrap();
    /// assert_eq!(driver.dir(), std::env::temp_dir());
    /// ```
    pub fn in_temp_dir() -> Result<Self, DriverError> {
        Self::new(std::env::temp_dir())
    }

    /// The directory holding the session files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The largest session stored or read, in bytes ([`DEFAULT_MAX_SESSION_SIZE`] unless
    /// set). A larger save fails with [`DriverError::TooLarge`] before anything is written; a
    /// larger file (written by another program) is refused the same way without being read,
    /// so one oversized session cannot make every request that carries its cookie slow.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cgi_session_core::{Driver, DriverError, FileDriver, SessionId, StoreMode};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let driver = FileDriver::new(dir.path()).unwrap().max_session_size(16);
    /// let id = SessionId::parse("abc123").unwrap();
    /// let err = driver.store(&id, &[b'x'; 17], StoreMode::Create, None).await.unwrap_err();
    /// assert!(matches!(err, DriverError::TooLarge { size: 17, limit: 16, .. }));
    /// # });
    /// ```
    #[must_use]
    pub fn max_session_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    fn too_large(&self, size: u64) -> DriverError {
        DriverError::TooLarge {
            driver: DRIVER,
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit: usize::try_from(self.max_size).unwrap_or(usize::MAX),
        }
    }

    /// Removes temporary files that crashed writers left behind (`.cgisess_<id>.tmp.<hex>`
    /// and `.cgilock_<id>.tmp.<hex>`) and that were last modified more than `older_than` ago,
    /// then the lock files whose lease has ended, as [`FileDriver::purge_expired_locks`] does;
    /// returns how many files were removed in all.
    ///
    /// A temporary file lives only for the duration of one write, so any age well above the
    /// slowest write (say, an hour) is safe to pass while the application runs.
    ///
    /// # Errors
    /// [`DriverError::Backend`] when the directory cannot be listed or a file not removed.
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// use std::time::Duration;
    /// use cgi_session_core::FileDriver;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let driver = FileDriver::new(dir.path()).unwrap();
    /// let removed = driver.purge_temp_files(Duration::from_secs(3600)).await.unwrap();
    /// assert_eq!(removed, 0);
    /// # });
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub async fn purge_temp_files(&self, older_than: Duration) -> Result<usize, DriverError> {
        let dir = Arc::clone(&self.dir);
        self.run("purging temporary files", move || {
            let cutoff = SystemTime::now().checked_sub(older_than);
            let mut removed = 0;
            for entry in fs::read_dir(&*dir)? {
                let entry = entry?;
                if !is_temp_name(&entry.file_name()) {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                let old = match cutoff {
                    Some(cutoff) => meta.modified()? < cutoff,
                    None => false,
                };
                if meta.is_file() && old {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(removed + purge_locks_blocking(&dir)?)
        })
        .await
    }

    /// Removes the lock files (`cgilock_<id>`) whose lease has ended, left by holders that
    /// crashed or never released, and lock files that do not hold a well-formed lease; returns
    /// how many were removed.
    ///
    /// Safe while the application runs: each file is checked and removed under its exclusive
    /// flock (a file another process is working on is skipped), so a lock taken over or released
    /// in the meantime is left alone. [`FileDriver::purge_temp_files`] calls it too.
    ///
    /// # Errors
    /// [`DriverError::Backend`] when the directory cannot be listed or a file not read or
    /// removed.
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// use std::time::Duration;
    /// use cgi_session_core::{Driver, FileDriver, LockAttempt, SessionId};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let driver = FileDriver::new(dir.path()).unwrap();
    /// let id = SessionId::parse("5ee0c1d2a1b2c3d4e5f60718293a4b5c").unwrap();
    /// let lease = Duration::from_secs(30);
    /// assert!(matches!(driver.try_lock(&id, lease).await.unwrap(), LockAttempt::Acquired(_)));
    /// // A live lease is kept.
    /// assert_eq!(driver.purge_expired_locks().await.unwrap(), 0);
    /// assert_eq!(driver.try_lock(&id, lease).await.unwrap(), LockAttempt::Held);
    /// # });
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub async fn purge_expired_locks(&self) -> Result<usize, DriverError> {
        let dir = Arc::clone(&self.dir);
        self.run("purging expired lock files", move || {
            purge_locks_blocking(&dir)
        })
        .await
    }

    /// The path of a session's file.
    fn session_path(&self, id: &SessionId) -> Result<PathBuf, DriverError> {
        self.path_for(PREFIX, id)
    }

    /// The path of a session's lock file.
    fn lock_path(&self, id: &SessionId) -> Result<PathBuf, DriverError> {
        self.path_for(LOCK_PREFIX, id)
    }

    /// The path of the file `<prefix><id>` in the directory.
    fn path_for(&self, prefix: &str, id: &SessionId) -> Result<PathBuf, DriverError> {
        let id = id.as_str();
        // `SessionId` already excludes these; refuse them anyway so that no id can ever name a
        // file outside the directory.
        if id.is_empty() || id.contains(['/', '\\']) || id.contains("..") {
            return Err(DriverError::Backend {
                driver: DRIVER,
                source: "refusing a session id holding a path separator or `..`".into(),
            });
        }
        Ok(self.dir.join(format!("{prefix}{id}")))
    }

    /// Runs blocking file work on tokio's blocking pool, mapping failures to
    /// [`DriverError::Backend`] (with `op` and the directory, never the full id, for context).
    async fn run<T, F>(&self, op: &'static str, work: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        match tokio::task::spawn_blocking(work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(DriverError::Backend {
                driver: DRIVER,
                source: Box::new(FileError {
                    op,
                    dir: PathBuf::clone(&self.dir),
                    source,
                }),
            }),
            Err(join) => Err(DriverError::Backend {
                driver: DRIVER,
                source: Box::new(join),
            }),
        }
    }
}

/// An I/O failure with what the driver was doing and where.
#[derive(Debug, thiserror::Error)]
#[error("{op} in {}: {source}", dir.display())]
struct FileError {
    op: &'static str,
    dir: PathBuf,
    #[source]
    source: io::Error,
}

/// 64-bit FNV-1a (Fowler–Noll–Vo) hash of `bytes`: the version of a stored session.
///
/// Written out here because it takes four lines and must never change between builds or
/// processes (unlike `std`'s `DefaultHasher`): processes sharing a directory compare versions.
fn fnv1a64(bytes: &[u8]) -> Version {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

fn is_temp_name(name: &OsStr) -> bool {
    name.to_str().is_some_and(|n| {
        (n.starts_with(TEMP_PREFIX) || n.starts_with(LOCK_TEMP_PREFIX)) && n.contains(TEMP_MARKER)
    })
}

/// The session id a directory entry's name stands for, when it is a session file.
fn session_id_of(name: &OsStr) -> Option<SessionId> {
    SessionId::parse(name.to_str()?.strip_prefix(PREFIX)?).ok()
}

/// Opens a session file for reading; `None` when it does not exist.
///
/// Refuses symbolic links (a planted `cgisess_<id>` link must not make the driver read or
/// overwrite another file) and anything that is not a regular file.
fn open_session(path: &Path) -> io::Result<Option<File>> {
    open_regular(path, "a session file")
}

/// Opens the regular file at `path` for reading; `None` when it does not exist; an error
/// naming `what` when it is a symbolic link or not a regular file.
fn open_regular(path: &Path, what: &str) -> io::Result<Option<File>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let opened = file.metadata()?;
    let link = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        // Removed or replaced just now: it was a regular file or not, either way the caller's
        // inode check (writers) or a whole old version (readers) is fine; check what we opened.
        Err(e) if e.kind() == io::ErrorKind::NotFound => opened.clone(),
        Err(e) => return Err(e),
    };
    if link.file_type().is_symlink() || !opened.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} is a symbolic link or not a regular file; refusing to use it"),
        ));
    }
    Ok(Some(file))
}

/// Opens the session file at `path` and takes its exclusive lock, making sure the path still
/// names the locked file (another writer may have renamed a new file over it while this one
/// waited for the lock). `None` when there is no session file.
fn lock_current(path: &Path) -> io::Result<Option<File>> {
    for _ in 0..MAX_LOCK_ATTEMPTS {
        let Some(file) = open_session(path)? else {
            return Ok(None);
        };
        file.lock()?;
        let locked = file.metadata()?;
        match fs::symlink_metadata(path) {
            Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => {
                return Ok(Some(file))
            }
            // Replaced in between: retry on the new file.
            Ok(_) => continue,
            // Removed while waiting for the lock: the session is gone.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "a session file kept being replaced while waiting for its lock ({MAX_LOCK_ATTEMPTS} \
         attempts)"
    )))
}

/// A temporary file in the session directory, removed when dropped unless it was renamed.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// Writes `data` to a new `.cgisess_<id>.tmp.<hex>` file (mode 0600) and fsyncs it.
    fn write(dir: &Path, id: &str, data: &[u8]) -> io::Result<Self> {
        Self::write_as(dir, TEMP_PREFIX, id, data, true)
    }

    /// Writes `data` to a new `<prefix><id>.tmp.<hex>` file (mode 0600), fsynced when `sync`.
    fn write_as(dir: &Path, prefix: &str, id: &str, data: &[u8], sync: bool) -> io::Result<Self> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!("{prefix}{id}{TEMP_MARKER}{hex}"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        // From here on the guard removes the file whatever happens.
        let temp = Self { path, keep: false };
        file.write_all(data)?;
        if sync {
            file.sync_all()?;
        }
        Ok(temp)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn create_blocking(dir: &Path, id: &str, path: &Path, data: &[u8]) -> io::Result<StoreOutcome> {
    let temp = TempFile::write(dir, id, data)?;
    // `link` fails when the name exists: an atomic "add". The temporary name is removed by the
    // guard either way.
    match fs::hard_link(&temp.path, path) {
        Ok(()) => Ok(StoreOutcome::Stored(Some(fnv1a64(data)))),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(StoreOutcome::Exists),
        Err(e) => Err(e),
    }
}

fn replace_blocking(
    dir: &Path,
    id: &str,
    path: &Path,
    data: &[u8],
    expected: Option<Version>,
) -> io::Result<StoreOutcome> {
    // Write before locking, so that the lock is held only for the check and the rename.
    let mut temp = TempFile::write(dir, id, data)?;
    let Some(mut current) = lock_current(path)? else {
        return Ok(StoreOutcome::NotFound);
    };
    if let Some(expected) = expected {
        let mut stored = Vec::new();
        current.read_to_end(&mut stored)?;
        if fnv1a64(&stored) != expected {
            return Ok(StoreOutcome::Conflict);
        }
    }
    fs::rename(&temp.path, path)?;
    temp.keep = true;
    // The old file's lock is released only now, after the rename: the next writer then finds
    // the new file under the path.
    drop(current);
    Ok(StoreOutcome::Stored(Some(fnv1a64(data))))
}

/// What a file holds: a session, or its size when that is over the limit (not read).
enum FileRead {
    Loaded(Option<Loaded>),
    TooLarge(u64),
}

fn load_blocking(path: &Path, touch: bool, max_size: u64) -> io::Result<FileRead> {
    let Some(file) = open_session(path)? else {
        return Ok(FileRead::Loaded(None));
    };
    file.lock_shared()?;
    let meta = file.metadata()?;
    if meta.len() > max_size {
        return Ok(FileRead::TooLarge(meta.len()));
    }
    let last_access = unix_secs(meta.modified()?);
    let mut data = Vec::new();
    // Bounded even if the file grows meanwhile (another program writing without the lock).
    (&file)
        .take(max_size.saturating_add(1))
        .read_to_end(&mut data)?;
    if data.len() as u64 > max_size {
        return Ok(FileRead::TooLarge(data.len() as u64));
    }
    if touch {
        // After reading, so that this load reports the previous access and the next one sees
        // this access.
        file.set_modified(SystemTime::now())?;
    }
    Ok(FileRead::Loaded(Some(Loaded {
        version: Some(fnv1a64(&data)),
        data,
        last_access: Some(last_access),
    })))
}

fn remove_blocking(path: &Path) -> io::Result<bool> {
    let Some(current) = lock_current(path)? else {
        return Ok(false);
    };
    let removed = match fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    drop(current);
    Ok(removed)
}

fn touch_blocking(path: &Path) -> io::Result<bool> {
    match open_session(path)? {
        Some(file) => {
            file.set_modified(SystemTime::now())?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The session files in `dir`, with their sizes and modification times (the last access: a
/// read touches the file). A file removed between listing and `stat` is skipped.
fn list_blocking(dir: &Path) -> io::Result<Vec<ListedSession>> {
    let mut listed = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(id) = session_id_of(&entry.file_name()) else {
            continue;
        };
        if !entry.file_type()?.is_file() {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        listed.push(
            ListedSession::new(id)
                .size(meta.len())
                .last_access(meta.mtime()),
        );
    }
    Ok(listed)
}

/// The content of a lock file: who holds the lock, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LockRecord {
    /// The holder's [`LockToken`].
    token: u64,
    /// The last millisecond of the lease, since the Unix epoch.
    until_ms: u64,
}

impl LockRecord {
    /// The line written to a lock file: `cgilock1 <16 hex digits> <until ms>\n`.
    fn encode(&self) -> String {
        format!("{LOCK_MAGIC} {:016x} {}\n", self.token, self.until_ms)
    }

    /// Parses a lock file's content; `None` unless it is exactly one well-formed line.
    fn decode(bytes: &[u8]) -> Option<Self> {
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
    fn ended(&self, now_ms: u64) -> bool {
        now_ms > self.until_ms
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A lease in whole milliseconds, rounded up (a lease never ends before it was asked to).
fn lease_millis(lease: Duration) -> u64 {
    let ms = lease.as_millis() + u128::from(!lease.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// What taking the exclusive flock of an opened lock file found.
enum Flocked {
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
fn flock_current(file: File, path: &Path, wait: bool) -> io::Result<Flocked> {
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
fn open_lock_file(path: &Path) -> io::Result<Option<File>> {
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
fn read_lock_record(file: &mut File) -> io::Result<Option<LockRecord>> {
    let mut content = Vec::new();
    file.take(MAX_LOCK_FILE_LEN + 1).read_to_end(&mut content)?;
    if content.len() as u64 > MAX_LOCK_FILE_LEN {
        return Ok(None);
    }
    Ok(LockRecord::decode(&content))
}

/// The error after [`MAX_LOCK_ATTEMPTS`] lock files were replaced or removed under the caller.
fn lock_file_churn() -> io::Error {
    io::Error::other(format!(
        "a lock file kept being replaced or removed while taking its flock \
         ({MAX_LOCK_ATTEMPTS} attempts)"
    ))
}

fn try_lock_blocking(
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
fn lock_temp<'a>(
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

fn unlock_blocking(id: &SessionId, path: &Path, token: LockToken) -> io::Result<bool> {
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

fn purge_locks_blocking(dir: &Path) -> io::Result<usize> {
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

#[async_trait]
impl Driver for FileDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    /// Reads `cgisess_<id>` under a shared lock; `last_access` is the file's modification time.
    /// With `touch`, the modification time is set to now after reading (the lifetime itself is
    /// enforced by the session layer).
    async fn load(
        &self,
        id: &SessionId,
        touch: Option<Duration>,
    ) -> Result<Option<Loaded>, DriverError> {
        let path = self.session_path(id)?;
        let max_size = self.max_size;
        match self
            .run("reading a session file", move || {
                load_blocking(&path, touch.is_some(), max_size)
            })
            .await?
        {
            FileRead::Loaded(found) => Ok(found),
            FileRead::TooLarge(size) => Err(self.too_large(size)),
        }
    }

    /// Writes atomically (temporary file, then link or rename); `ttl` is ignored.
    async fn store(
        &self,
        id: &SessionId,
        data: &[u8],
        mode: StoreMode,
        _ttl: Option<Duration>,
    ) -> Result<StoreOutcome, DriverError> {
        let path = self.session_path(id)?;
        if data.len() as u64 > self.max_size {
            return Err(self.too_large(data.len() as u64));
        }
        let dir = Arc::clone(&self.dir);
        let id = id.as_str().to_owned();
        let data = data.to_vec();
        self.run("writing a session file", move || match mode {
            StoreMode::Create => create_blocking(&dir, &id, &path, &data),
            StoreMode::Replace { expected } => replace_blocking(&dir, &id, &path, &data, expected),
        })
        .await
    }

    /// Unlinks `cgisess_<id>` under its exclusive lock, after any in-flight write.
    async fn remove(&self, id: &SessionId) -> Result<bool, DriverError> {
        let path = self.session_path(id)?;
        self.run("removing a session file", move || remove_blocking(&path))
            .await
    }

    /// Sets the file's modification time to now; `ttl` is ignored.
    async fn touch(&self, id: &SessionId, _ttl: Option<Duration>) -> Result<bool, DriverError> {
        let path = self.session_path(id)?;
        self.run("touching a session file", move || touch_blocking(&path))
            .await
    }

    /// Takes the lock file `cgilock_<id>`: creates it when there is none, takes it over when
    /// its lease has ended or it holds no well-formed lease, under its exclusive flock; see the
    /// [module documentation](self#session-locks). Waits only for another process's brief
    /// read-and-rename, never for a holder.
    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<LockAttempt, DriverError> {
        let path = self.lock_path(id)?;
        let dir = Arc::clone(&self.dir);
        let id = id.clone();
        self.run("taking a session lock file", move || {
            try_lock_blocking(&dir, &id, &path, lease)
        })
        .await
    }

    /// Unlinks the lock file `cgilock_<id>` when it holds `token`, compared under its exclusive
    /// flock; `Ok(false)` when it holds another token, none, or a lease that has ended (the file
    /// is removed then all the same).
    async fn unlock(&self, id: &SessionId, token: LockToken) -> Result<bool, DriverError> {
        let path = self.lock_path(id)?;
        let id = id.clone();
        self.run("releasing a session lock file", move || {
            unlock_blocking(&id, &path, token)
        })
        .await
    }

    /// Visits every `cgisess_<id>` file whose name holds a well-formed id; temporary files,
    /// lock files and anything else in the directory are skipped.
    async fn list(
        &self,
        visit: &mut (dyn FnMut(ListedSession) -> ControlFlow<()> + Send),
    ) -> Result<(), DriverError> {
        let dir = Arc::clone(&self.dir);
        let listed = self
            .run("listing session files", move || list_blocking(&dir))
            .await?;
        for session in listed {
            if visit(session).is_break() {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    fn driver() -> (tempfile::TempDir, FileDriver) {
        let dir = tempfile::tempdir().unwrap();
        let driver = FileDriver::new(dir.path()).unwrap();
        (dir, driver)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn replace(expected: Option<Version>) -> StoreMode {
        StoreMode::Replace { expected }
    }

    fn set_mtime(path: &Path, unix: u64) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(unix))
            .unwrap();
    }

    fn now() -> i64 {
        unix_secs(SystemTime::now())
    }

    #[test]
    fn fnv1a64_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn new_refuses_missing_dir_and_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = FileDriver::new(dir.path().join("missing")).unwrap_err();
        assert!(
            matches!(&err, DriverError::Config { driver: "file", message } if message.contains("does not exist")),
            "{err}"
        );
        let file = dir.path().join("plain");
        fs::write(&file, b"x").unwrap();
        let err = FileDriver::new(&file).unwrap_err();
        assert!(
            matches!(&err, DriverError::Config { message, .. } if message.contains("not a directory")),
            "{err}"
        );
        assert_eq!(
            FileDriver::in_temp_dir().unwrap().dir(),
            std::env::temp_dir()
        );
    }

    #[tokio::test]
    async fn create_then_exists() {
        let (dir, d) = driver();
        let a = id("abc123");
        assert_eq!(d.name(), "file");
        let out = d.store(&a, b"one", StoreMode::Create, None).await.unwrap();
        assert_eq!(out, StoreOutcome::Stored(Some(fnv1a64(b"one"))));
        let out = d.store(&a, b"two", StoreMode::Create, None).await.unwrap();
        assert_eq!(out, StoreOutcome::Exists);
        let loaded = d.load(&a, None).await.unwrap().unwrap();
        assert_eq!(
            loaded.data, b"one",
            "a refused create leaves the session alone"
        );
        assert_eq!(loaded.version, Some(fnv1a64(b"one")));
        assert_eq!(
            names(dir.path()),
            ["cgisess_abc123"],
            "no temporary file left"
        );
    }

    #[tokio::test]
    async fn replace_checks_the_version() {
        let (dir, d) = driver();
        let a = id("abc123");
        let Ok(StoreOutcome::Stored(v1)) = d.store(&a, b"v1", StoreMode::Create, None).await else {
            panic!("create failed");
        };
        let out = d.store(&a, b"v2", replace(v1), None).await.unwrap();
        let StoreOutcome::Stored(v2) = out else {
            panic!("{out:?}");
        };
        assert_ne!(v1, v2);
        // v1 is stale now.
        let out = d.store(&a, b"v3", replace(v1), None).await.unwrap();
        assert_eq!(out, StoreOutcome::Conflict);
        assert_eq!(d.load(&a, None).await.unwrap().unwrap().data, b"v2");
        // Without an expected version, a replace overwrites whatever is stored.
        let out = d.store(&a, b"v4", replace(None), None).await.unwrap();
        assert_eq!(out, StoreOutcome::Stored(Some(fnv1a64(b"v4"))));
        let loaded = d.load(&a, None).await.unwrap().unwrap();
        assert_eq!(loaded.data, b"v4");
        assert_eq!(loaded.version, Some(fnv1a64(b"v4")));
        assert_eq!(
            names(dir.path()),
            ["cgisess_abc123"],
            "no temporary file left"
        );
    }

    #[tokio::test]
    async fn replace_never_recreates_a_missing_session() {
        let (dir, d) = driver();
        let a = id("gone");
        for expected in [None, Some(fnv1a64(b"x"))] {
            let out = d.store(&a, b"x", replace(expected), None).await.unwrap();
            assert_eq!(out, StoreOutcome::NotFound);
        }
        d.store(&a, b"x", StoreMode::Create, None).await.unwrap();
        assert!(d.remove(&a).await.unwrap());
        let out = d.store(&a, b"y", replace(Some(fnv1a64(b"x"))), None).await;
        assert_eq!(out.unwrap(), StoreOutcome::NotFound);
        assert_eq!(d.load(&a, None).await.unwrap(), None);
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[tokio::test]
    async fn remove_reports_whether_something_was_stored() {
        let (dir, d) = driver();
        let a = id("abc");
        assert!(!d.remove(&a).await.unwrap());
        d.store(&a, b"x", StoreMode::Create, None).await.unwrap();
        assert!(d.remove(&a).await.unwrap());
        assert!(!d.remove(&a).await.unwrap());
        assert_eq!(d.load(&a, None).await.unwrap(), None);
        assert!(names(dir.path()).is_empty());
        // It can be created again afterwards.
        let out = d.store(&a, b"y", StoreMode::Create, None).await.unwrap();
        assert!(matches!(out, StoreOutcome::Stored(_)));
    }

    #[tokio::test]
    async fn listing_shows_only_session_files() {
        let (dir, d) = driver();
        for s in ["a1", "b2", "c3"] {
            d.store(&id(s), b"x", StoreMode::Create, None)
                .await
                .unwrap();
        }
        let p = dir.path();
        fs::write(p.join(".cgisess_a1.tmp.0123456789abcdef"), b"temp").unwrap();
        fs::write(p.join("unrelated.txt"), b"other").unwrap();
        fs::write(p.join("cgisess_bad.name"), b"not an id").unwrap();
        fs::write(p.join("cgisess_"), b"empty id").unwrap();
        fs::create_dir(p.join("cgisess_subdir")).unwrap();

        let mut seen = Vec::new();
        d.list(&mut |listed| {
            let id = listed.id;
            seen.push(id.as_str().to_owned());
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
        seen.sort();
        assert_eq!(seen, ["a1", "b2", "c3"]);

        let mut count = 0;
        d.list(&mut |_| {
            count += 1;
            ControlFlow::Break(())
        })
        .await
        .unwrap();
        assert_eq!(count, 1, "Break stops the traversal");
    }

    #[tokio::test]
    async fn files_are_private() {
        let (dir, d) = driver();
        let a = id("abc");
        d.store(&a, b"secret", StoreMode::Create, None)
            .await
            .unwrap();
        let path = dir.path().join("cgisess_abc");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        d.store(&a, b"secret2", replace(None), None).await.unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[tokio::test]
    async fn touch_and_last_access_follow_the_mtime() {
        let (dir, d) = driver();
        let a = id("abc");
        let path = dir.path().join("cgisess_abc");
        assert!(!d.touch(&a, None).await.unwrap(), "nothing to touch");
        d.store(&a, b"x", StoreMode::Create, None).await.unwrap();
        let before = now();

        set_mtime(&path, 1_000);
        let loaded = d.load(&a, None).await.unwrap().unwrap();
        assert_eq!(loaded.last_access, Some(1_000));
        let loaded = d.load(&a, None).await.unwrap().unwrap();
        assert_eq!(
            loaded.last_access,
            Some(1_000),
            "a load without touch leaves it"
        );

        let ttl = Some(Duration::from_secs(60));
        let loaded = d.load(&a, ttl).await.unwrap().unwrap();
        assert_eq!(
            loaded.last_access,
            Some(1_000),
            "reports the previous access"
        );
        let loaded = d.load(&a, None).await.unwrap().unwrap();
        assert!(loaded.last_access.unwrap() >= before, "{loaded:?}");

        set_mtime(&path, 2_000);
        assert!(d.touch(&a, ttl).await.unwrap());
        let loaded = d.load(&a, None).await.unwrap().unwrap();
        assert!(loaded.last_access.unwrap() >= before, "{loaded:?}");
        assert_eq!(loaded.data, b"x", "touching leaves the content");
        assert_eq!(loaded.version, Some(fnv1a64(b"x")));
    }

    #[tokio::test]
    async fn garbage_content_is_returned_as_bytes() {
        let (dir, d) = driver();
        let garbage = [0xff, 0x00, 0xfe, b'$', b'D', b' ', 0x80];
        fs::write(dir.path().join("cgisess_junk"), garbage).unwrap();
        let loaded = d.load(&id("junk"), None).await.unwrap().unwrap();
        assert_eq!(loaded.data, garbage);
        assert_eq!(loaded.version, Some(fnv1a64(&garbage)));
        // An empty file is an empty session blob, not a missing session.
        fs::write(dir.path().join("cgisess_empty"), b"").unwrap();
        let loaded = d.load(&id("empty"), None).await.unwrap().unwrap();
        assert!(loaded.data.is_empty());
    }

    #[tokio::test]
    async fn symlinks_are_refused() {
        let (dir, d) = driver();
        let target = dir.path().join("elsewhere");
        fs::write(&target, b"not yours").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("cgisess_link")).unwrap();
        let err = d.load(&id("link"), None).await.unwrap_err();
        assert!(
            matches!(err, DriverError::Backend { driver: "file", .. }),
            "{err}"
        );
        assert!(d
            .store(&id("link"), b"x", replace(None), None)
            .await
            .is_err());
        assert_eq!(fs::read(&target).unwrap(), b"not yours");
    }

    #[tokio::test]
    async fn stale_temp_files_are_purged() {
        let (dir, d) = driver();
        d.store(&id("abc"), b"x", StoreMode::Create, None)
            .await
            .unwrap();
        let old = dir.path().join(".cgisess_abc.tmp.00000000000000aa");
        let fresh = dir.path().join(".cgisess_abc.tmp.00000000000000bb");
        fs::write(&old, b"crashed").unwrap();
        fs::write(&fresh, b"in flight").unwrap();
        set_mtime(&old, 1_000);
        let removed = d.purge_temp_files(Duration::from_secs(3600)).await.unwrap();
        assert_eq!(removed, 1);
        assert_eq!(
            names(dir.path()),
            [".cgisess_abc.tmp.00000000000000bb", "cgisess_abc"]
        );
    }

    #[tokio::test]
    async fn io_errors_are_backend_errors() {
        let (dir, d) = driver();
        let path = dir.path().to_owned();
        drop(dir);
        let err = d
            .store(&id("abc"), b"x", StoreMode::Create, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, DriverError::Backend { driver: "file", .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        assert!(
            !err.to_string().contains("cgisess_abc"),
            "the id is not printed: {err}"
        );
    }

    /// Writers replacing a session while it is removed never bring it back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_removed_session_stays_removed_under_concurrent_replaces() {
        let (dir, d) = driver();
        let a = id("doomed");
        for round in 0..30 {
            d.store(&a, b"0", StoreMode::Create, None).await.unwrap();
            // Each writer replaces until it finds the session gone (bounded, so that a bug fails
            // the test instead of hanging it).
            let writers: Vec<_> = (0..4)
                .map(|w| {
                    let d = d.clone();
                    let a = a.clone();
                    tokio::spawn(async move {
                        for i in 0..1_000 {
                            let data = format!("{w}:{i}");
                            match d.store(&a, data.as_bytes(), replace(None), None).await {
                                Ok(StoreOutcome::Stored(_)) => {}
                                Ok(StoreOutcome::NotFound) => return,
                                other => panic!("unexpected {other:?}"),
                            }
                        }
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(2)).await;
            assert!(d.remove(&a).await.unwrap(), "round {round}");
            for w in writers {
                w.await.unwrap();
            }
            assert_eq!(d.load(&a, None).await.unwrap(), None, "round {round}");
            assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
        }
    }

    /// 8 tasks × 50 increments of a counter, each a load and a conditional replace retried on
    /// conflict: no update may be lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_conditional_increments_lose_nothing() {
        let (_dir, d) = driver();
        let counter = id("counter");
        d.store(&counter, b"0", StoreMode::Create, None)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let d = d.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    for _ in 0..50 {
                        loop {
                            let loaded = d.load(&counter, None).await.unwrap().unwrap();
                            let n: u64 =
                                std::str::from_utf8(&loaded.data).unwrap().parse().unwrap();
                            let next = (n + 1).to_string();
                            let out = d
                                .store(&counter, next.as_bytes(), replace(loaded.version), None)
                                .await
                                .unwrap();
                            match out {
                                StoreOutcome::Stored(_) => break,
                                StoreOutcome::Conflict => continue,
                                other => panic!("unexpected {other:?}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let loaded = d.load(&counter, None).await.unwrap().unwrap();
        assert_eq!(loaded.data, b"400");
    }

    fn acquired(attempt: LockAttempt) -> LockToken {
        match attempt {
            LockAttempt::Acquired(token) => token,
            other => panic!("expected the lock, got {other:?}"),
        }
    }

    fn now_ms() -> u64 {
        unix_millis(SystemTime::now())
    }

    fn read_record(path: &Path) -> LockRecord {
        LockRecord::decode(&fs::read(path).unwrap()).expect("a well-formed lock file")
    }

    const LEASE: Duration = Duration::from_secs(60);

    #[test]
    fn lock_records_round_trip_and_garbage_is_refused() {
        let record = LockRecord {
            token: 0x9f86_d081_884c_7d65,
            until_ms: 1_718_000_000_000,
        };
        assert_eq!(record.encode(), "cgilock1 9f86d081884c7d65 1718000000000\n");
        assert_eq!(LockRecord::decode(record.encode().as_bytes()), Some(record));
        let max = LockRecord {
            token: u64::MAX,
            until_ms: u64::MAX,
        };
        assert!(max.encode().len() as u64 <= MAX_LOCK_FILE_LEN);
        assert_eq!(LockRecord::decode(max.encode().as_bytes()), Some(max));
        for garbage in [
            "",
            "\n",
            "cgilock1 9f86d081884c7d65 1718000000000", // truncated: no newline
            "cgilock1 9f86d081884c7d65 17180\n0000000\n", // two lines
            "cgilock1 9f86d081884c7d65\n",             // no lease
            "cgilock1 9f86d081884c7d6 1718000000000\n", // short token
            "cgilock1 +f86d081884c7d65 1718000000000\n", // sign
            "cgilock1 9F86D081884C7D65 1718000000000\n", // upper case
            "cgilock1 9f86d081884c7d65 +1718000000000\n", // sign
            "cgilock1 9f86d081884c7d65 99999999999999999999\n", // overflows u64
            "cgilock1 9f86d081884c7d65 1718000000000 x\n", // trailing word
            "cgilock1  9f86d081884c7d65 1718000000000\n", // double space
            "cgilock2 9f86d081884c7d65 1718000000000\n", // unknown version
            "cgilock1 9f86d081884c7d65 1718000000000\r\n", // CRLF
        ] {
            assert_eq!(LockRecord::decode(garbage.as_bytes()), None, "{garbage:?}");
        }
        assert_eq!(LockRecord::decode(&[0xff, 0xfe, b'\n']), None);
        assert!(record.ended(record.until_ms + 1));
        assert!(!record.ended(record.until_ms));
        assert_eq!(lease_millis(Duration::from_micros(1)), 1);
        assert_eq!(lease_millis(Duration::from_millis(1500)), 1500);
        assert_eq!(lease_millis(Duration::MAX), u64::MAX);
    }

    #[tokio::test]
    async fn lock_file_holds_the_token_and_lease() {
        let (dir, d) = driver();
        let a = id("abc");
        let before = now_ms();
        let token = acquired(d.try_lock(&a, LEASE).await.unwrap());
        let path = dir.path().join("cgilock_abc");
        let record = read_record(&path);
        assert_eq!(record.token, token.0);
        assert!(record.until_ms >= before + 60_000, "{record:?}");
        assert!(record.until_ms <= now_ms() + 60_000, "{record:?}");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(names(dir.path()), ["cgilock_abc"], "no temporary file left");

        assert_eq!(d.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);
        assert_eq!(read_record(&path), record, "a held lock is left alone");
        assert!(!d.unlock(&a, LockToken(token.0 ^ 1)).await.unwrap());
        assert_eq!(read_record(&path), record, "a wrong token frees nothing");
        assert!(d.unlock(&a, token).await.unwrap());
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
        assert!(!d.unlock(&a, token).await.unwrap(), "released once only");
        let again = acquired(d.try_lock(&a, LEASE).await.unwrap());
        assert_ne!(again, token);
    }

    #[tokio::test]
    async fn an_ended_lease_in_the_file_is_taken_over() {
        let (dir, d) = driver();
        let a = id("abc");
        let path = dir.path().join("cgilock_abc");
        let crashed = LockRecord {
            token: 42,
            until_ms: now_ms() - 1,
        };
        fs::write(&path, crashed.encode()).unwrap();
        let token = acquired(d.try_lock(&a, LEASE).await.unwrap());
        assert_ne!(token.0, 42);
        assert_eq!(read_record(&path).token, token.0);
        assert!(
            !d.unlock(&a, LockToken(42)).await.unwrap(),
            "the crashed holder cannot free the new holder's lock"
        );
        assert_eq!(d.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);
        assert!(d.unlock(&a, token).await.unwrap());
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[tokio::test]
    async fn a_release_after_the_lease_ended_reports_false_and_frees_the_lock() {
        let (dir, d) = driver();
        let a = id("abc");
        let path = dir.path().join("cgilock_abc");
        let token = acquired(d.try_lock(&a, LEASE).await.unwrap());
        // As if the lease had passed.
        let mut record = read_record(&path);
        record.until_ms = now_ms() - 1;
        fs::write(&path, record.encode()).unwrap();
        assert!(!d.unlock(&a, token).await.unwrap());
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[tokio::test]
    async fn a_short_lease_ends_by_itself() {
        let (_dir, d) = driver();
        let a = id("abc");
        let lease = Duration::from_millis(50);
        let started = std::time::Instant::now();
        let stale = acquired(d.try_lock(&a, lease).await.unwrap());
        let deadline = started + Duration::from_secs(10);
        let fresh = loop {
            match d.try_lock(&a, LEASE).await.unwrap() {
                LockAttempt::Acquired(token) => break token,
                LockAttempt::Held => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the lease never ended"
                    );
                    tokio::task::yield_now().await;
                }
            }
        };
        assert!(
            started.elapsed() >= lease,
            "taken over before the lease ended"
        );
        assert!(!d.unlock(&a, stale).await.unwrap());
        assert_eq!(d.try_lock(&a, LEASE).await.unwrap(), LockAttempt::Held);
        assert!(d.unlock(&a, fresh).await.unwrap());
    }

    #[tokio::test]
    async fn garbage_lock_files_are_taken_over_not_trusted() {
        let (dir, d) = driver();
        let a = id("abc");
        let path = dir.path().join("cgilock_abc");
        let well_formed_but_huge = format!("{}{}", "x".repeat(100), "\n");
        for garbage in [
            &b""[..],
            b"cgilock1 0000000000000001 99999999999999",
            b"\xff\xfe garbage",
            well_formed_but_huge.as_bytes(),
        ] {
            fs::write(&path, garbage).unwrap();
            assert!(
                !d.unlock(&a, LockToken(1)).await.unwrap(),
                "{garbage:?} is not released"
            );
            assert_eq!(fs::read(&path).unwrap(), garbage, "and left alone");
            let token = acquired(d.try_lock(&a, LEASE).await.unwrap());
            assert_eq!(read_record(&path).token, token.0);
            assert!(d.unlock(&a, token).await.unwrap());
        }
    }

    #[tokio::test]
    async fn lock_files_are_not_sessions() {
        let (dir, d) = driver();
        let p = dir.path();
        d.store(&id("a1"), b"x", StoreMode::Create, None)
            .await
            .unwrap();
        let t1 = acquired(d.try_lock(&id("a1"), LEASE).await.unwrap());
        acquired(d.try_lock(&id("b2"), LEASE).await.unwrap());
        fs::write(p.join(".cgilock_b2.tmp.0123456789abcdef"), b"temp").unwrap();
        assert_eq!(session_id_of(OsStr::new("cgilock_b2")), None);
        assert_eq!(session_id_of(OsStr::new(".cgilock_b2.tmp.01")), None);

        let mut seen = Vec::new();
        d.list(&mut |listed| {
            let id = listed.id;
            seen.push(id.as_str().to_owned());
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
        assert_eq!(seen, ["a1"]);
        assert_eq!(d.load(&id("b2"), None).await.unwrap(), None);
        assert!(!d.remove(&id("b2")).await.unwrap(), "no session b2");
        assert!(!d.touch(&id("b2"), None).await.unwrap());

        // The lock and the session live apart.
        assert!(d.remove(&id("a1")).await.unwrap());
        assert_eq!(
            d.try_lock(&id("a1"), LEASE).await.unwrap(),
            LockAttempt::Held
        );
        assert!(d.unlock(&id("a1"), t1).await.unwrap());
        assert_eq!(d.load(&id("a1"), None).await.unwrap(), None);
        assert_eq!(names(p), [".cgilock_b2.tmp.0123456789abcdef", "cgilock_b2"]);
    }

    #[tokio::test]
    async fn purges_remove_ended_and_garbage_locks_only() {
        let (dir, d) = driver();
        let p = dir.path();
        let live = acquired(d.try_lock(&id("live"), LEASE).await.unwrap());
        let ended = LockRecord {
            token: 7,
            until_ms: now_ms() - 1,
        };
        fs::write(p.join("cgilock_ended"), ended.encode()).unwrap();
        fs::write(p.join("cgilock_garbage"), b"?").unwrap();
        // Not lock files of a well-formed id, or not files: left alone.
        fs::write(p.join("cgilock_bad.name"), ended.encode()).unwrap();
        fs::create_dir(p.join("cgilock_dir")).unwrap();
        std::os::unix::fs::symlink(p.join("cgilock_ended"), p.join("cgilock_link")).unwrap();
        let old_temp = p.join(".cgilock_x.tmp.00000000000000aa");
        fs::write(&old_temp, ended.encode()).unwrap();
        set_mtime(&old_temp, 1_000);

        assert_eq!(d.purge_expired_locks().await.unwrap(), 2);
        assert_eq!(
            names(p),
            [
                ".cgilock_x.tmp.00000000000000aa",
                "cgilock_bad.name",
                "cgilock_dir",
                "cgilock_link",
                "cgilock_live"
            ]
        );
        fs::write(p.join("cgilock_ended"), ended.encode()).unwrap();
        assert_eq!(
            d.purge_temp_files(Duration::from_secs(3600)).await.unwrap(),
            2,
            "the old lock temporary file and the ended lock"
        );
        assert_eq!(
            names(p),
            [
                "cgilock_bad.name",
                "cgilock_dir",
                "cgilock_link",
                "cgilock_live"
            ]
        );
        assert!(d.unlock(&id("live"), live).await.unwrap());
    }

    #[tokio::test]
    async fn lock_symlinks_are_refused() {
        let (dir, d) = driver();
        let target = dir.path().join("elsewhere");
        let ended = LockRecord {
            token: 7,
            until_ms: 1,
        };
        fs::write(&target, ended.encode()).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("cgilock_link")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("missing"),
            dir.path().join("cgilock_dangling"),
        )
        .unwrap();
        for name in ["link", "dangling"] {
            let err = d.try_lock(&id(name), LEASE).await.unwrap_err();
            assert!(
                matches!(err, DriverError::Backend { driver: "file", .. }),
                "{err}"
            );
            assert!(
                !err.to_string().contains("cgilock_"),
                "no id printed: {err}"
            );
            assert!(d.unlock(&id(name), LockToken(7)).await.is_err());
        }
        assert_eq!(fs::read(&target).unwrap(), ended.encode().as_bytes());
        assert!(!dir.path().join("missing").exists());
    }
}
