#!/usr/bin/perl
# Regenerates tests/data/vectors/*.dump (what Perl wrote) and *.json (what Perl thawed, in the
# crate's JSON model). Run from the crate directory:  perl tests/data/gen-vectors.pl
# Needs Perl with CGI::Session 4.48 (libcgi-session-perl), Data::Dumper and JSON::PP.
use strict;
use warnings;
use CGI::Session;
use CGI::Session::Serialize::default;
use Data::Dumper;
use JSON::PP;
use File::Temp qw(tempdir);
use Scalar::Util qw(blessed reftype);
use B;

my $S   = 'CGI::Session::Serialize::default';
my $out = 'tests/data/vectors';

# Perl data -> the crate's JSON model: bless => {"__perl_bless__":C,"value":V},
# scalar ref => {"__perl_ref__":V}, byte strings that are valid UTF-8 are decoded.
sub model {
    my ($v) = @_;
    return undef unless defined $v;
    if (my $class = blessed $v) {
        my $t = reftype $v;
        my $inner = $t eq 'HASH' ? { %$v } : $t eq 'ARRAY' ? [@$v] : \(my $c = $$v);
        return { __perl_bless__ => $class, value => model($inner) };
    }
    my $r = ref $v;
    return { map { (key_model($_) => model($v->{$_})) } keys %$v } if $r eq 'HASH';
    return [ map { model($_) } @$v ] if $r eq 'ARRAY';
    return { __perl_ref__ => model($$v) } if $r eq 'SCALAR' || $r eq 'REF';
    die "cannot model $r" if $r;
    my $flags = B::svref_2object(\$v)->FLAGS;
    return $v + 0 if ($flags & (B::SVf_IOK | B::SVf_NOK)) && !($flags & B::SVf_POK);
    return key_model($v);
}

sub key_model {
    my ($s) = @_;
    my $c = "$s";
    if (!utf8::is_utf8($c)) { my $d = $c; $c = $d if utf8::decode($d); }
    return $c;
}

my $json = JSON::PP->new->canonical->utf8->allow_nonref;

sub emit {
    my ($name, $dump, $expected) = @_;
    my $thawed = $S->thaw($dump) or die "thaw $name: " . $S->errstr;
    $thawed = $expected if $expected;
    open my $fh, '>:raw', "$out/$name.dump" or die $!;
    print $fh $dump;
    close $fh;
    open $fh, '>:raw', "$out/$name.json" or die $!;
    print $fh $json->encode(model($thawed)), "\n";
    close $fh;
}

sub session_dump {
    my ($setup) = @_;
    my $dir = tempdir(CLEANUP => 1);
    my $s = CGI::Session->new('driver:file;serializer:default', undef, { Directory => $dir })
        or die CGI::Session->errstr;
    $setup->($s);
    my $id = $s->id;
    $s->flush;
    open my $fh, '<:raw', "$dir/cgisess_$id" or die $!;
    local $/;
    return scalar <$fh>;
}

# 1. The spec's simple example, written by CGI::Session itself.
emit('session_simple', session_dump(sub { $_[0]->param(user => 'alice') }));

# 2. With timeout, per-param expiry and remote address.
{
    local $ENV{REMOTE_ADDR} = '192.0.2.7';
    emit('session_expiry', session_dump(sub {
        my $s = shift;
        $s->param(user => 'alice');
        $s->param(logged_in => 1);
        $s->expire('+10m');
        $s->expire(logged_in => '+5m');
    }));
}

# 3. Behaviour 2/7 of the driver test suite: scalar, array, odd hash keys, undef in an array.
emit('session_structured', session_dump(sub {
    my $s = shift;
    $s->param(name => 'Sherzod');
    $s->param(-name => 'emails', -value => ['sherzodr@cpan.org', 'sherzodr@handalak.com']);
    $s->param(blogs => { './lost+found' => 'http://author.handalak.com/', 'Yigitlar' => 'http://yigitlar.uz/' });
    $s->param(with_undef => [1, undef, 'three', [undef]]);
}));

