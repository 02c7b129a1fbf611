#!/usr/bin/env python3
"""A keyless, content-blind relay (--encrypted --signed): two signed,
encrypted clients exchange messages through it; both end with
byte-identical snapshots holding every message, and no plaintext body
appears in the relay's files. Then a signed relay that is the chat
server (--server-seed-file): its signed acks make every message
delivered, and a sync ends only once they came.
usage: test_blind.py CRDT_RELAY CRDT_CHAT
"""

import os
import shutil
import sys
import tempfile

from relay_lib import Client, Failure, Relay, check, kill_all, posted, thread


def signed_server(relay_exe, chat_exe, work):
    seed = os.path.join(work, 'server.seed')
    with open(seed, 'w') as fh:
        fh.write(os.urandom(32).hex() + '\n')
    relay = Relay(relay_exe, os.path.join(work, 'srv'),
                  os.path.join(work, 'srv.log'),
                  ['--signed', '--server-seed-file', seed])
    relay.start()
    line = relay.wait_log(r'chat server replica id [0-9a-f]{32}$')
    server = line.split()[-1]
    doc = os.urandom(32).hex()

    def client(user):
        c = Client(chat_exe, relay, doc, user,
                   os.path.join(work, 's-' + user + '.db'),
                   ['--signed', '--server-id', server])
        c.args_server = False
        return c
    a, b = client('alice'), client('bob')
    ids = posted(a.run('post signed one\nsync\n'))
    ids += posted(b.run('post signed two\nsync\n'))
    dumps = []
    for r in (a, b):
        path = os.path.join(work, 's-' + r.user + '.snap')
        t = thread(r.run('sync\nshow\n', dump=path))
        check(sorted(m[0] for m in t) == sorted(ids), 'thread %s' % t)
        check(all(m[1] in ('delivered', 'read') for m in t),
              'not acknowledged by the signed server: %s' % t)
        with open(path, 'rb') as fh:
            dumps.append(fh.read())
    check(dumps[0] == dumps[1], 'signed snapshots differ')
    check(relay.term() == 0, 'signed server exit')


def main(relay_exe, chat_exe):
    work = tempfile.mkdtemp(prefix='crdt-relay-blind-')
    ok = False
    try:
        data = os.path.join(work, 'relay')
        relay = Relay(relay_exe, data, os.path.join(work, 'relay.log'),
                      ['--encrypted', '--signed'])
        relay.start()
        doc, key = os.urandom(32).hex(), os.urandom(32).hex()

        def client(user):
            c = Client(chat_exe, relay, doc, user,
                       os.path.join(work, user + '.db'),
                       ['--signed', '--key', key])
            c.args_server = False
            return c
        a, b = client('alice'), client('bob')
        secret = 'plaintext-' + os.urandom(8).hex()
        ids = posted(a.run('post %s one\npost %s two\nsync\n' %
                           (secret, secret)))
        ids += posted(b.run('post %s three\nsync\n' % secret))
        dumps, threads = [], []
        for r in (a, b):
            path = os.path.join(work, r.user + '.snap')
            threads.append(thread(r.run('sync\nshow\n', dump=path)))
            with open(path, 'rb') as fh:
                dumps.append(fh.read())
        check(dumps[0] == dumps[1], 'snapshots differ')
        check(sorted(m[0] for m in threads[0]) == sorted(ids),
              'thread %s, posted %s' % (threads[0], ids))
        check(all(m[3].startswith(secret) for m in threads[0]),
              'bodies not readable by key holders')
        for name in os.listdir(data):
            with open(os.path.join(data, name), 'rb') as fh:
                check(secret.encode() not in fh.read(),
                      'plaintext in the relay file ' + name)
        # Shut down with a client connected: handles closed, no leak.
        live = a.start()
        live.send('sync\n')
        live.wait_line(lambda l: l == 'synced')
        check(relay.term() == 0, 'relay exit with a client connected')
        check('shutdown (SIGTERM): 1 connections' in relay.log(),
              'the connection was not open at shutdown')
        live.kill9()
        signed_server(relay_exe, chat_exe, work)
        print('ok: %d sealed messages relayed blind; a signed server '
              'acked' % len(ids))
        ok = True
    finally:
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
