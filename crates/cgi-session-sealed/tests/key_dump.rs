//! What someone who can reach memcached sees of sealed sessions: every key listed with
//! `lru_crawler metadump` and every item fetched raw holds neither the values nor the
//! parameter names.

use std::time::{Duration, Instant};

use cgi_session_core::SessionStore;
use cgi_session_memcache::client::{Client, ClientConfig, Error, GetOptions};
use cgi_session_memcache::MemcacheDriver;
use cgi_session_sealed::{key_id_of, KeyRing, SealedDriver, SealingKey};
use memcached_harness::MemcachedServer;

const VALUE: &str = "secret-greeting-1234";
const NAMES: [&str; 3] = ["greeting_param", "user_email_param", "cart_items_param"];

async fn dump_keys(client: &Client, at_least: usize) -> Vec<Vec<u8>> {
    // The LRU crawler may be busy right after start: poll with a deadline.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match client.metadump().await {
            Ok(dump) if dump.entries.len() >= at_least => {
                return dump.entries.into_iter().map(|e| e.key).collect();
            }
            Ok(_) | Err(Error::Server { .. }) => {}
            Err(e) => panic!("metadump failed: {e}"),
        }
        assert!(
            Instant::now() < end,
            "metadump never listed {at_least} keys"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_dump_shows_no_session_data() {
    let server = MemcachedServer::start();
    let client = Client::connect(ClientConfig::new(server.addr().to_string()))
        .await
        .unwrap();
    let keys = KeyRing::new(SealingKey::generate(4).unwrap());
    let driver = SealedDriver::new(MemcacheDriver::new(client.clone()), keys);
    let store = SessionStore::builder(driver).build();

    let mut ids = Vec::new();
    for n in 0..5 {
        let mut s = store.new_session(None, None).await.unwrap();
        s.set(NAMES[0], VALUE).unwrap();
        s.set(NAMES[1], &format!("ann{n}@example.invalid")).unwrap();
        s.set(NAMES[2], &[VALUE, VALUE]).unwrap();
        s.flush().await.unwrap();
        ids.push(s.id().unwrap().as_str().to_owned());
    }
    // The sessions read back through the sealed driver.
    for id in &ids {
        let s = store.load(Some(id), None).await.unwrap();
        assert_eq!(s.get::<String>(NAMES[0]).unwrap().as_deref(), Some(VALUE));
    }

    let listed = dump_keys(&client, ids.len()).await;
    assert_eq!(listed.len(), ids.len(), "one item per session: {listed:?}");
    for key in &listed {
        let item = client
            .get(key, GetOptions::new())
            .await
            .unwrap()
            .expect("a listed key is stored");
        let bytes = &item.value[..];
        assert_eq!(key_id_of(bytes), Some(4), "every item is sealed with key 4");
        let mut needles: Vec<&str> = NAMES.to_vec();
        needles.extend([VALUE, "secret", "example.invalid", "_SESSION_"]);
        for needle in needles {
            assert!(
                !contains(bytes, needle.as_bytes()) && !contains(key, needle.as_bytes()),
                "{needle:?} is visible in the item under {}",
                String::from_utf8_lossy(key)
            );
        }
    }
    // The same check on the store without sealing finds the value: the test can see it.
    let plain = SessionStore::builder(MemcacheDriver::new(client.clone())).build();
    let mut s = plain.new_session(None, None).await.unwrap();
    s.set(NAMES[0], VALUE).unwrap();
    s.flush().await.unwrap();
    let key = format!("sessions:{}", s.id().unwrap().as_str());
    let raw = client.get(&key, GetOptions::new()).await.unwrap().unwrap();
    assert!(contains(&raw.value, VALUE.as_bytes()) && contains(&raw.value, NAMES[0].as_bytes()));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
