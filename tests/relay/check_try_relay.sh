#!/bin/sh
# The README's relay walk-through (docs/examples/try-relay.sh) as written:
# it must run, and both people must end with the same two-message thread,
# alice's post read and reacted to, bob's delivered (acked by the relay).
# usage: check_try_relay.sh SCRIPT BUILD_DIR
set -eu
out=$(bash "$1" "$2")
printf '%s\n' "$out"
n=$(printf '%s\n' "$out" | grep -c ' read alice: hello from alice | +1/bob$')
m=$(printf '%s\n' "$out" | grep -c ' delivered bob: hi alice$')
[ "$n" -eq 2 ] && [ "$m" -eq 2 ] || { echo "unexpected threads" >&2; exit 1; }
printf '%s\n' "$out" | grep -q '^crdt-relay: stopped$'
