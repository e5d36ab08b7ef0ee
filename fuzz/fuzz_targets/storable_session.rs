#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgi_session_fuzz::storable_session(data));
