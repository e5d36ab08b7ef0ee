//! Key distribution over several servers: libmemcached's weighted ketama
//! (also what twemproxy does with `distribution: ketama`, `hash: md5`) and
//! Perl Cache::Memcached's modula scheme.

use md5::{Digest, Md5};

/// How keys are spread over the servers of a [`Client`](crate::Client).
///
/// ```
/// use cgi_session_memcache_client::Distribution;
/// assert_eq!(Distribution::default(), Distribution::Ketama);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Distribution {
    /// Consistent hashing, bit-compatible with libmemcached's weighted ketama
    /// (`MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`) and with twemproxy's
    /// `distribution: ketama` + `hash: md5`: every server gets
    /// `floor(weight / total * 40 * servers) * 4` points (160 for equal
    /// weights), each point the little-endian `u32` of 4 bytes of
    /// `md5("<host>:<port>-<n>")` (`"<host>-<n>"` for port 11211), and a key
    /// goes to the first point at or after the first 4 bytes (little-endian)
    /// of `md5(key)`, wrapping around. Adding or removing a server moves
    /// only about `1/servers` of the keys.
    #[default]
    Ketama,
    /// Perl Cache::Memcached's scheme: each server appears `weight` times in
    /// a bucket list, and a key goes to bucket
    /// `((crc32(key) >> 16) & 0x7fff) % buckets`. With the same server list
    /// (same order and weights), a Perl application using Cache::Memcached
    /// finds the same key on the same server. Adding or removing a server
    /// moves most keys.
    Modula,
}

/// The 32-bit key hash ketama uses: the first 4 bytes of the key's MD5
/// digest, little-endian (libmemcached's `hashkit_md5`, twemproxy's
/// `hash_md5`).
///
/// ```
/// // libmemcached's test vector: "VDEAAAAA" hashes past the last point.
/// assert_eq!(cgi_session_memcache_client::ketama_hash(b"VDEAAAAA"), 0xfffc_d1b5);
/// ```
pub fn ketama_hash(key: &[u8]) -> u32 {
    let d = Md5::digest(key);
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// Cache::Memcached's `_hashfunc`: `(crc32(key) >> 16) & 0x7fff`.
///
/// ```
/// // crc32("foo") = 0x8c736521
/// assert_eq!(cgi_session_memcache_client::modula_hash(b"foo"), 0x8c73 & 0x7fff);
/// ```
pub fn modula_hash(key: &[u8]) -> u32 {
    (crc32fast::hash(key) >> 16) & 0x7fff
}

/// The name ketama hashes for a server: `host:port`, or just `host` when the
/// port is memcached's default 11211 (libmemcached and twemproxy both drop it).
fn ketama_name(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((host, "11211")) => host,
        _ => addr,
    }
}

/// Where keys go: built once from the server list.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    kind: Distribution,
    servers: usize,
    /// Ketama: `(point, server index)`, sorted by point.
    points: Vec<(u32, usize)>,
    /// Modula: server index per bucket.
    buckets: Vec<usize>,
}

impl Ring {
    /// `servers`: `(address, weight)` in configuration order.
    pub(crate) fn new(kind: Distribution, servers: &[(String, u32)]) -> Ring {
        let mut ring = Ring {
            kind,
            servers: servers.len(),
            points: Vec::new(),
            buckets: Vec::new(),
        };
        match kind {
            Distribution::Modula => {
                for (idx, (_, weight)) in servers.iter().enumerate() {
                    for _ in 0..(*weight).max(1) {
                        ring.buckets.push(idx);
                    }
                }
            }
            Distribution::Ketama => {
                let total: u64 = servers.iter().map(|(_, w)| u64::from((*w).max(1))).sum();
                let live = servers.len() as f32;
                for (idx, (addr, weight)) in servers.iter().enumerate() {
                    // libmemcached (hosts.cc, update_continuum), float for float:
                    // floor((float)(pct * 160 / 4 * live + 0.0000000001)) * 4
                    let pct = (*weight).max(1) as f32 / total as f32;
                    let inner = f64::from(pct * 160.0 / 4.0 * live) + 0.000_000_000_1;
                    let per_server = (f64::from(inner as f32).floor() as u32) * 4;
                    let name = ketama_name(addr);
                    for n in 0..per_server / 4 {
                        let d = Md5::digest(format!("{name}-{n}").as_bytes());
                        for a in 0..4 {
                            let b = &d[a * 4..a * 4 + 4];
                            ring.points
                                .push((u32::from_le_bytes([b[0], b[1], b[2], b[3]]), idx));
                        }
                    }
                }
                ring.points.sort_unstable();
            }
        }
        ring
    }

