//! Session locks seen from outside: a request held in the background, the lock item in
//! memcached.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::client::{short, Call, Http, Reply};
use cgi_session::memcache::client::{Client as Memcache, GetOptions, Item};
use tokio::task::JoinHandle;

/// A task aborted when dropped.
pub(crate) struct Background<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts `GET /hold?ms=600000` on `addr` with `cookie` in the background.
pub(crate) fn hold(http: &Http, addr: SocketAddr, cookie: &str) -> Background<Reply> {
    let (http, cookie) = (http.clone(), cookie.to_owned());
    Background(tokio::spawn(async move {
        http.send(
            addr,
            &Call::get("/hold?ms=600000"),
            Some(&cookie),
            Duration::from_secs(700),
        )
        .await
    }))
}

/// The memcached key of the lock of session `id`.
fn lock_key(id: &str) -> String {
    format!("lock:sessions:{id}")
}

/// Polls memcached until the lock item of session `id` exists (its first read, with the
/// remaining TTL), with a deadline; fails early, with its answer, if the holder's request
/// ends first.
pub(crate) async fn wait_for_lock(
    memcache: &Memcache,
    id: &str,
    holder: &mut Background<Reply>,
) -> Item {
    let key = lock_key(id);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let item = memcache
            .get(&key, GetOptions::new().ttl_remaining(true))
            .await
            .unwrap_or_else(|e| panic!("reading lock:sessions:{}: {e}", short(id)));
        if let Some(item) = item {
            return item;
        }
        if holder.0.is_finished() {
            let answer = (&mut holder.0).await.map(|r| r.describe());
            panic!(
                "no lock item lock:sessions:{} while /hold ran; /hold answered: {answer:?}",
                short(id)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no lock item lock:sessions:{} within 10 s of starting /hold?ms=600000",
            short(id)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls memcached until the lock item of session `id` is gone, with a deadline; returns how
/// long that took.
pub(crate) async fn wait_for_no_lock(
    memcache: &Memcache,
    id: &str,
    within: Duration,
) -> Result<Duration, String> {
    let key = lock_key(id);
    let start = Instant::now();
    loop {
        let item = memcache
            .get(&key, GetOptions::new().ttl_remaining(true))
            .await
            .unwrap_or_else(|e| panic!("reading lock:sessions:{}: {e}", short(id)));
        match item {
            None => return Ok(start.elapsed()),
            Some(item) if start.elapsed() >= within => {
                return Err(format!(
                "the lock item lock:sessions:{} is still there after {:?} (remaining TTL {:?} s)",
                short(id),
                start.elapsed(),
                item.ttl_remaining
            ))
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
