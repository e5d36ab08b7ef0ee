//! The blocking operations on session files (run on the blocking pool by [`super::FileDriver`]).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use crate::driver::{ListedSession, Loaded, StoreOutcome, Version};

use super::layout::{fnv1a64, open_session, session_id_of, unix_secs, TempFile, MAX_LOCK_ATTEMPTS};

/// Opens the session file at `path` and takes its exclusive lock, making sure the path still
/// names the locked file (another writer may have renamed a new file over it while this one
/// waited for the lock). `None` when there is no session file.
pub(super) fn lock_current(path: &Path) -> io::Result<Option<File>> {
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

pub(super) fn create_blocking(
    dir: &Path,
    id: &str,
    path: &Path,
    data: &[u8],
) -> io::Result<StoreOutcome> {
    let temp = TempFile::write(dir, id, data)?;
    // `link` fails when the name exists: an atomic "add". The temporary name is removed by the
    // guard either way.
    match fs::hard_link(&temp.path, path) {
        Ok(()) => Ok(StoreOutcome::Stored(Some(fnv1a64(data)))),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(StoreOutcome::Exists),
        Err(e) => Err(e),
    }
}

pub(super) fn replace_blocking(
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
pub(super) enum FileRead {
    Loaded(Option<Loaded>),
    TooLarge(u64),
}

pub(super) fn load_blocking(path: &Path, touch: bool, max_size: u64) -> io::Result<FileRead> {
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

pub(super) fn remove_blocking(path: &Path) -> io::Result<bool> {
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

pub(super) fn touch_blocking(path: &Path) -> io::Result<bool> {
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
pub(super) fn list_blocking(dir: &Path) -> io::Result<Vec<ListedSession>> {
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
