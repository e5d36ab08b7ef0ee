package CGI::Session::Driver::memcache;

# A re-creation of CGI::Session::Driver::memcache by Olli Hollmen, the Perl driver this
# project started from (written from its description): the application passes a memcached
# client as the raw 'Handle'; sessions live under "sessions:<id>", stored with no expiry.
# Used by the cross-language tests only.

use strict;
use warnings;
use base 'CGI::Session::Driver';

sub init {
    my $self = shift;
    return $self->set_error("init(): 'Handle' attribute is required")
        unless $self->{Handle};
    return 1;
}

sub retrieve {
    my ($self, $sid) = @_;
    my $data = $self->{Handle}->get("sessions:$sid");
    return defined $data ? $data : 0;
}

sub store {
    my ($self, $sid, $datastr) = @_;
    $self->{Handle}->set("sessions:$sid", $datastr)
        or return $self->set_error("store(): memcached set failed for the session");
    return 1;
}

sub remove {
    my ($self, $sid) = @_;
    $self->{Handle}->delete("sessions:$sid");
    return 1;
}

sub traverse {
    my $self = shift;
    return $self->set_error("traverse(): not supported by the memcache driver");
}

1;
