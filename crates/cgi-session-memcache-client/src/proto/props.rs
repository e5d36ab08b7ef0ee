//! Property tests of the reply parser.

use super::{parse_reply, MetaCode, MetaFlags, Parsed, Reply, ReplyKind};
use bytes::Bytes;
use proptest::prelude::*;

const MAX: usize = 4096;

fn code() -> impl Strategy<Value = MetaCode> {
    prop_oneof![
        Just(MetaCode::Hd),
        Just(MetaCode::Va),
        Just(MetaCode::En),
        Just(MetaCode::Ns),
        Just(MetaCode::Ex),
        Just(MetaCode::Nf),
        Just(MetaCode::Mn),
    ]
}

fn flag() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (
        prop::sample::select(b"abcdefhklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".to_vec()),
        prop::collection::vec(0x21u8..=0x7e, 0..12),
    )
}

fn reply() -> impl Strategy<Value = Reply> {
    let meta = (
        code(),
        prop::collection::vec(flag(), 0..5),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(code, flags, value)| match code {
            MetaCode::Mn => Reply::Meta {
                code,
                flags: MetaFlags::default(),
                value: None,
            },
            MetaCode::Va => Reply::Meta {
                code,
                flags: flags.into_iter().collect(),
                value: Some(Bytes::from(value)),
            },
            _ => Reply::Meta {
                code,
                flags: flags.into_iter().collect(),
                value: None,
            },
        });
    prop_oneof![
        8 => meta,
        1 => "[a-z ]{0,20}".prop_map(|m| Reply::ServerError(m.trim().to_string())),
    ]
}

fn encode(r: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    match r {
        Reply::Meta { code, flags, value } => {
            let name = match code {
                MetaCode::Hd => "HD",
                MetaCode::Va => "VA",
                MetaCode::En => "EN",
                MetaCode::Ns => "NS",
                MetaCode::Ex => "EX",
                MetaCode::Nf => "NF",
                MetaCode::Mn => "MN",
            };
            out.extend_from_slice(name.as_bytes());
            if let Some(v) = value {
                out.extend_from_slice(format!(" {}", v.len()).as_bytes());
            }
            for (f, tok) in flags.iter() {
                out.push(b' ');
                out.push(f);
                out.extend_from_slice(tok);
            }
            out.extend_from_slice(b"\r\n");
            if let Some(v) = value {
                out.extend_from_slice(v);
                out.extend_from_slice(b"\r\n");
            }
        }
        Reply::ServerError(m) => {
            out.extend_from_slice(format!("SERVER_ERROR {m}\r\n").as_bytes());
        }
        _ => unreachable!(),
    }
    out
}

/// Feeds `stream` in chunks cut at `cuts`, parsing as bytes arrive.
fn parse_incrementally(stream: &[u8], cuts: &[usize]) -> Vec<Reply> {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    bounds.push(stream.len());
    bounds.sort_unstable();
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut out = Vec::new();
    for b in bounds {
        buf.extend_from_slice(&stream[fed..b]);
        fed = b;
        loop {
            match parse_reply(ReplyKind::Meta, &buf, MAX).unwrap() {
                Parsed::NeedMore => break,
                Parsed::Done(r, used) => {
                    out.push(r);
                    buf.drain(..used);
                }
            }
        }
    }
    assert!(buf.is_empty(), "left over bytes");
    out
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        for kind in [ReplyKind::Meta, ReplyKind::Version, ReplyKind::Stats] {
            if let Ok(Parsed::Done(_, used)) = parse_reply(kind, &bytes, MAX) {
                prop_assert!(used > 0 && used <= bytes.len());
            }
        }
    }

    #[test]
    fn reply_like_bytes_never_panic(
        head in prop::sample::select(vec!["VA ", "HD ", "EN", "VA 3 ", "STAT ", "VERSION ", "SERVER_ERROR"]),
        tail in prop::collection::vec(prop::sample::select(b"0123456789 \r\nabcOcVA".to_vec()), 0..64),
    ) {
        let mut bytes = head.as_bytes().to_vec();
        bytes.extend(tail);
        for kind in [ReplyKind::Meta, ReplyKind::Version, ReplyKind::Stats] {
            let _ = parse_reply(kind, &bytes, MAX);
        }
    }

    #[test]
    fn valid_replies_round_trip(r in reply()) {
        let bytes = encode(&r);
        prop_assert_eq!(
            parse_reply(ReplyKind::Meta, &bytes, MAX).unwrap(),
            Parsed::Done(r, bytes.len())
        );
        // Every strict prefix needs more bytes.
        for cut in 0..bytes.len() {
            prop_assert_eq!(parse_reply(ReplyKind::Meta, &bytes[..cut], MAX).unwrap(), Parsed::NeedMore);
        }
    }

    #[test]
    fn any_split_of_a_stream_gives_the_same_parse(
        replies in prop::collection::vec(reply(), 1..8),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let stream: Vec<u8> = replies.iter().flat_map(encode).collect();
        let whole = parse_incrementally(&stream, &[]);
        prop_assert_eq!(&whole, &replies);
        prop_assert_eq!(&parse_incrementally(&stream, &cuts), &replies);
    }
}

#[test]
fn every_single_split_point_of_a_fixed_stream() {
    let stream = b"VA 5 c1 O1\r\nab\r\nc\r\nHD O2\r\nEN O3\r\nVA 0\r\n\r\nMN\r\n";
    let whole = parse_incrementally(stream, &[]);
    assert_eq!(whole.len(), 5);
    for cut in 0..=stream.len() {
        assert_eq!(parse_incrementally(stream, &[cut]), whole, "cut at {cut}");
    }
}