emit('nested', $S->freeze({
    a => [1, [2, [3, []]], {}], h => { x => { y => { z => 'deep' } } }, u => undef,
    list => [undef, undef], empty_str => '', space => ' ',
}));
emit('odd_keys', $S->freeze({
    './lost+found' => 1, "it's" => "it's", 'back\\slash' => 'a\\b', '' => 'empty key',
    'a b' => "line1\nline2\ttab", 'dollar$@' => '$x @y', 'q"uote' => '"',
    "\x{263a} smile" => "\x{263a}", '=>' => ',', '0' => '-1', '-5' => 'x',
}));
emit('utf8', $S->freeze({
    chars => "\x{263a}caf\x{e9} \x{1f600}",
    latin1_chars => "caf\x{e9}",                    # not UTF8-flagged: raw byte 0xE9
    utf8_bytes => "caf\xc3\xa9",                    # a byte string holding UTF-8
    mixed => "\x{263a}\$x\@y\"q\\ \n",
    "cl\x{e9}" => 'latin-1 key',
}));
emit('numbers', $S->freeze({
    int => 42, neg => -7, zero => 0, str42 => '42', lead0 => '007', float => 3.14,
    nv_int => 3.0, ten => 1234567890, eleven => 12345678901, negten => -999999999,
    negeleven => -1234567890, exp => 1e20, third => 1 / 3,
    used => do { my $x = '17'; my $y = $x + 0; $x },
    stringified => do { my $x = 5; my $y = "$x"; $x },
    ts => time(), minus0 => '-0', plus => '+1', space => ' 1',
}));
{
    my $d = Data::Dumper->new([{ a => [1, { b => undef }], 'c d' => "x'y", n => -3, s => '3' }], ['D']);
    $d->Indent(1); $d->Purity(1); $d->Quotekeys(0); $d->Useqq(0);
    emit('indent1', $d->Dump . ';$D');
    $d = Data::Dumper->new([{ a => [1, { b => undef }], 'c d' => "x'y", n => -3, s => '3' }], ['D']);
    $d->Indent(2); $d->Useqq(1);
    emit('indent2_useqq', $d->Dump);
    $d = Data::Dumper->new([{ t => "\x{263a}\t\n\r\0\x01\x1b\x7f\$\@\"\\", l => "\x{e9}", n => 12, f => 2.5, s => '12' }], ['D']);
    $d->Indent(0); $d->Useqq(1);
    emit('useqq_escapes', $d->Dump);
}
{
    my $shared = [1, 2, { k => 'v' }];
    emit('backref', $S->freeze({ a => $shared, b => $shared, c => $shared->[2] }));
    my $h = { k => 'v' };
    emit('backref_deep', $S->freeze({ x => { y => [$h] }, z => $h }));
    my $d = Data::Dumper->new([{ a => $shared, b => $shared }], ['D']);
    $d->Indent(0); $d->Purity(0);
    # Perl's own thaw yields b => undef here ($D is not assigned yet while the right-hand side
    # runs); the Rust reader resolves the back-reference by copying, as the writer meant.
    emit('backref_inline', $d->Dump, { a => [1, 2, { k => 'v' }], b => [1, 2, { k => 'v' }] });
    my $sr = \'shared scalar';
    emit('backref_scalar_ref', $S->freeze({ a => $sr, b => $sr }));
}
emit('blessed', $S->freeze({
    obj => bless({ name => 'x', list => [1, 2] }, 'My::Class'),
    arr => bless([1, 'two'], 'Foo'),
    nested => [bless({}, 'Empty::Thing')],
    sref => bless(\(my $o = 'scalar'), 'My::Scalar'),
}));
emit('scalar_refs', $S->freeze({ s => \'text', n => \42, rr => \\'inner', u => \undef }));

# Text written by the Rust crate (tests/data/rust_written/*.dump): record what Perl thaws.
# Here Perl strings go to JSON as characters, without decoding byte strings.
sub plain_model {
    my ($v) = @_;
    return undef unless defined $v;
    if (my $class = blessed $v) {
        my $t = reftype $v;
        my $inner = $t eq 'HASH' ? { %$v } : $t eq 'ARRAY' ? [@$v] : \(my $c = $$v);
        return { __perl_bless__ => $class, value => plain_model($inner) };
    }
    my $r = ref $v;
    return { map { ($_ => plain_model($v->{$_})) } keys %$v } if $r eq 'HASH';
    return [ map { plain_model($_) } @$v ] if $r eq 'ARRAY';
    return { __perl_ref__ => plain_model($$v) } if $r eq 'SCALAR' || $r eq 'REF';
    my $flags = B::svref_2object(\$v)->FLAGS;
    return $v + 0 if ($flags & (B::SVf_IOK | B::SVf_NOK)) && !($flags & B::SVf_POK);
    return "$v";
}
for my $file (glob 'tests/data/rust_written/*.dump') {
    open my $fh, '<:raw', $file or die $!;
    my $text = do { local $/; <$fh> };
    close $fh;
    my $thawed = $S->thaw($text) or die "Perl could not thaw $file: " . $S->errstr;
    (my $jf = $file) =~ s/\.dump$/.perl.json/;
    open $fh, '>:raw', $jf or die $!;
    print $fh $json->encode(plain_model($thawed)), "\n";
    close $fh;
}
