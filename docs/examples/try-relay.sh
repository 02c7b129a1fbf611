#!/usr/bin/env bash
# Try the relay: start crdt-relay on an ephemeral port of 127.0.0.1, let
# two people chat through it with crdt-chat (scripted), print the thread
# each one sees, stop the relay. Everything lives in a temporary folder.
# usage: bash docs/examples/try-relay.sh [BUILD_DIR]   (default: build)
set -euo pipefail
build=${1:-build}
relay=$build/crdt/relay/crdt-relay
chat=$build/crdt/relay/crdt-chat
if [ ! -x "$relay" ] || [ ! -x "$chat" ]; then
  echo "try-relay: build first (bash .ci/demo or bash .ci/test), with the tools" >&2
  exit 1
fi
tmp=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# The chat thread's server role (acks) is the relay's replica ID; the
# document ID is 32 random bytes in hex.
sid=0102030405060708090a0b0c0d0e0f10
doc=$(head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# The file exists before the relay starts: the background job opens its
# redirections itself, possibly after the first look below.
: >"$tmp/relay.out"
"$relay" --data "$tmp/relay" --port 0 --server-id "$sid" \
  >>"$tmp/relay.out" 2>"$tmp/relay.log" &
pid=$!
port=""
for _ in $(seq 100); do                       # at most 10 s
  port=$(sed -n 's/^listening 127\.0\.0\.1://p' "$tmp/relay.out" || true)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "try-relay: the relay did not start" >&2; exit 1; }
echo "relay listening on 127.0.0.1:$port"

chat() { # USER: run crdt-chat as USER on stdin's commands
  "$chat" --connect "127.0.0.1:$port" --doc "$doc" --server-id "$sid" \
    --user "$1" --data "$tmp/$1.db" --timeout 10000 2>>"$tmp/chat.log"
}
echo "--- alice posts"
printf 'post hello from alice\nsync\n' | chat alice
echo "--- bob syncs, reacts, answers, reads"
printf 'sync\nreact #0 +1\npost hi alice\nsync\nread\n' | chat bob
echo "--- alice comes back"
printf 'sync\nshow\n' | chat alice
kill -TERM "$pid"
wait "$pid"
pid=""
echo "--- relay log"
cat "$tmp/relay.log"
