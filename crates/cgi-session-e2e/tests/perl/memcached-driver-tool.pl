#!/usr/bin/perl
# The Perl side of the driver:memcached tests: CGI::Session 4.48 with Debian's
# CGI::Session::Driver::memcached 0.04 (libcgi-session-driver-memcached-perl, not a copy in
# this directory) over Cache::Memcached, as its synopsis sets it up.
#
#   memcached-driver-tool.pl SERVER create JSON-PARAMS [EXPIRE]  -> prints the new id
#   memcached-driver-tool.pl SERVER read   ID                    -> prints JSON
#   memcached-driver-tool.pl SERVER set    ID JSON-PARAMS        -> updates, flushes
#   memcached-driver-tool.pl SERVER delete ID
use strict;
use warnings;

use CGI::Session;
use CGI::Session::Driver::memcached;
use Cache::Memcached;
use JSON::PP;

my ($server, $cmd, @args) = @ARGV;
my $memd = Cache::Memcached->new({ servers => [$server] });
my $stats = $memd->stats();
die "No stats from Memcached - Memcached not running?\n" unless $stats && $stats->{total};
my $json = JSON::PP->new->utf8->canonical->allow_nonref;
my $dsn = "driver:memcached;serializer:default";
my %args = (Memcached => $memd);

if ($cmd eq 'create') {
    my ($params, $expire) = @args;
    my $s = CGI::Session->new($dsn, undef, \%args) or die CGI::Session->errstr;
    my $data = $json->decode($params);
    $s->param($_, $data->{$_}) for sort keys %$data;
    $s->expire($expire) if defined $expire && $expire ne '';
    $s->flush or die $s->errstr;
    print $s->id, "\n";
}
elsif ($cmd eq 'read') {
    my ($id) = @args;
    my $s = CGI::Session->load($dsn, $id, \%args) or die CGI::Session->errstr;
    my %out = (
        is_empty => $s->is_empty ? JSON::PP::true : JSON::PP::false,
        params   => { map { ($_ => $s->param($_)) } $s->param },
        driver   => $INC{'CGI/Session/Driver/memcached.pm'},
        driver_version => $CGI::Session::Driver::memcached::VERSION,
    );
    $out{id} = $s->id unless $s->is_empty;
    print $json->encode(\%out), "\n";
}
elsif ($cmd eq 'set') {
    my ($id, $params) = @args;
    my $s = CGI::Session->load($dsn, $id, \%args) or die CGI::Session->errstr;
    die "session not found\n" if $s->is_empty;
    my $data = $json->decode($params);
    $s->param($_, $data->{$_}) for sort keys %$data;
    $s->flush or die $s->errstr;
    print "ok\n";
}
elsif ($cmd eq 'delete') {
    my ($id) = @args;
    my $s = CGI::Session->load($dsn, $id, \%args) or die CGI::Session->errstr;
    $s->delete;
    $s->flush;
    print "ok\n";
}
else {
    die "unknown command $cmd\n";
}
