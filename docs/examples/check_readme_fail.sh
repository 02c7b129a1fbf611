#!/bin/sh
# check_readme_fail.sh EXE: the README example built with readme_fail.h
# exits 1, prints nothing on stdout and crdt_strerror(CRDT_ENOTFOUND) on
# stderr.
set -u
out=$("$1" 2>"${TMPDIR:-/tmp}/readme_fail.$$")
rc=$?
err=$(cat "${TMPDIR:-/tmp}/readme_fail.$$")
rm -f "${TMPDIR:-/tmp}/readme_fail.$$"
[ "$rc" -eq 1 ] || { echo "exit status $rc, want 1" >&2; exit 1; }
[ -z "$out" ] || { echo "stdout: $out" >&2; exit 1; }
[ "$err" = "example: no such entry" ] ||
	{ echo "stderr: $err, want: example: no such entry" >&2; exit 1; }
echo "README example reports a failed call and exits 1"
