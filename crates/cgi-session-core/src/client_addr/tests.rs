//! The address rule, case by case.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `(trusted list, header, peer, header lines, expected client)`.
type Case<'a> = (&'a str, ForwardedHeader, &'a str, &'a [&'a [u8]], &'a str);

const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
const FWD: ForwardedHeader = ForwardedHeader::Forwarded;

#[test]
fn the_rightmost_untrusted_address_is_the_client() {
    let cases: &[Case<'_>] = &[
        // No trusted proxy: headers ignored.
        ("", XFF, "192.0.2.1", &[b"203.0.113.9"], "192.0.2.1"),
        ("", FWD, "192.0.2.1", &[b"for=203.0.113.9"], "192.0.2.1"),
        // A spoofed header from an untrusted peer is ignored.
        (
            "10.0.0.0/8",
            XFF,
            "198.51.100.7",
            &[b"10.0.0.1"],
            "198.51.100.7",
        ),
        (
            "10.0.0.0/8",
            XFF,
            "198.51.100.7",
            &[b"203.0.113.9, 10.0.0.2"],
            "198.51.100.7",
        ),
        (
            "10.0.0.0/8",
            FWD,
            "198.51.100.7",
            &[b"for=203.0.113.9"],
            "198.51.100.7",
        ),
        // One trusted proxy.
        (
            "127.0.0.1",
            XFF,
            "127.0.0.1",
            &[b"203.0.113.9"],
            "203.0.113.9",
        ),
        (
            "127.0.0.1",
            FWD,
            "127.0.0.1",
            &[b"for=203.0.113.9;proto=https"],
            "203.0.113.9",
        ),
        // What the client put left of the real address is not believed.
        (
            "127.0.0.1",
            XFF,
            "127.0.0.1",
            &[b"1.2.3.4, 203.0.113.9"],
            "203.0.113.9",
        ),
        (
            "127.0.0.1",
            FWD,
            "127.0.0.1",
            &[b"for=1.2.3.4, for=203.0.113.9"],
            "203.0.113.9",
        ),
        // A chain of trusted proxies is skipped from the right.
        (
            "10.0.0.0/8",
            XFF,
            "10.0.0.1",
            &[b"1.2.3.4, 203.0.113.9, 10.0.0.3, 10.0.0.2"],
            "203.0.113.9",
        ),
        (
            "10.0.0.0/8 127.0.0.1",
            FWD,
            "127.0.0.1",
            &[b"for=203.0.113.9, for=10.9.9.9"],
            "203.0.113.9",
        ),
        // A trusted proxy that is not in the middle of the list breaks the chain: an
        // untrusted hop is the client, whatever stands left of it.
        (
            "10.0.0.0/8",
            XFF,
            "10.0.0.1",
            &[b"203.0.113.9, 198.51.100.1, 10.0.0.2"],
            "198.51.100.1",
        ),
        // Every hop trusted: the leftmost one.
        (
            "10.0.0.0/8",
            XFF,
            "10.0.0.1",
            &[b"10.0.0.5, 10.0.0.2"],
            "10.0.0.5",
        ),
        // Several header lines are one list, in order.
        (
            "10.0.0.0/8",
            XFF,
            "10.0.0.1",
            &[b"203.0.113.9", b"10.0.0.2"],
            "203.0.113.9",
        ),
        (
            "10.0.0.0/8",
            FWD,
            "10.0.0.1",
            &[b"for=203.0.113.9", b"for=10.0.0.2"],
            "203.0.113.9",
        ),
        // No header, or an empty one: the peer.
        ("127.0.0.1", XFF, "127.0.0.1", &[], "127.0.0.1"),
        ("127.0.0.1", XFF, "127.0.0.1", &[b"", b"  "], "127.0.0.1"),
        ("127.0.0.1", FWD, "127.0.0.1", &[b""], "127.0.0.1"),
        // Only the configured header counts.
        (
            "127.0.0.1",
            FWD,
            "127.0.0.1",
            &[b"203.0.113.9"],
            "127.0.0.1",
        ),
        // Ports.
        (
            "127.0.0.1",
            XFF,
            "127.0.0.1",
            &[b"203.0.113.9:4711"],
            "203.0.113.9",
        ),
        (
            "127.0.0.1",
            FWD,
            "127.0.0.1",
            &[b"for=\"203.0.113.9:4711\""],
            "203.0.113.9",
        ),
        (
            "127.0.0.1",
            FWD,
            "127.0.0.1",
            &[b"for=\"203.0.113.9:_port\""],
            "203.0.113.9",
        ),
        // IPv6: bare, bracketed, with a port; a v6 peer; IPv4-mapped peers and entries.
        ("::1", XFF, "::1", &[b"2001:db8::7"], "2001:db8::7"),
        ("::1", XFF, "::1", &[b"[2001:db8::7]"], "2001:db8::7"),
        ("::1", XFF, "::1", &[b"[2001:db8::7]:443"], "2001:db8::7"),
        (
            "::1",
            FWD,
            "::1",
            &[b"for=\"[2001:db8:cafe::17]:4711\""],
            "2001:db8:cafe::17",
        ),
        (
            "::1",
            FWD,
            "::1",
            &[b"For=\"[2001:db8:cafe::17]\""],
            "2001:db8:cafe::17",
        ),
        (
            "fd00::/8",
            XFF,
            "fd00::1",
            &[b"2001:db8::7, fd12::3"],
            "2001:db8::7",
        ),
        (
            "127.0.0.1",
            XFF,
            "::ffff:127.0.0.1",
            &[b"203.0.113.9"],
            "203.0.113.9",
        ),
        (
            "127.0.0.1",
            XFF,
            "127.0.0.1",
            &[b"::ffff:203.0.113.9"],
            "203.0.113.9",
        ),
        (
            "::ffff:127.0.0.1",
            XFF,
            "127.0.0.1",
            &[b"203.0.113.9"],
            "203.0.113.9",
        ),
        (
            "10.0.0.0/8",
            XFF,
            "2001:db8::1",
            &[b"203.0.113.9"],
            "2001:db8::1",
        ),
        // unknown, obfuscated identifiers: the walk stops at the proxy that wrote them.
        (
            "127.0.0.1",
            FWD,
            "127.0.0.1",
            &[b"for=unknown"],
            "127.0.0.1",
        ),
        (
            "127.0.0.1",
            FWD,
            "127.0.0.1",
            &[b"for=_hidden"],
            "127.0.0.1",
        ),
        ("127.0.0.1", XFF, "127.0.0.1", &[b"unknown"], "127.0.0.1"),
        (
            "10.0.0.0/8",
            FWD,
            "10.0.0.1",
            &[b"for=203.0.113.9, for=_gateway, for=10.0.0.2"],
            "10.0.0.2",
        ),
        (
            "10.0.0.0/8",
            XFF,
            "10.0.0.1",
            &[b"203.0.113.9, _gw, 10.0.0.2"],
            "10.0.0.2",
        ),
        // An element without for=: unknown hop.
        (
            "127.0.0.1",
            FWD,
            "127.0.0.1",
            &[b"proto=https;by=10.0.0.1"],
            "127.0.0.1",
        ),
        // A quoted value may hold commas and semicolons.
        (
            "127.0.0.1",
            FWD,
            "127.0.0.1",
            &[b"for=203.0.113.9;host=\"a,b;c\""],
            "203.0.113.9",
        ),
        (
            "127.0.0.1",
            FWD,
            "127.0.0.1",
            &[b"for=203.0.113.9;ext=\"q\\\"x\""],
            "203.0.113.9",
        ),
        // An untrusted hop's own header is left alone: only trusted hops are skipped.
        (
            "127.0.0.1",
            XFF,
            "127.0.0.1",
            &[b"203.0.113.9, 127.0.0.1"],
            "203.0.113.9",
        ),
    ];
    for (i, (list, header, peer, lines, expected)) in cases.iter().enumerate() {
        let proxies = TrustedProxies::parse(list).unwrap().header(*header);
        let got = proxies.client_addr(ip(peer), lines.iter().copied());
        assert_eq!(
            got,
            ip(expected),
            "case {i}: {list:?} {header:?} {peer} {lines:?}"
        );
    }
}

