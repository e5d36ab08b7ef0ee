#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgi_session_fuzz::sealed_item(data));
