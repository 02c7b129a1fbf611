#!/usr/bin/env python3
"""Three and more crdt-chat processes, one crdt-relay: posts while
others are offline, a client killed mid-stream, the relay killed with
SIGKILL mid-stream and restarted on the same data dir; then heal.

Checks: every message a client saw acknowledged (a `sync` that ended:
the server acked all of ours) is held by the relay right after its
restart (a fresh client pulls it from the relay alone); after two heal
passes every replica's canonical snapshot is byte-identical, every
message any client posted is present everywhere, and every one is
acknowledged; the relay stops cleanly on SIGTERM (exit 0; under ASan
that includes no leaks).
usage: test_heal.py CRDT_RELAY CRDT_CHAT
"""

import os
import shutil
import sys
import tempfile

from relay_lib import (Client, Failure, Relay, SERVER_ID, acked_before_sync,
                       check, kill_all, posted, thread)


def main(relay_exe, chat_exe):
    work = tempfile.mkdtemp(prefix='crdt-relay-heal-')
    ok = False
    try:
        doc = os.urandom(32).hex()
        relay = Relay(relay_exe, os.path.join(work, 'relay'),
                      os.path.join(work, 'relay.log'),
                      ['--server-id', SERVER_ID])
        relay.start()

        def client(user):
            return Client(chat_exe, relay, doc, user,
                          os.path.join(work, user + '.db'))
        a, b, c, f = (client(u) for u in ('alice', 'bob', 'carol', 'fresh'))
        all_posted, acked = [], []

        # Bob writes while offline: nothing leaves his process.
        out = b.run('post b1 written offline\npost b2 written offline\n'
                    'quit\n', extra=['--offline'])
        all_posted += posted(out)
        check(len(posted(out)) == 2, 'bob posted ' + out)

        # Carol posts online, goes offline, posts, comes back.
        out = c.run('post c1\nsync\noffline\npost c2 while offline\n'
                    'online\nsync\nread\n')
        all_posted += posted(out)
        acked += acked_before_sync(out)
        check(len(acked) == 2, 'carol acked ' + out)
        ids_c = [m[0] for m in thread(out)]
        check(set(posted(out)) <= set(ids_c), 'carol lacks her own')

        # Alice streams posts, each synced (acknowledged)...
        live = a.start()
        mine = []
        for i in range(1, 7):
            live.send('post a%d\nsync\n' % i)
            mine.append(live.wait_line(lambda l: l.startswith('posted '))
                        .split()[1])
            live.wait_line(lambda l: l == 'synced')
        acked += mine
        # ...then more, and the relay dies mid-stream, and so does she.
        live.send('post a7\npost a8\nsync\n')
        relay.kill9()
        live.kill9()
        live.drain()
        alice_posted = posted('\n'.join(live.lines))
        check(alice_posted[:6] == mine, 'alice output ' + str(live.lines))
        all_posted += alice_posted
        alice_id = mine[0].split(':')[0]

        # Restart on the same data dir and port.
        relay.start(relay.port)
        # A fresh replica that talks to the relay alone: everything
        # acknowledged before the kill must be there.
        out = f.run('sync\nshow\n')
        have = {m[0] for m in thread(out)}
        missing = [i for i in acked if i not in have]
        check(not missing, 'acknowledged but lost by the relay: %s' %
              missing)

        # Bob comes online with his offline posts; Alice restarts from
        # her store (killed with two unsynced posts maybe) and goes on.
        out = b.run('post b3\nsync\nread\n')
        all_posted += posted(out)
        acked += acked_before_sync(out)
        out = a.run('post a9 after the crash\nsync\nread\n')
        all_posted += posted(out)
        acked += acked_before_sync(out)
        check(len(set(all_posted)) == len(all_posted),
              'a message ID was handed out twice: %s' % all_posted)

        # Heal: two passes, the second one dumps.
        replicas = [a, b, c, f]
        for r in replicas:
            r.run('sync\n')
        dumps, threads = [], []
        for r in replicas:
            path = os.path.join(work, r.user + '.snap')
            out = r.run('sync\nshow\n', dump=path)
            threads.append(thread(out))
            with open(path, 'rb') as fh:
                dumps.append(fh.read())
        for r, d in zip(replicas[1:], dumps[1:]):
            check(d == dumps[0], 'snapshot of %s differs from %s' %
                  (r.user, a.user))
        check(all(t == threads[0] for t in threads), 'threads differ')
        ids = [m[0] for m in threads[0]]
        check(set(all_posted) <= set(ids) and len(ids) == len(set(ids)),
              'posted %s, the thread has %s' % (all_posted, ids))
        # A post stored by alice whose "posted" line the kill cut off.
        extra = set(ids) - set(all_posted)
        check(all(i.startswith(alice_id + ':') for i in extra) and
              len(extra) <= 2, 'unexplained messages: %s' % extra)
        check(all(m[1] in ('delivered', 'read') for m in threads[0]),
              'not all acknowledged: %s' % threads[0])
        check(set(acked) <= set(ids), 'acked but absent')

        rc = relay.term()
        log = relay.log()
        check(rc == 0, 'relay exit %d on SIGTERM:\n%s' % (rc, log[-3000:]))
        for what in ('connect conn=', 'disconnect conn=', 'opened',
                     'shutdown (SIGTERM)', 'stopped'):
            check(what in log, 'relay log lacks %r' % what)
        print('ok: %d messages, %d acknowledged before a sync ended, '
              '%d replicas identical (%d snapshot bytes)' %
              (len(ids), len(acked), len(replicas), len(dumps[0])))
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
