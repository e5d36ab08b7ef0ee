//! The futures of the data operations stay small: callers such as the session driver box one
//! per call (`async_trait`), and a box over about 1 KiB leaves malloc's per-thread cache (it
//! was 4.3 KiB for `get` while the rare paths, connecting and the text dialect, were inline).

use cgi_session_memcache_client::{Client, ClientConfig, GetOptions, SetOptions};

const MOST: usize = 1024;

#[tokio::test]
async fn request_futures_stay_under_a_kibibyte() {
    // Lazy: nothing is connected, and the futures below are never polled.
    let c = Client::connect(ClientConfig::new("127.0.0.1:9").lazy(true))
        .await
        .unwrap();
    let sizes = [
        ("get", std::mem::size_of_val(&c.get("k", GetOptions::new()))),
        (
            "set",
            std::mem::size_of_val(&c.set("k", b"v", SetOptions::new())),
        ),
        ("delete", std::mem::size_of_val(&c.delete("k", Some(1)))),
        ("touch", std::mem::size_of_val(&c.touch("k", 60))),
        ("noop", std::mem::size_of_val(&c.noop())),
    ];
    for (op, size) in sizes {
        assert!(size <= MOST, "the future of {op} takes {size} bytes");
    }
}
