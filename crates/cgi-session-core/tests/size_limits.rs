//! Size limits fail clearly: the file driver's cap refuses oversized saves before writing and
//! oversized files without reading them.

use cgi_session_core::{DriverError, Error, FileDriver, SessionStore};

#[tokio::test]
async fn the_file_driver_refuses_oversized_sessions_on_save_and_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SessionStore::builder(FileDriver::new(dir.path()).unwrap().max_session_size(4096)).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("small", "fits").unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();

    // A save that would exceed the cap fails at save time, and the stored copy stays.
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    s.set("big", &"x".repeat(8192)).unwrap();
    let err = s.flush().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Driver(DriverError::TooLarge { limit: 4096, .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("store less in the session"),
        "{err}"
    );
    s.discard();
    let s = store.load(Some(&id), None).await.unwrap();
    assert_eq!(s.get::<String>("small").unwrap().as_deref(), Some("fits"));
    assert_eq!(s.get::<String>("big").unwrap(), None);

    // A 50 MiB file another program left is refused without being read.
    let path = dir.path().join(format!("cgisess_{id}"));
    std::fs::write(&path, vec![b' '; 50 << 20]).unwrap();
    let err = store.load(Some(&id), None).await.unwrap_err();
    assert!(
        matches!(err, Error::Driver(DriverError::TooLarge { size, .. }) if size == 50 << 20),
        "{err}"
    );
}
