//! The benchmark sessions: their parameters and records.

use crate::config::SESSION_EXPIRE_SECS;
use cgi_session_core::record::Record;
use serde_json::{Map, Value};

/// The parameters of benchmark session `i`: a user name, an integer counter and a list of
/// `tags` short strings (5 gives a stored session of about 300 bytes).
///
/// ```
/// let p = cgi_session_bench::sample_params(7, 5);
/// assert_eq!(p["user"], "user-0000007");
/// assert_eq!(p["recent"].as_array().unwrap().len(), 5);
/// ```
pub fn sample_params(i: usize, tags: usize) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("user".into(), Value::from(format!("user-{i:07}")));
    m.insert("counter".into(), Value::from(0i64));
    let recent: Vec<Value> = (0..tags)
        .map(|t| Value::from(format!("/page/{t}/{:05}", (i * 31 + t) % 100_000)))
        .collect();
    m.insert("recent".into(), Value::Array(recent));
    m
}

/// A full stored record (the `_SESSION_*` fields around [`sample_params`]), as the session
/// layer writes it: the input of the serializer micro-benchmarks and of the `raw` workload.
///
/// ```
/// use cgi_session_core::{JsonSerializer, Serializer};
/// let r = cgi_session_bench::sample_record(0, 5);
/// let n = JsonSerializer.freeze(&r.to_map()).unwrap().len();
/// assert!((250..350).contains(&n), "{n}");
/// ```
pub fn sample_record(i: usize, tags: usize) -> Record {
    let mut record = Record::new(
        format!(
            "{:032x}",
            (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        ),
        1_767_225_600,
        "127.0.0.1".into(),
    );
    record.etime = Some(SESSION_EXPIRE_SECS);
    record.params = sample_params(i, tags).into();
    record
}
