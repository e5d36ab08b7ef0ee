//! Runs N cycles of one workload, one at a time, for instruction counting under callgrind,
//! which is exact and unaffected by other load on the machine (wall-clock figures are in
//! `cgi-session-load`). Workloads: `record` (the JSON record codec: decode, read, set, encode),
//! `session` (a session cycle on the memory driver: load, read `user`, increment `counter`,
//! flush), `perl` and `storable` (the same with Perl's Data::Dumper and Storable formats), `json` (the same cycle over memcached, a memcached started for the run) and `raw`
//! (the bundled client's two commands of that cycle: `mg` with CAS and TTL, CAS `ms`).
//!
//! ```sh
//! cargo build --release -p cgi-session-bench --example cycle_instructions
//! for n in 1000 11000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \
//!     target/release/examples/cycle_instructions session $n 2>&1 | grep refs
//! done   # (Ir at 11000 - Ir at 1000) / 10000 = instructions per cycle
//! ```
#![allow(missing_docs)]

use std::hint::black_box;

use std::time::Duration;

use cgi_session_bench::{
    create_sample_session, record_cycle, sample_record, session_cycle, SESSION_EXPIRE_SECS,
};
use cgi_session_core::{JsonSerializer, MemoryDriver, Serializer, SessionStore};
use cgi_session_dumper::DataDumperSerializer;
use cgi_session_memcache::client::{Client, ClientConfig, GetOptions, SetOptions};
use cgi_session_memcache::MemcacheDriver;
use cgi_session_storable::StorableSerializer;
use memcached_harness::MemcachedServer;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "session".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    match what.as_str() {
        "record" => {
            let bytes = JsonSerializer
                .freeze(&sample_record(1, 5).to_map())
                .expect("the sample encodes");
            for _ in 0..n {
                black_box(record_cycle(black_box(&bytes)).expect("a record cycle"));
            }
        }
        "raw" | "json" => {
            let server = MemcachedServer::builder().memory_mb(64).start();
            let rt = runtime();
            rt.block_on(async {
                let client = Client::connect(
                    ClientConfig::new(server.addr().to_string()).timeout(Duration::from_secs(5)),
                )
                .await
                .expect("connects to memcached");
                if what == "raw" {
                    let value = JsonSerializer
                        .freeze(&sample_record(1, 5).to_map())
                        .expect("the sample encodes");
                    let ttl = SESSION_EXPIRE_SECS as u32;
                    client
                        .set("raw-key", &value, SetOptions::new().ttl(ttl))
                        .await
                        .expect("set");
                    for _ in 0..n {
                        let item = client
                            .get(
                                "raw-key",
                                GetOptions::new().cas(true).flags(true).touch(ttl),
                            )
                            .await
                            .expect("get")
                            .expect("stored");
                        black_box(&item.value);
                        client
                            .set(
                                "raw-key",
                                &item.value,
                                SetOptions::new().ttl(ttl).cas(item.cas),
                            )
                            .await
                            .expect("set");
                    }
                } else {
                    let driver = MemcacheDriver::builder(client).build().expect("a driver");
                    session_cycles(SessionStore::builder(driver), n).await;
                }
            });
        }
        "perl" => {
            runtime().block_on(session_cycles(
                SessionStore::builder(MemoryDriver::new()).serializer(DataDumperSerializer::new()),
                n,
            ));
        }
        "storable" => {
            runtime().block_on(session_cycles(
                SessionStore::builder(MemoryDriver::new()).serializer(StorableSerializer::new()),
                n,
            ));
        }
        _ => {
            runtime().block_on(session_cycles(
                SessionStore::builder(MemoryDriver::new()),
                n,
            ));
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn session_cycles(builder: cgi_session_core::SessionStoreBuilder, n: usize) {
    let store = builder.default_expire(SESSION_EXPIRE_SECS).build();
    let id = create_sample_session(&store, 1)
        .await
        .expect("a sample session");
    for _ in 0..n {
        session_cycle(&store, &id, false).await.expect("a cycle");
    }
}