    /// Index into `points` of the first point at or after `hash` (wrapping).
    fn ketama_start(&self, hash: u32) -> usize {
        let i = self.points.partition_point(|&(p, _)| p < hash);
        if i == self.points.len() {
            0
        } else {
            i
        }
    }

    /// The server a key belongs to when every server is up.
    pub(crate) fn primary(&self, key: &[u8]) -> usize {
        self.pick(key, |_| true).unwrap_or(0)
    }

    /// The first server for `key` that `up` accepts: for ketama the next
    /// live server's point on the ring; for modula Cache::Memcached's rehash
    /// (`hv += hash("<try>" . key)`, up to 20 tries). `None` if no server
    /// qualifies.
    pub(crate) fn pick(&self, key: &[u8], up: impl Fn(usize) -> bool) -> Option<usize> {
        if self.servers <= 1 {
            return (self.servers == 1 && up(0)).then_some(0);
        }
        match self.kind {
            Distribution::Ketama => {
                let start = self.ketama_start(ketama_hash(key));
                (0..self.points.len())
                    .map(|i| self.points[(start + i) % self.points.len()].1)
                    .find(|&s| up(s))
            }
            Distribution::Modula => {
                let mut hv = u64::from(modula_hash(key));
                let count = self.buckets.len() as u64;
                for tries in 1..=20u32 {
                    let server = self.buckets[(hv % count) as usize];
                    if up(server) {
                        return Some(server);
                    }
                    let mut rekey = tries.to_string().into_bytes();
                    rekey.extend_from_slice(key);
                    hv += u64::from(modula_hash(&rekey));
                }
                None
            }
        }
    }

