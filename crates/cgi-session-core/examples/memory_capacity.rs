//! The memory driver before and past its capacity: sessions created per second, and the p50
//! of loading an existing session (from another thread) while creating past capacity.
//!
//! ```sh
//! cargo run --release -p cgi-session-core --example memory_capacity -- [CAPACITY] [PAST]
//! ```
//!
//! Creates `CAPACITY` sessions (default 100,000), then `PAST` more (default `CAPACITY`), each
//! with a 200-byte value and a one-hour lifetime, through the [`Driver`] directly.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cgi_session_core::{Driver, MemoryDriver, SessionId, StoreMode};

fn id(i: usize) -> SessionId {
    SessionId::parse(&format!("{i:032x}")).expect("a valid id")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let capacity: usize = args
        .next()
        .map_or(100_000, |a| a.parse().expect("CAPACITY"));
    let past: usize = args.next().map_or(capacity, |a| a.parse().expect("PAST"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let d = MemoryDriver::with_capacity(capacity);
        let value = vec![b'x'; 200];
        let ttl = Some(Duration::from_secs(3600));
        let created = Arc::new(AtomicUsize::new(0));

        let start = Instant::now();
        for i in 0..capacity {
            d.store(&id(i), &value, StoreMode::Create, ttl)
                .await
                .unwrap();
        }
        let first = start.elapsed();
        created.store(capacity, Ordering::SeqCst);

        // A reader loads a recently created session (within the last capacity/4) in a loop.
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (d, done, created) = (d.clone(), done.clone(), created.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
                while !done.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let n = created.load(Ordering::Relaxed);
                    let back = 1 + (x as usize) % (capacity / 4).max(1);
                    let t = Instant::now();
                    let _ = d.load(&id(n.saturating_sub(back)), None).await.unwrap();
                    lat.push(t.elapsed());
                    tokio::task::yield_now().await;
                }
                lat
            })
        };

        let start = Instant::now();
        for i in capacity..capacity + past {
            d.store(&id(i), &value, StoreMode::Create, ttl)
                .await
                .unwrap();
            created.store(i + 1, Ordering::Relaxed);
            if i % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let second = start.elapsed();
        done.store(true, Ordering::Relaxed);
        let mut lat = reader.await.unwrap();
        lat.sort();
        let pct = |p: usize| lat.get(lat.len() * p / 100).copied().unwrap_or_default();

        let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64();
        println!("capacity {capacity}, held at the end {}", d.len());
        println!(
            "first {capacity} creations (below capacity): {:.0} sessions/s",
            rate(capacity, first)
        );
        println!(
            "next {past} creations (past capacity):     {:.0} sessions/s",
            rate(past, second)
        );
        println!(
            "loads while creating past capacity: {} loads, p50 {:?}, p99 {:?}",
            lat.len(),
            pct(50),
            pct(99)
        );
    });
}
