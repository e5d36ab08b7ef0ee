//! The conformance suite against the embedded drivers.

mod memory {
    use cgi_session_conformance::{conformance_suite, Fixture};
    use cgi_session_core::MemoryDriver;

    async fn fixture() -> Fixture {
        Fixture::new(MemoryDriver::new())
    }

    conformance_suite!(fixture);
}

mod file {
    use cgi_session_conformance::{conformance_suite, Fixture};
    use cgi_session_core::FileDriver;

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let driver = FileDriver::new(dir.path()).expect("file driver");
        // Each file write is an fsync'd rename: fewer increments keep the test quick.
        Fixture::new(driver)
            .with_guard(dir)
            .increments_per_worker(100)
    }

    conformance_suite!(fixture);
}