    /// Up to `n` distinct servers for `key`, in order: the primary, then the
    /// next distinct servers (ketama: walking the ring; modula: the rehash
    /// sequence, then configuration order).
    pub(crate) fn distinct(&self, key: &[u8], n: usize) -> Vec<usize> {
        let n = n.min(self.servers);
        let mut out: Vec<usize> = Vec::with_capacity(n);
        if n == 0 {
            return out;
        }
        if self.servers == 1 {
            out.push(0);
            return out;
        }
        match self.kind {
            Distribution::Ketama => {
                let start = self.ketama_start(ketama_hash(key));
                for i in 0..self.points.len() {
                    let s = self.points[(start + i) % self.points.len()].1;
                    if !out.contains(&s) {
                        out.push(s);
                        if out.len() == n {
                            break;
                        }
                    }
                }
            }
            Distribution::Modula => {
                let mut hv = u64::from(modula_hash(key));
                let count = self.buckets.len() as u64;
                for tries in 1..=20u32 {
                    let s = self.buckets[(hv % count) as usize];
                    if !out.contains(&s) {
                        out.push(s);
                        if out.len() == n {
                            break;
                        }
                    }
                    let mut rekey = tries.to_string().into_bytes();
                    rekey.extend_from_slice(key);
                    hv += u64::from(modula_hash(&rekey));
                }
                let first = out[0];
                for i in 1..=self.servers {
                    if out.len() == n {
                        break;
                    }
                    let s = (first + i) % self.servers;
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
        }
        out
    }

    #[cfg(test)]
    fn point_for(&self, key: &[u8]) -> u32 {
        self.points[self.ketama_start(ketama_hash(key))].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libmemcached's tests/ketama_test_cases.h (Brian Aker's libmemcached,
    /// as kept in naver/arcus-c-client): key, its hash, the continuum point
    /// it lands on, the server, for 8 servers weighted 600, 300, 200, 350,
    /// 1000, 800, 950, 100.
    const CASES: &[(&str, u32, u32, &str)] = &include!("ketama_cases.in");

    fn libmemcached_servers() -> Vec<(String, u32)> {
        [600, 300, 200, 350, 1000, 800, 950, 100]
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("10.0.1.{}:11211", i + 1), *w))
            .collect()
    }

    #[test]
    fn libmemcached_ketama_vectors() {
        let servers = libmemcached_servers();
        let ring = Ring::new(Distribution::Ketama, &servers);
        assert_eq!(CASES.len(), 99);
        for (key, hash, point, server) in CASES {
            assert_eq!(ketama_hash(key.as_bytes()), *hash, "hash of {key:?}");
            assert_eq!(ring.point_for(key.as_bytes()), *point, "point of {key:?}");
            let idx = ring.primary(key.as_bytes());
            assert_eq!(
                servers[idx].0,
                format!("{server}:11211"),
                "server of {key:?}"
            );
        }
        // Past the last point: wraps to the first.
        assert_eq!(ketama_hash(b"VDEAAAAA"), 0xfffc_d1b5);
        assert_eq!(ring.primary(b"VDEAAAAA"), ring.points[0].1);
    }

    #[test]
    fn ketama_equal_weights_get_160_points() {
        let servers: Vec<_> = (0..3)
            .map(|i| (format!("127.0.0.1:{}", 20000 + i), 1))
            .collect();
        let ring = Ring::new(Distribution::Ketama, &servers);
        assert_eq!(ring.points.len(), 480);
        for s in 0..3 {
            assert_eq!(ring.points.iter().filter(|p| p.1 == s).count(), 160);
        }
    }

    #[test]
    fn failover_walks_to_the_next_live_server_and_distinct_is_distinct() {
        let servers: Vec<_> = (0..3)
            .map(|i| (format!("127.0.0.1:{}", 20000 + i), 1))
            .collect();
        for kind in [Distribution::Ketama, Distribution::Modula] {
            let ring = Ring::new(kind, &servers);
            let mut moved = 0;
            for i in 0..2000 {
                let key = format!("sessions:{i:032x}");
                let p = ring.primary(key.as_bytes());
                let alt = ring.pick(key.as_bytes(), |s| s != 1).unwrap();
                assert_ne!(alt, 1);
                if p != 1 {
                    assert_eq!(alt, p, "keys of live servers stay put");
                } else {
                    moved += 1;
                }
                let d = ring.distinct(key.as_bytes(), 3);
                assert_eq!(d[0], p);
                let mut sorted = d.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, vec![0, 1, 2]);
            }
            assert!(
                (400..=950).contains(&moved),
                "{kind:?}: {moved} keys on server 1"
            );
            assert_eq!(ring.pick(b"k", |_| false), None);
        }
    }

    #[test]
    fn modula_follows_cache_memcached() {
        let servers = vec![("a:1".to_string(), 1), ("b:1".to_string(), 2)];
        let ring = Ring::new(Distribution::Modula, &servers);
        assert_eq!(ring.buckets, vec![0, 1, 1]);
        let hv = modula_hash(b"some_key");
        assert_eq!(ring.primary(b"some_key"), ring.buckets[(hv % 3) as usize]);
        // Dead first choice: Perl adds hash("1" . key) and tries again.
        let first = ring.primary(b"some_key");
        let second = ring.pick(b"some_key", |s| s != first);
        let mut hv2 = u64::from(hv);
        let mut expected = None;
        for tries in 1..=20u32 {
            let s = ring.buckets[(hv2 % 3) as usize];
            if s != first {
                expected = Some(s);
                break;
            }
            hv2 += u64::from(modula_hash(format!("{tries}some_key").as_bytes()));
        }
        assert_eq!(second, expected);
    }

    #[test]
    fn crc32_matches_string_crc32() {
        // String::CRC32 (Perl) is the IEEE CRC-32: crc32("The quick brown fox jumps over the lazy dog") = 0x414fa339.
        assert_eq!(
            crc32fast::hash(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
        assert_eq!(ketama_name("10.0.1.1:11211"), "10.0.1.1");
        assert_eq!(ketama_name("127.0.0.1:20000"), "127.0.0.1:20000");
    }
}
