//! The core conformance suite against real memcached processes, through the bundled client
//! and (feature `memcache-crate`) through the `memcache` crate's client.

mod bundled {
    use cgi_session_conformance::{conformance_suite, Fixture};
    use cgi_session_memcache::client::{Client, ClientConfig};
    use cgi_session_memcache::MemcacheDriver;
    use memcached_harness::MemcachedServer;

    async fn fixture() -> Fixture {
        let server = MemcachedServer::start();
        let client = Client::connect(ClientConfig::new(server.addr().to_string()).pool_size(4))
            .await
            .expect("connect to the test memcached");
        Fixture::new(MemcacheDriver::new(client)).with_guard(server)
    }

    conformance_suite!(fixture);
}

#[cfg(feature = "memcache-crate")]
mod memcache_crate {
    use cgi_session_conformance::{conformance_suite, Fixture};
    use cgi_session_memcache::memcache_crate::MemcacheCrateHandle;
    use cgi_session_memcache::MemcacheDriver;
    use memcached_harness::MemcachedServer;

    async fn fixture() -> Fixture {
        let server = MemcachedServer::start();
        let url = format!("memcache://{}", server.addr());
        let client =
            memcache::Client::with_pool_size(url.as_str(), 4).expect("memcache crate client");
        let handle = MemcacheCrateHandle::new(client, server.addr().to_string());
        // Blocking client on tokio's blocking pool: fewer increments keep the test quick.
        Fixture::new(MemcacheDriver::new(handle))
            .with_guard(server)
            .increments_per_worker(200)
            .without_listing()
            // No compare-and-delete in that crate: a lock could not be released safely.
            .without_locks()
    }

    conformance_suite!(fixture);
}
