#!/usr/bin/env python3
"""Hostile peers against crdt-relay: garbage, an oversize length, a
length too short for an envelope, an unknown type, the zero document
ID, a malformed sync payload, a truncated frame, real frames replayed
under another document ID, connections past --max-conns, and a client
that sends but never reads (past --max-write-queue). Each is refused:
that connection is closed with a log line naming the reason. Meanwhile
a legitimate client stays connected and keeps working, the relay's
document is unchanged (a fresh replica pulls byte-identical state
before and after) and no file appears for a document nothing was
written to.
usage: test_hostile.py CRDT_RELAY CRDT_CHAT
"""

import os
import shutil
import socket
import sys
import tempfile
import time

from relay_lib import (Capture, Client, Failure, Relay, SERVER_ID, check,
                       connect, frame, kill_all, wait_closed)

MAX_FRAME = 65536
MAX_CONNS = 6


def rebind(f, doc):
    """Sync frame `f` made to name document `doc`: the 32-byte doc_id
    follows [array header, version 4, kind, bin8 32] (wire-format.md)."""
    check(f[1] == 4 and f[3:5] == b'\xc4\x20', 'not a version-4 sync frame')
    return f[:5] + doc + f[37:]


def replay(port, doc, frames, bytewise=False):
    """Send `frames` under `doc` (one byte per send when `bytewise`),
    then a PING; wait for its PONG (every frame before it was handled);
    returns what came back."""
    s = connect(port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got = b''
    for f in frames:
        if bytewise:
            for i, byte in enumerate(frame(1, doc, f)):
                s.sendall(bytes([byte]))
                if i % 16 == 0:
                    time.sleep(0.001)
        else:
            s.sendall(frame(1, doc, f))
        # Read the replies as they come: this peer is not a slow one.
        s.settimeout(0.02)
        try:
            while True:
                d = s.recv(1 << 20)
                if not d:
                    break
                got += d
        except socket.timeout:
            pass
    s.sendall(frame(2, doc, b'\x07' * 8))
    want = b'\x03' + doc + b'\x07' * 8
    s.settimeout(1.0)
    end = time.monotonic() + 30
    while want not in got and time.monotonic() < end:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        if not d:
            break
        got += d
    s.close()
    check(want in got, 'no PONG after the replay')
    return got


def through_proxy(relay_exe, relay, c, script, dump=None):
    """Run client `c` through a recording proxy: its sync frames."""
    cap = Capture(relay.port)
    proxied = Relay(relay_exe, relay.data, os.devnull)
    proxied.port = cap.port
    c.relay = proxied
    try:
        c.run(script, dump=dump)
    finally:
        c.relay = relay
    return [f[2] for f in cap.frames() if f[0] == 1]


def wrong_doc_in_signed_mode(relay_exe, chat_exe, work):
    """Signed documents bind every message to its document ID (the
    signature covers it), so a frame replayed under another ID brings
    nothing there and leaves no file. (Unsigned plaintext messages name
    no document: docs/relay.md, Limits.)"""
    data = os.path.join(work, 'signed')
    relay = Relay(relay_exe, data, os.path.join(work, 'signed.log'),
                  ['--signed'])
    relay.start()
    doc_hex = os.urandom(32).hex()
    w = Client(chat_exe, relay, doc_hex, 'signer',
               os.path.join(work, 'signer.db'), ['--signed'])
    w.args_server = False
    frames = through_proxy(relay_exe, relay, w,
                           'post signed one\npost signed two\nsync\n')
    files = sorted(os.listdir(data))
    check(len(files) >= 1, 'the signed document has no file')
    other = os.urandom(32)
    # The frames name their document: under another envelope ID they are
    # refused before any document is opened.
    at = len(relay.log())
    s = connect(relay.port)
    s.sendall(frame(1, other, frames[-1]))
    check(wait_closed(s), 'a frame naming another document was kept')
    s.close()
    relay.wait_log(r'names another document', at)
    # Rewritten to name the other document, they pass the relay's check,
    # and the signatures (over the original document) refuse every
    # message in them.
    replay(relay.port, other, [rebind(f, other) for f in frames])
    check(sorted(os.listdir(data)) == files,
          'a replay under another document ID wrote %s' %
          sorted(os.listdir(data)))
    check(relay.term() == 0, 'signed relay exit')


def doc_limits(relay_exe, frames, work):
    """--max-docs-per-conn, --max-docs, and a damaged store file: each
    refusal closes that connection with its log line; the damaged file
    is left as it was (never silently replaced by an empty store)."""
    data = os.path.join(work, 'limits')
    os.makedirs(data)
    bad = os.urandom(32)
    bad_path = os.path.join(data, bad.hex() + '.db')
    with open(bad_path, 'wb') as fh:
        fh.write(b'not a database' * 100)
    relay = Relay(relay_exe, data, os.path.join(work, 'limits.log'),
                  ['--max-docs', '3', '--max-docs-per-conn', '2'])
    port = relay.start()

    def refused_on(doc, pattern):
        at = len(relay.log())
        s = connect(port)
        s.sendall(frame(1, doc, rebind(frames[-1], doc)))
        check(wait_closed(s), 'kept the connection: ' + pattern)
        s.close()
        relay.wait_log(pattern, at)

    refused_on(bad, r'refused for .*storage corrupt')
    with open(bad_path, 'rb') as fh:
        check(fh.read() == b'not a database' * 100, 'damaged file changed')
    d = [os.urandom(32) for _ in range(4)]
    # Unsigned messages name no document (relay.md, Limits): replaying a
    # document's frames under new IDs fills new documents.
    s = connect(port)
    for doc in d[:2]:
        for f in frames:
            s.sendall(frame(1, doc, rebind(f, doc)))
    at = len(relay.log())
    s.sendall(frame(1, d[2], rebind(frames[-1], d[2])))
    check(wait_closed(s), 'a third document on one connection was kept')
    s.close()
    relay.wait_log(r'more than 2 documents on one connection', at)
    replay(port, d[2], [rebind(f, d[2]) for f in frames])
    refused_on(d[3], r'refused for .*3 documents open \(--max-docs\)')
    check(relay.term() == 0, 'limits relay exit')


def main(relay_exe, chat_exe):
    work = tempfile.mkdtemp(prefix='crdt-relay-hostile-')
    ok = False
    socks = []
    try:
        doc_hex = os.urandom(32).hex()
        doc = bytes.fromhex(doc_hex)
        data = os.path.join(work, 'relay')
        relay = Relay(relay_exe, data, os.path.join(work, 'relay.log'),
                      ['--server-id', SERVER_ID, '--max-frame',
                       str(MAX_FRAME), '--max-conns', str(MAX_CONNS),
                       '--max-write-queue', str(2 * MAX_FRAME)])
        port = relay.start()

        def client(user, relay_=relay):
            return Client(chat_exe, relay_, doc_hex, user,
                          os.path.join(work, user + '.db'))

        def through(user, script, dump=None):
            return through_proxy(relay_exe, relay, client(user), script,
                                 dump)

        # Some history, about 20 KiB, so a sync reply is large; the
        # writer's frames carry its messages.
        written = through(
            'writer', ''.join(
            'post %d %s\n' % (i, 'x' * 1000) for i in range(20)) + 'sync\n')
        check(max(len(f) for f in written) > 20000,
              'no frame carried the messages')
        files_before = sorted(os.listdir(data))
        # A fresh replica's pull: its HELLO (an empty clock) asks for all.
        pulled = through('probe1', 'sync\n',
                               dump=os.path.join(work, 'before.snap'))
        hello = pulled[0]
        sent = written + pulled

        # A legitimate client that stays connected throughout.
        live = client('steady').start()
        live.send('sync\n')
        live.wait_line(lambda l: l == 'synced')

        def refused(payload, pattern, shut=False):
            at = len(relay.log())
            s = connect(port)
            s.sendall(payload)
            if shut:
                s.shutdown(socket.SHUT_WR)
            check(wait_closed(s), 'relay kept the connection: %r' % pattern)
            s.close()
            relay.wait_log(pattern, at)

        refused(b'\xff' + os.urandom(200), r'over --max-frame')
        refused(b'\x00\x01\x00\x01' + b'A' * 64, r'over --max-frame')
        refused(b'\x00\x00\x00\x05hello', r'shorter than an envelope')
        refused(frame(9, doc), r'unknown type 9')
        refused(frame(1, bytes(32), hello), r'zero document ID')
        refused(frame(1, doc, b'\xc1 not msgpack'), r'not a sync frame')
        refused(frame(1, doc, b'\x93\x07\x07\x07'), r'not a sync frame')
        refused(frame(1, doc, rebind(hello, os.urandom(32))),
                r'names another document')
        refused(frame(2, doc, b'short'), r'PING without')
        # Truncated: a length of 1000, 40 bytes, then the end.
        refused(b'\x00\x00\x03\xe8' + bytes([1]) + doc + b'\x00' * 7,
                r'truncated', shut=True)

        # Real frames replayed: duplicates, nothing changes.
        replay(port, doc, sent)
        # A frame split into single bytes is still one frame: the HELLO
        # of an empty peer is answered with the whole history.
        got = replay(port, doc, [hello], bytewise=True)
        check(len(got) > 20000, 'a byte-by-byte HELLO got %d bytes' %
              len(got))

        # Past --max-conns: one is refused.
        at = len(relay.log())
        for _ in range(MAX_CONNS + 1):
            socks.append(connect(port))
        relay.wait_log(r'refused: %d connections open' % MAX_CONNS, at)
        accepted = relay.log()[at:].count('crdt-relay: connect conn=')
        at = len(relay.log())
        for s in socks:
            s.close()
        socks.clear()
        # The relay has seen them go before the next connection.
        end = time.monotonic() + 30
        while relay.log()[at:].count('crdt-relay: disconnect conn=') < accepted and \
                time.monotonic() < end:
            time.sleep(0.05)
        check(relay.log()[at:].count('crdt-relay: disconnect conn=') >= accepted,
              'closed connections not seen')

        # A client that asks and asks and never reads.
        at = len(relay.log())
        s = connect(port, rcvbuf=4096)
        s.settimeout(2.0)
        burst = frame(1, doc, hello) * 200
        try:
            for _ in range(100):
                s.sendall(burst)
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            pass
        relay.wait_log(r'slow client', at)
        s.close()

        # Still serving: the steady client works, state is unchanged.
        check(relay.alive(), 'relay died')
        p2 = client('probe2')
        p2.run('sync\n', dump=os.path.join(work, 'after.snap'))
        with open(os.path.join(work, 'before.snap'), 'rb') as f1, \
                open(os.path.join(work, 'after.snap'), 'rb') as f2:
            check(f1.read() == f2.read(),
                  'the relay document changed under hostile input')
        check(sorted(os.listdir(data)) == files_before,
              'files changed: %s -> %s' % (files_before,
                                          sorted(os.listdir(data))))
        live.send('post still here\nsync\n')
        live.wait_line(lambda l: l == 'synced')
        live.send('quit\n')
        live.p.stdin.close()
        check(live.p.wait(30) == 0, 'steady client failed')

        rc = relay.term()
        check(rc == 0, 'relay exit %d:\n%s' % (rc, relay.log()[-3000:]))
        wrong_doc_in_signed_mode(relay_exe, chat_exe, work)
        doc_limits(relay_exe, written, work)
        print('ok: %d refusals logged' %
              relay.log().count('frame refused'))
        ok = True
    finally:
        for s in socks:
            s.close()
        kill_all()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print('work dir kept: ' + work)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main(sys.argv[1], sys.argv[2]))
    except Failure as e:
        print('FAIL: %s' % e)
        sys.exit(1)