#[test]
fn garbage_falls_back_to_the_peer_or_the_last_trusted_hop() {
    let garbage: &[&[u8]] = &[
        b"not an address",
        b",,,",
        b"203.0.113.9:99999",
        b"203.0.113.9:",
        b"[2001:db8::7",
        b"[2001:db8::7]x",
        b"[203.0.113.9]",
        b"fe80::1%eth0",
        b"\xff\xfe\x00",
        b"for=203.0.113.9",
        b"999.1.1.1",
        b"\"203.0.113.9\"",
    ];
    let proxies = TrustedProxies::parse("127.0.0.1").unwrap();
    for g in garbage {
        assert_eq!(
            proxies.client_addr(ip("127.0.0.1"), [*g]),
            ip("127.0.0.1"),
            "{g:?}"
        );
    }
    // Broken Forwarded syntax: the whole header is ignored (the peer), even after a good
    // element.
    let broken: &[&[u8]] = &[
        b"for=203.0.113.9,,",
        b"for=203.0.113.9 for=198.51.100.1",
        b"for=\"203.0.113.9",
        b"for",
        b"for=",
        b"=203.0.113.9",
        b"for=203.0.113.9;for=198.51.100.1",
        b"for=[2001:db8::7]",
        b"for=203.0.113.9\\",
        b"for=\"x\\",
        b"\xff=1",
        b"for=198.51.100.1, garbage here",
    ];
    let proxies = proxies.header(FWD);
    for b in broken {
        assert_eq!(
            proxies.client_addr(ip("127.0.0.1"), [*b]),
            ip("127.0.0.1"),
            "{b:?}"
        );
    }
    // A big header does not panic either.
    let big = "1.2.3.4, ".repeat(10_000) + "garbage";
    assert_eq!(
        TrustedProxies::parse("127.0.0.1")
            .unwrap()
            .client_addr(ip("127.0.0.1"), [big.as_bytes()]),
        ip("127.0.0.1")
    );
    let every_byte: Vec<u8> = (0..=255).collect();
    for header in [XFF, FWD] {
        let p = TrustedProxies::parse("127.0.0.1").unwrap().header(header);
        assert_eq!(
            p.client_addr(ip("127.0.0.1"), [every_byte.as_slice()]),
            ip("127.0.0.1")
        );
    }
}

