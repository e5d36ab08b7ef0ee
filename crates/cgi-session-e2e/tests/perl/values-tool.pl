#!/usr/bin/perl
# The Perl side of perl_values_and_lifetimes.rs: CGI::Session 4.48 over Cache::Memcached with
# the memcache driver of CGI/Session/Driver/memcache.pm, storing the kinds of strings a real Perl app stores.
#
#   values-tool.pl SERVER SERIALIZER create [EXPIRE]   -> prints the new id
#   values-tool.pl SERVER SERIALIZER inspect ID        -> prints, per parameter, its length,
#                                                         utf8 flag and bytes (or its class)
use strict; use warnings;
use FindBin; use lib "$FindBin::Bin";
use CGI::Session; use Cache::Memcached; use JSON::PP;
my ($server, $serializer, $cmd, $arg) = @ARGV;   # $arg: EXPIRE for create, ID for inspect
my $memd = Cache::Memcached->new({ servers => [$server] });
die "memcached not running\n" unless $memd->stats()->{total};
my $dsn = "driver:memcache;serializer:$serializer";
if ($cmd eq 'create') {
    my $s = CGI::Session->new($dsn, undef, { Handle => $memd }) or die CGI::Session->errstr;
    $s->param('bytes', "caf\xc3\xa9");                  # CGI.pm without -utf8: UTF-8 bytes
    my $latin = "caf\x{e9}"; utf8::upgrade($latin);     # decoded text in the Latin-1 range
    $s->param('latin', $latin);
    $s->param('wide', "\x{263a} ok");                   # decoded text above U+00FF
    $s->param('binary', "\xff\x00\xfe");                # not text at all
    $s->param('cart', bless({ items => [1, 2] }, 'My::Cart'));
    $s->param('visits', 1);
    $s->param('count_str', '7');                        # numbers are strings half the time
    $s->param('nick', undef);
    $s->expire($arg) if $arg;
    $s->flush or die $s->errstr;
    print $s->id;
}
elsif ($cmd eq 'inspect') {
    my $s = CGI::Session->load($dsn, $arg, { Handle => $memd }) or die CGI::Session->errstr;
    die "session $arg is empty\n" if $s->is_empty;
    my %out;
    for my $k ($s->param) {
        my $v = $s->param($k);
        if (ref $v) {
            $out{$k} = { ref => ref($v), blessed => (ref($v) =~ /^(HASH|ARRAY|SCALAR)$/ ? 0 : 1) };
        } else {
            my $octets = $v;
            utf8::encode($octets) if utf8::is_utf8($octets);
            $out{$k} = { length => length($v), utf8 => (utf8::is_utf8($v) ? 1 : 0),
                         hex => unpack('H*', $octets) };
        }
    }
    print JSON::PP->new->canonical->encode(\%out);
}
else { die "unknown command $cmd\n" }
