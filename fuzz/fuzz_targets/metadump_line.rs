#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgi_session_fuzz::metadump_line(data));
