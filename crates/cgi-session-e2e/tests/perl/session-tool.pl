#!/usr/bin/perl
# The Perl side of the cross-language tests: CGI::Session 4.48 with the memcache driver of
# CGI/Session/Driver/memcache.pm (the Perl driver this project started from) over
# Cache::Memcached.
#
#   session-tool.pl SERVER create  JSON-PARAMS [EXPIRE] [PARAM=SECS ...]  -> prints the new id
#   session-tool.pl SERVER read    ID                                      -> prints JSON
#   session-tool.pl SERVER set     ID JSON-PARAMS                          -> updates, flushes
#   session-tool.pl SERVER delete  ID
#
# PERL_TIME_OFFSET=N shifts CGI::Session's clock by N seconds (no sleeping in tests).
use strict;
use warnings;

BEGIN {
    my $offset = $ENV{PERL_TIME_OFFSET} || 0;
    *CORE::GLOBAL::time = sub () { CORE::time() + $offset };
}

use FindBin;
use lib "$FindBin::Bin";
use CGI::Session;
use Cache::Memcached;
use JSON::PP;

my ($server, $cmd, @args) = @ARGV;
my $memd = Cache::Memcached->new({ servers => [$server] });
my $stats = $memd->stats();
die "No stats from Memcached - Memcached not running?\n" unless $stats && $stats->{total};
my $json = JSON::PP->new->utf8->canonical->allow_nonref;
my $dsn = "driver:memcache;serializer:default";

if ($cmd eq 'create') {
    my ($params, $expire, @param_expires) = @args;
    my $s = CGI::Session->new($dsn, undef, { Handle => $memd })
        or die CGI::Session->errstr;
    my $data = $json->decode($params);
    $s->param($_, $data->{$_}) for sort keys %$data;
    $s->expire($expire) if defined $expire && $expire ne '';
    for (@param_expires) {
        my ($name, $secs) = split /=/, $_, 2;
        $s->expire($name, $secs);
    }
    $s->flush or die $s->errstr;
    print $s->id, "\n";
}
elsif ($cmd eq 'read') {
    my ($id) = @args;
    my $s = CGI::Session->load($dsn, $id, { Handle => $memd })
        or die CGI::Session->errstr;
    my %out = (
        is_empty   => $s->is_empty ? JSON::PP::true : JSON::PP::false,
        is_expired => $s->is_expired ? JSON::PP::true : JSON::PP::false,
        params     => { map { ($_ => $s->param($_)) } $s->param },
    );
    unless ($s->is_empty) {
        $out{id}          = $s->id;
        $out{expire}      = $s->expire;
        $out{ctime}       = $s->ctime;
        $out{remote_addr} = $s->remote_addr;
        # CGI::Session has no reader for per-parameter expiry: read the stored list.
        $out{param_expires} = $s->dataref->{_SESSION_EXPIRE_LIST} || {};
        # Lengths in characters, to check that text arrived as characters, not bytes.
        $out{lengths} = { map { ($_ => length($s->param($_))) } grep { !ref $s->param($_) } $s->param };
        # Arithmetic on numbers, string comparison on numeric strings.
        $out{plus_one} = { map { ($_ => $s->param($_) + 1) } grep { my $v = $s->param($_); defined $v && !ref $v && $v =~ /^-?\d+$/ } $s->param };
    }
    $s->flush;
    print $json->encode(\%out), "\n";
}
elsif ($cmd eq 'set') {
    my ($id, $params) = @args;
    my $s = CGI::Session->load($dsn, $id, { Handle => $memd })
        or die CGI::Session->errstr;
    die "session not found\n" if $s->is_empty;
    my $data = $json->decode($params);
    $s->param($_, $data->{$_}) for sort keys %$data;
    $s->flush or die $s->errstr;
    print "ok\n";
}
elsif ($cmd eq 'delete') {
    my ($id) = @args;
    my $s = CGI::Session->load($dsn, $id, { Handle => $memd })
        or die CGI::Session->errstr;
    $s->delete;
    $s->flush;
    print "ok\n";
}
else {
    die "unknown command $cmd\n";
}
