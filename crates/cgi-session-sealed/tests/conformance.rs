//! The core conformance suite through the sealing wrapper: over the memory driver, and over
//! a real memcached process through the bundled client.

mod memory {
    use cgi_session_conformance::{conformance_suite, Fixture};
    use cgi_session_core::MemoryDriver;
    use cgi_session_sealed::{KeyRing, SealedDriver, SealingKey};

    async fn fixture() -> Fixture {
        let keys = KeyRing::new(SealingKey::generate(2).unwrap())
            .with_previous([SealingKey::generate(1).unwrap()])
            .unwrap();
        Fixture::new(SealedDriver::new(MemoryDriver::new(), keys))
    }

    conformance_suite!(fixture);
}

mod memcached {
    use cgi_session_conformance::{conformance_suite, Fixture};
    use cgi_session_memcache::client::{Client, ClientConfig};
    use cgi_session_memcache::MemcacheDriver;
    use cgi_session_sealed::{KeyRing, SealedDriver, SealingKey};
    use memcached_harness::MemcachedServer;

    async fn fixture() -> Fixture {
        let server = MemcachedServer::start();
        let client = Client::connect(ClientConfig::new(server.addr().to_string()).pool_size(4))
            .await
            .expect("connect to the test memcached");
        let keys = KeyRing::new(SealingKey::generate(1).unwrap());
        Fixture::new(SealedDriver::new(MemcacheDriver::new(client), keys)).with_guard(server)
    }

    conformance_suite!(fixture);
}
