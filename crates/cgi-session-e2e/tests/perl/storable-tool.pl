#!/usr/bin/perl
# The Perl side of the Storable cross-language tests (tests/perl_storable_sessions.rs): the real
# CGI::Session 4.48 with serializer:storable, over Cache::Memcached and the memcache driver
# in CGI/Session/Driver/memcache.pm (the Perl driver this project started from).
#
#   storable-tool.pl SERVER create            -> prints the new id (a session holding every kind of value)
#   storable-tool.pl SERVER create-nfreeze    -> the same session stored as an nfreeze image; prints the id
#   storable-tool.pl SERVER read ID           -> prints JSON: every parameter described (see describe())
#   storable-tool.pl SERVER set ID NAME VALUE -> sets one parameter (a byte string) and flushes
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin";
use CGI::Session;
use Cache::Memcached;
use JSON::PP;
use Scalar::Util qw(blessed reftype);
use Storable qw(nfreeze thaw);

package My::Cart { sub total { my $s = shift; my $t = 0; $t += $_ for @{ $s->{items} }; $t } }

package main;

my ($server, $cmd, @args) = @ARGV;
my $memd = Cache::Memcached->new({ servers => [$server] });
my $stats = $memd->stats();
die "No stats from Memcached - Memcached not running?\n" unless $stats && $stats->{total};
my $json = JSON::PP->new->utf8->canonical->allow_nonref;
my $dsn = "driver:memcache;serializer:storable";

# What a Perl app stores: numbers, numeric strings, text as UTF-8 bytes (CGI.pm without
# -utf8), decoded text (with -utf8), Latin-1 bytes, undef, arrays, hashes, references, an
# object, and one array shared by two parameters.
sub fill {
    my ($s) = @_;
    my $chars = "caf\xe9";
    utf8::upgrade($chars);
    my $shared = [1, 2];
    $s->param(
        n           => 42,
        big         => 1795762418,
        neg         => -7,
        pi          => 3.25,
        numstr      => "007",
        bytes_utf8  => "caf\xc3\xa9",
        bytes_latin => "caf\xe9",
        chars       => $chars,
        smile       => "\x{263a} ok",
        empty       => "",
        undef       => undef,
        list        => [1, undef, "x", [2, "\x{263a}"]],
        hash        => { "./lost+found" => 1, deep => { k => ["v"] }, "caf\xc3\xa9" => "bytes key" },
        sref        => \"text",
        cart        => bless({ items => [3, 4], owner => "caf\xc3\xa9" }, 'My::Cart'),
        shared_a    => $shared,
        shared_b    => $shared,
        long        => "x" x 300,
    );
}

# A JSON-friendly description of a value that keeps what JSON would lose: for each string its
# length in characters, its utf8 flag and its bytes in hex; classes and reference kinds.
sub describe {
    my ($v) = @_;
    return { undef => JSON::PP::true } unless defined $v;
    if (my $class = blessed $v) {
        my $type = reftype $v;
        my $inner = $type eq 'HASH' ? {%$v} : $type eq 'ARRAY' ? [@$v] : $$v;
        return { class => $class, value => describe($inner) };
    }
    my $r = ref $v;
    return { array => [map { describe($_) } @$v] } if $r eq 'ARRAY';
    return { hash => { map { (key_hex($_) => describe($v->{$_})) } keys %$v } } if $r eq 'HASH';
    return { scalar_ref => describe($$v) } if $r eq 'SCALAR' || $r eq 'REF';
    die "cannot describe a $r\n" if $r;
    my $bytes = $v;
    utf8::encode($bytes) if utf8::is_utf8($bytes);
    return { len => length($v), utf8 => utf8::is_utf8($v) ? 1 : 0, hex => unpack('H*', $bytes) };
}

sub key_hex {
    my ($k) = @_;
    my $u = utf8::is_utf8($k) ? 'u:' : 'b:';
    utf8::encode($k) if utf8::is_utf8($k);
    return $u . unpack('H*', $k);
}

if ($cmd eq 'create' || $cmd eq 'create-nfreeze') {
    my $s = CGI::Session->new($dsn, undef, { Handle => $memd }) or die CGI::Session->errstr;
    fill($s);
    $s->flush or die $s->errstr;
    my $id = $s->id;
    if ($cmd eq 'create-nfreeze') {
        my $frozen = $memd->get("sessions:$id") or die "not stored\n";
        $memd->set("sessions:$id", nfreeze(thaw($frozen))) or die "set failed\n";
    }
    print "$id\n";
}
elsif ($cmd eq 'read') {
    my ($id) = @args;
    my $s = CGI::Session->load($dsn, $id, { Handle => $memd }) or die CGI::Session->errstr;
    my %out = (is_empty => $s->is_empty ? JSON::PP::true : JSON::PP::false);
    unless ($s->is_empty) {
        $out{params} = { map { ($_ => describe($s->param($_))) } $s->param };
        $out{expire} = $s->expire;
        my ($a, $b) = ($s->param('shared_a'), $s->param('shared_b'));
        $out{shared} = (ref $a && ref $b && $a == $b) ? JSON::PP::true : JSON::PP::false;
        my $cart = $s->param('cart');
        $out{cart_total} = $cart->total if blessed $cart && $cart->can('total');
    }
    # Not flushed: reading must not rewrite what Rust stored.
    print $json->encode(\%out), "\n";
}
elsif ($cmd eq 'set') {
    my ($id, $name, $value) = @args;
    my $s = CGI::Session->load($dsn, $id, { Handle => $memd }) or die CGI::Session->errstr;
    die "session not found\n" if $s->is_empty;
    $s->param($name, $value);
    $s->flush or die $s->errstr;
    print "ok\n";
}
else {
    die "unknown command $cmd\n";
}
