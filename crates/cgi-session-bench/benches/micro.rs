//! Micro-benchmarks: serializers (JSON and Perl's `default`) at about 300 B and 10 KB, the
//! bundled client's reply parser, id generation, and one session cycle on the memory driver
//! (the session layer's own CPU cost, no network).
//!
//! `cargo bench -p cgi-session-bench --bench micro` (add `-- --quick` for a short run).
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;
use std::sync::Arc;

use cgi_session_bench::{
    create_sample_session, record_cycle, sample_record, session_cycle, SESSION_EXPIRE_SECS,
};
use cgi_session_core::{
    IdGenerator, JsonSerializer, MemoryDriver, SecureRandomIds, Serializer, SessionId, SessionStore,
};
use cgi_session_dumper::DataDumperSerializer;
use cgi_session_memcache::client::proto::{parse_reply, Parsed, ReplyKind};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Tags in the sample list: 5 gives about 300 B of JSON, 520 about 10 KB.
const SIZES: [(&str, usize); 2] = [("300B", 5), ("10KB", 520)];

fn serializers(c: &mut Criterion) {
    let formats: [(&str, &dyn Serializer); 2] = [
        ("json", &JsonSerializer),
        ("perl-default", &DataDumperSerializer::new()),
    ];
    let mut g = c.benchmark_group("serializer");
    for (size_name, tags) in SIZES {
        let map = sample_record(1, tags).to_map();
        for (name, ser) in formats {
            let bytes = ser.freeze(&map).expect("the sample encodes");
            g.throughput(Throughput::Bytes(bytes.len() as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/freeze"), size_name),
                &map,
                |b, map| b.iter(|| ser.freeze(black_box(map)).expect("encodes")),
            );
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/thaw"), size_name),
                &bytes,
                |b, bytes| b.iter(|| ser.thaw(black_box(bytes)).expect("decodes")),
            );
        }
    }
    g.finish();
}

/// What one request does to a stored record, by the record codec (parameters kept as their
/// stored text, decoded when read) and by the map path (every value decoded into a `Value`
/// tree and written from it): decode, read `user`, increment `counter`, encode.
fn record_codec(c: &mut Criterion) {
    use cgi_session_core::record::Record;
    let mut g = c.benchmark_group("record_cycle");
    for (size_name, tags) in SIZES {
        let bytes = JsonSerializer
            .freeze(&sample_record(1, tags).to_map())
            .expect("the sample encodes");
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("json/record-codec", size_name),
            &bytes,
            |b, bytes| b.iter(|| record_cycle(black_box(bytes)).expect("a record cycle")),
        );
        g.bench_with_input(
            BenchmarkId::new("json/map-path", size_name),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    let map = JsonSerializer.thaw(black_box(bytes)).expect("decodes");
                    let mut r = Record::from_map(map).expect("a record");
                    let user: Option<String> = r
                        .params
                        .get("user")
                        .and_then(|v| v.as_str().map(str::to_owned));
                    black_box(user);
                    let n = r
                        .params
                        .get("counter")
                        .and_then(|v| v.as_i64())
                        .unwrap_or(0);
                    r.params.insert("counter".into(), (n + 1).into());
                    r.with_map(|m| JsonSerializer.freeze(m)).expect("encodes")
                })
            },
        );
    }
    g.finish();
}

fn reply_parser(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_reply");
    for (size_name, tags) in SIZES {
        let value = JsonSerializer
            .freeze(&sample_record(1, tags).to_map())
            .expect("the sample encodes");
        let mut buf = format!("VA {} c1234567 f0 O4242\r\n", value.len()).into_bytes();
        buf.extend_from_slice(&value);
        buf.extend_from_slice(b"\r\n");
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_with_input(BenchmarkId::new("VA", size_name), &buf, |b, buf| {
            b.iter(|| {
                let parsed = parse_reply(ReplyKind::Meta, black_box(buf), 1 << 24);
                assert!(matches!(parsed, Ok(Parsed::Done(_, _))));
                parsed
            })
        });
    }
    let hd = b"HD c1234568 O4243\r\n".to_vec();
    g.throughput(Throughput::Bytes(hd.len() as u64));
    g.bench_function("HD", |b| {
        b.iter(|| parse_reply(ReplyKind::Meta, black_box(&hd), 1 << 24))
    });
    g.finish();
}

fn ids(c: &mut Criterion) {
    let mut g = c.benchmark_group("id");
    g.bench_function("generate/random", |b| {
        b.iter(|| SecureRandomIds.generate().expect("the OS has randomness"))
    });
    let id = SecureRandomIds
        .generate()
        .expect("the OS has randomness")
        .as_str()
        .to_owned();
    g.bench_function("parse", |b| {
        b.iter(|| SessionId::parse(black_box(&id)).expect("valid"))
    });
    g.finish();
}

/// One read-modify-write session cycle on the memory driver: everything the session layer
/// does per request except the network (load + decode, get, set, encode + store).
fn session_cycles(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("session_cycle_memory_driver");
    let formats: [(&str, Arc<dyn Serializer>); 2] = [
        ("json", Arc::new(JsonSerializer)),
        ("perl-default", Arc::new(DataDumperSerializer::new())),
    ];
    for (name, serializer) in formats {
        let store = SessionStore::builder(MemoryDriver::new())
            .default_expire(SESSION_EXPIRE_SECS)
            .serializer_dyn(serializer)
            .build();
        let id = rt
            .block_on(create_sample_session(&store, 1))
            .expect("a sample session");
        for (cycle, read_only) in [("rmw", false), ("read-only", true)] {
            g.bench_function(BenchmarkId::new(cycle, name), |b| {
                b.iter(|| {
                    rt.block_on(session_cycle(&store, &id, read_only))
                        .expect("a cycle")
                })
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    serializers,
    record_codec,
    reply_parser,
    ids,
    session_cycles
);
criterion_main!(benches);
