//! Unit tests of the file driver, by concern: session files (layout, atomic writes, versions,
//! listing, purges) and lock files.

use std::fs::{self, File};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::layout::unix_secs;
use super::FileDriver;
use crate::driver::{Driver, StoreMode, Version};
use crate::SessionId;

pub(super) fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

pub(super) fn driver() -> (tempfile::TempDir, FileDriver) {
    let dir = tempfile::tempdir().unwrap();
    let driver = FileDriver::new(dir.path()).unwrap();
    (dir, driver)
}

pub(super) fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

pub(super) fn replace(expected: Option<Version>) -> StoreMode {
    StoreMode::Replace { expected }
}

pub(super) fn set_mtime(path: &Path, unix: u64) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(unix))
        .unwrap();
}

pub(super) fn now() -> i64 {
    unix_secs(SystemTime::now())
}

/// The ids `d` lists, in its order.
pub(super) async fn listed_ids(d: &FileDriver) -> Vec<String> {
    let mut seen = Vec::new();
    d.list(&mut |listed| {
        seen.push(listed.id.as_str().to_owned());
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    seen
}

mod lock_files;
mod session_files;
