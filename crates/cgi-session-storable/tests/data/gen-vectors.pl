#!/usr/bin/perl
# Writes the test vectors of tests/vectors.rs: Storable::freeze and Storable::nfreeze images
# made by the real Perl Storable (3.26 on Debian's perl 5.36, x86_64). Re-run after editing:
#   perl tests/data/gen-vectors.pl tests/data/vectors
use strict;
use warnings;
use Storable qw(freeze nfreeze);
use File::Temp qw(tempdir);

my $out = shift or die "usage: $0 OUTDIR\n";

package My::Overloaded { use overload '""' => sub { 'str' }, fallback => 1; }

my %cases;
$cases{scalars} = {
    small => 42, neg => -5, big => 1795762418, min => -9223372036854775807 - 1,
    negbig => -1000, float => 3.14, str => "hello", numstr => "42", empty => "",
    long => "x" x 300, bytes_utf8 => "caf\xc3\xa9", bytes_latin1 => "caf\xe9",
    chars => do { my $s = "caf\xe9"; utf8::upgrade($s); $s }, smile => "\x{263a}",
    undef => undef, long_utf8 => "\x{263a}" x 100, umax => 18446744073709551615,
};
$cases{structures} = {
    list => [1, undef, "x", [2]], h => { "./lost+found" => 1, deep => { k => ["v"] } },
    sref => \"text", rref => \\"x", empty_a => [], empty_h => {},
    yes => \!!1, no => \!!0, sparse => do { my @a; $a[2] = 1; \@a },
};
$cases{blessed} = {
    obj => bless({ name => "n", items => [1, 2] }, "My::Cart"),
    arr => bless([1], "My::List"),
    sc => bless(\(my $x = "s"), "My::Scalar"),
    obj2 => bless({}, "My::Cart"),
};
{
    my $shared = [1, 2];
    my $h = { k => 'v' };
    $cases{shared} = { a => $shared, b => $shared, c => [$h, $h] };
}
{
    my $wasutf8 = "caf\xe9";
    utf8::upgrade($wasutf8);
    $cases{keys} = { $wasutf8 => 1, "\x{263a}" => 2, plain => 3, "bytes\xc3\xa9" => 4,
                     nested => { "\x{263a}" => "x" } };
}
$cases{doubles} = { inf => 9**9**9, ninf => -9**9**9, half => 0.5, third => 1 / 3 };
$cases{overload} = { o => bless({ v => 1 }, 'My::Overloaded') };

for my $name (sort keys %cases) {
    for ([freeze => \&freeze], [nfreeze => \&nfreeze]) {
        my ($kind, $f) = @$_;
        open my $fh, '>:raw', "$out/$name.$kind" or die "$out/$name.$kind: $!";
        print $fh $f->($cases{$name});
        close $fh;
    }
}

# A session as CGI::Session stores it with serializer:storable (file driver).
require CGI::Session;
my $dir = tempdir(CLEANUP => 1);
my $s = CGI::Session->new("driver:file;serializer:storable", undef, { Directory => $dir })
    or die CGI::Session->errstr;
$s->param(user => 'alice');
$s->param(greet => "caf\xc3\xa9");
$s->expire('+10m');
$s->expire(logged_in => '+5m');
$s->flush;
my $file = "$dir/cgisess_" . $s->id;
open my $in, '<:raw', $file or die "$file: $!";
local $/;
my $bytes = <$in>;
open my $fh, '>:raw', "$out/cgi_session.freeze" or die $!;
print $fh $bytes;
close $fh;
