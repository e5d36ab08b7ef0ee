//! The `tracing` spans of the session operations: one per load, save, delete and regenerate,
//! with the id's prefix (never the whole id) and the driver.

use std::io::Write;
use std::sync::{Arc, Mutex};

use cgi_session_core::{MemoryDriver, SessionStore};
use tracing_subscriber::fmt::format::FmtSpan;

/// What a `DEBUG` fmt subscriber printed (span closings included) while `test` ran.
fn traced<F: std::future::Future<Output = String>>(test: impl FnOnce() -> F) -> (String, String) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink(Arc::default());
    let out = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("cgi_session_core=debug")
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || out.clone())
        .finish();
    let id = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test())
    });
    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    (log, id)
}

#[test]
fn each_operation_has_a_span_with_the_id_prefix_and_the_driver() {
    let (log, id) = traced(|| async {
        let store = SessionStore::builder(MemoryDriver::new()).build();
        let mut s = store.new_session(None, None).await.unwrap();
        s.set("a", &1).unwrap();
        s.flush().await.unwrap();
        let first = s.id().unwrap().as_str().to_owned();
        let mut s = store.load(Some(&first), None).await.unwrap();
        s.regenerate_id().await.unwrap();
        let id = s.id().unwrap().as_str().to_owned();
        s.delete();
        s.flush().await.unwrap();
        format!("{first} {id}")
    });
    let (first, last) = id.split_once(' ').unwrap();
    for (span, id) in [
        ("session.save", first),
        ("session.load", first),
        ("session.regenerate", first),
        ("session.delete", last),
    ] {
        let expected = format!("{span}{{session={}… driver=\"memory\"}}", &id[..8]);
        assert!(log.contains(&expected), "{expected} in:\n{log}");
    }
    assert!(
        !log.contains(first) && !log.contains(last),
        "never a whole id:\n{log}"
    );
}
