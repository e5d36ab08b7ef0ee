//! The keys the driver builds: the stored key scheme must never change (Perl applications and
//! earlier versions share the items).

use async_trait::async_trait;
use cgi_session_core::{SessionId, StoreMode, StoreOutcome};
use cgi_session_memcache::client::Item;
use cgi_session_memcache::{HandleError, MemcacheDriver, MemcacheHandle, ServerInfo};

/// A handle that is never called: key building needs no server.
#[derive(Debug)]
struct NoServer;

#[async_trait]
impl MemcacheHandle for NoServer {
    fn describe(&self) -> String {
        "no server".into()
    }
    async fn get(&self, _: &str, _: Option<u32>) -> Result<Option<Item>, HandleError> {
        Err(HandleError::Unsupported("reads"))
    }
    async fn write(
        &self,
        _: &str,
        _: &[u8],
        _: u32,
        _: u32,
        _: StoreMode,
    ) -> Result<StoreOutcome, HandleError> {
        Err(HandleError::Unsupported("writes"))
    }
    async fn delete(&self, _: &str) -> Result<bool, HandleError> {
        Err(HandleError::Unsupported("deletes"))
    }
    async fn touch(&self, _: &str, _: u32) -> Result<bool, HandleError> {
        Err(HandleError::Unsupported("touches"))
    }
    async fn server_info(&self) -> Result<ServerInfo, HandleError> {
        Err(HandleError::Unsupported("server info"))
    }
}

#[test]
fn keys_are_prefix_and_id_and_locks_add_their_prefix() {
    let id = SessionId::parse("abc").unwrap();
    let driver = MemcacheDriver::new(NoServer);
    assert_eq!(driver.key_for(&id), "sessions:abc");
    assert_eq!(driver.lock_key_for(&id), "lock:sessions:abc");
    let bare = MemcacheDriver::builder(NoServer)
        .prefix("")
        .build()
        .unwrap();
    assert_eq!(bare.key_for(&id), "abc");
    assert_eq!(bare.lock_key_for(&id), "lock:abc");
}

#[test]
fn hashed_keys_are_the_lowercase_hex_sha256_of_the_id() {
    let id = SessionId::parse("abc").unwrap();
    let driver = MemcacheDriver::builder(NoServer)
        .prefix("app1:")
        .hashed_keys(true)
        .build()
        .unwrap();
    // SHA-256("abc"), FIPS 180-2 appendix B.1.
    let digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(driver.key_for(&id), format!("app1:{digest}"));
    assert_eq!(driver.lock_key_for(&id), format!("lock:app1:{digest}"));
}
