//! The bundled client's modula distribution is Perl Cache::Memcached's: keys that Perl set on
//! a weighted pool of three real memcached servers are found on the same servers (needs
//! `perl` with Cache::Memcached: Debian `libcache-memcached-perl`).

use std::process::Command;

use cgi_session_memcache_client::{Client, ClientConfig, Distribution, GetOptions};
use memcached_harness::MemcachedServer;

#[tokio::test]
async fn modula_finds_keys_where_perl_cache_memcached_put_them() {
    let servers: Vec<MemcachedServer> = (0..3).map(|_| MemcachedServer::start()).collect();
    let list: Vec<String> = servers.iter().map(|s| s.addr().to_string()).collect();
    // Weights as Cache::Memcached takes them: [addr, weight].
    let perl_servers = format!(
        "[['{}', 1], ['{}', 2], ['{}', 1]]",
        list[0], list[1], list[2]
    );
    let script = format!(
        r#"use Cache::Memcached;
my $m = Cache::Memcached->new({{ servers => {perl_servers}, no_rehash => 1 }});
for my $i (0..299) {{ $m->set("sessions:perl$i", "v$i", 600) or die "set $i failed\n"; }}
print "ok\n";"#
    );
    let out = Command::new("perl")
        .arg("-e")
        .arg(&script)
        .output()
        .expect("run perl (Debian package libcache-memcached-perl)");
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "perl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let client = Client::connect(
        ClientConfig::pool([
            (list[0].as_str(), 1),
            (list[1].as_str(), 2),
            (list[2].as_str(), 1),
        ])
        .distribution(Distribution::Modula),
    )
    .await
    .unwrap();
    let mut per_server = [0usize; 3];
    for i in 0..300 {
        let key = format!("sessions:perl{i}");
        let home = client.server_for(&key);
        per_server[home] += 1;
        for s in 0..3 {
            let found = client
                .server(s)
                .unwrap()
                .get(&key, GetOptions::new())
                .await
                .unwrap();
            if s == home {
                assert_eq!(
                    found.map(|i| i.value.to_vec()),
                    Some(format!("v{i}").into_bytes()),
                    "{key} is not on server {s} where the modula ring puts it"
                );
            } else {
                assert!(found.is_none(), "{key} is also on server {s}");
            }
        }
        let via_ring = client.get(&key, GetOptions::new()).await.unwrap().unwrap();
        assert_eq!(&via_ring.value[..], format!("v{i}").as_bytes());
    }
    println!("300 keys set by Cache::Memcached, found on the same servers: {per_server:?}");
    assert!(per_server.iter().all(|&n| n > 30), "{per_server:?}");
    assert!(per_server[1] > per_server[0] && per_server[1] > per_server[2]);
}