#[test]
fn proxy_lists_parse_and_refuse_with_the_entry_named() {
    let p =
        TrustedProxies::parse(" 127.0.0.1,::1  10.0.0.0/8,fd00::/8, [::2] ,10.1.2.3/16 ").unwrap();
    let shown: Vec<String> = p.nets().iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "127.0.0.1/32",
            "::1/128",
            "10.0.0.0/8",
            "fd00::/8",
            "::2/128",
            "10.1.0.0/16"
        ]
    );
    assert!(p.trusts(ip("10.255.0.1")) && p.trusts(ip("fdab::1")) && p.trusts(ip("10.1.9.9")));
    assert!(!p.trusts(ip("11.0.0.1")) && !p.trusts(ip("fe00::1")) && !p.trusts(ip("12.1.0.1")));
    assert!(TrustedProxies::parse("").unwrap().is_empty());
    assert!(TrustedProxies::parse(" , ").unwrap().is_empty());
    assert!(!TrustedProxies::none().trusts(ip("127.0.0.1")));
    // /0 trusts everyone of that family.
    let all = TrustedProxies::parse("0.0.0.0/0").unwrap();
    assert!(all.trusts(ip("203.0.113.9")) && !all.trusts(ip("2001:db8::1")));
    for bad in [
        "10.0.0.0/33",
        "::/129",
        "localhost",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "10.0.0/8",
        "1.2.3.4/8/8",
        "[::1]:80",
    ] {
        let err = TrustedProxies::parse(&format!("127.0.0.1, {bad}")).unwrap_err();
        assert_eq!(
            err,
            ProxyListError::BadEntry {
                entry: bad.to_owned()
            },
            "{bad}"
        );
        assert!(
            err.to_string().contains("10.0.0.0/8"),
            "the message shows the syntax: {err}"
        );
    }
    assert_eq!(ForwardedHeader::Forwarded.cgi_variable(), "HTTP_FORWARDED");
    assert_eq!(ForwardedHeader::default().name(), "x-forwarded-for");
}
