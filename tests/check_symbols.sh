#!/bin/sh
# Fail when the shared library exports anything but the public crdt_ API:
# internal crdt__ helpers and third-party symbols must stay hidden.
set -eu
lib=$1
syms=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }')
if [ -z "$syms" ]; then
	echo "no dynamic symbols read from $lib" >&2
	exit 1
fi
echo "$syms" | grep -q '^crdt_' || { echo "no crdt_ symbol in $lib" >&2; exit 1; }
bad=$(echo "$syms" | grep -v -E '^(_init|_fini|_edata|_end|__bss_start)$' |
	grep -v -E '^crdt_[a-z0-9]' || true)
if [ -n "$bad" ]; then
	echo "unexpected exported symbols:" >&2
	echo "$bad" >&2
	exit 1
fi
echo "ok: $(echo "$syms" | grep -c '^crdt_') crdt_ symbols exported"
