#!/usr/bin/env python3
"""Process test of the crdt command (docs/cli.md).

Runs the built binary on files gen.c writes through the public API and
checks outputs and exit statuses: inspect's JSON parses and has the
documented fields; verify refuses truncated, corrupted and re-signed
input; merge of two snapshots is byte-identical to the snapshot of a
replica that received every message; diff's exit status says same or
different; store check catches a corrupted database; every --help exits
0 and bad usage exits 2. Usage: run.py CRDT GEN
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

CRDT, GEN = sys.argv[1], sys.argv[2]
failures = []


def run(*args, stdin=None):
    p = subprocess.run([CRDT, *args], input=stdin, capture_output=True,
                       timeout=120)
    err = p.stderr.decode(errors='replace')
    # Under the sanitizer build a report may come with the very exit
    # status a test expects: look for it in every run.
    for mark in ('AddressSanitizer', 'LeakSanitizer', 'runtime error:'):
        check(mark not in err, '%s: no %s report' % (' '.join(args)[:80], mark))
    return p.returncode, p.stdout, err


def check(cond, what):
    print(('ok     ' if cond else 'FAILED ') + what)
    if not cond:
        failures.append(what)


def expect(want, *args, what=None, stdin=None):
    rc, out, err = run(*args, stdin=stdin)
    check(rc == want, '%s: exit %d (want %d) %s' %
          (what or ' '.join(args), rc, want,
           (err.strip().splitlines() or [''])[0][:160]))
    return out, err


def js(*args, what=None):
    out, _ = expect(0, *args, what=what)
    try:
        return json.loads(out)
    except ValueError as e:
        check(False, '%s: JSON does not parse: %s' % (what or args, e))
        return {}


def main():
    tmp = tempfile.mkdtemp(prefix='crdt-cli-')
    try:
        tests(tmp)
    finally:
        shutil.rmtree(tmp)
    print('%d failure(s)' % len(failures))
    return 1 if failures else 0


def f(tmp, name):
    return os.path.join(tmp, name)


def corrupt(src, dst, off, xor=0x01, truncate=None):
    b = bytearray(open(src, 'rb').read())
    if truncate is not None:
        b = b[:truncate]
    else:
        b[off] ^= xor
    open(dst, 'wb').write(bytes(b))


def tests(tmp):
    subprocess.run([GEN, tmp], check=True, timeout=120)
    docid = open(f(tmp, 'docid.hex')).read().strip()

    # --help everywhere, usage errors.
    expect(0, '--help')
    expect(0, '--version')
    for cmd in ('inspect', 'verify', 'merge', 'diff', 'store', 'sim'):
        out, _ = expect(0, cmd, '--help')
        check(out.startswith(b'usage: crdt ' + cmd.encode()),
              cmd + ' --help prints its usage')
    expect(2)
    expect(2, 'nosuch')
    expect(2, 'inspect')
    expect(2, 'inspect', '--nosuch', f(tmp, 'a1.msg'))
    expect(2, 'verify')
    expect(2, 'merge', f(tmp, 'a.snap'))  # no -o
    expect(2, 'diff', f(tmp, 'a.snap'))
    expect(2, 'store', 'frobnicate', f(tmp, 'store.db'))
    expect(2, 'store', 'export', f(tmp, 'store.db'))
    expect(2, 'sim', '--replicas', '1')
    expect(2, 'sim', '--drop', '101')
    expect(2, 'sim', '--messages', 'x')
    expect(2, 'inspect', '--doc-id', 'zz', f(tmp, 'a1.msg'))
    expect(3, 'inspect', f(tmp, 'missing'))

    # inspect: a message.
    m = js('inspect', f(tmp, 'a1.msg'))
    check(m.get('kind') == 'message' and m.get('version') == 2,
          'message kind and version')
    check(m.get('dot', {}).get('counter') == 1 and
          m['dot']['replica'].startswith('a142'), 'message dot')
    check(isinstance(m.get('hlc', {}).get('ms'), int), 'message hlc')
    check(m.get('deps') == [], 'first message has no deps')
    check(m.get('envelope') == 'ok' and m.get('signed') is False,
          'plain message envelope, unsigned')
    ops = m.get('payload', {}).get('ops', [])
    check(len(ops) == 1 and ops[0]['obj'] == 0 and
          ops[0]['fields'][0].get('text') == 'a-0', 'message ops decoded')
    # from stdin as well
    out, _ = expect(0, 'inspect', '-', stdin=open(f(tmp, 'a1.msg'), 'rb').read())
    check(json.loads(out).get('kind') == 'message', 'inspect reads stdin')

    # inspect: a snapshot.
    s = js('inspect', f(tmp, 'full.snap'))
    check(s.get('kind') == 'snapshot' and s.get('doc_id') == docid,
          'snapshot kind and doc id')
    check(len(s.get('clock', [])) == 2 and
          sorted(e['counter'] for e in s['clock']) == [5, 7],
          'snapshot clock')
    check([(o['name']['text'], o['type']) for o in s.get('objects', [])] ==
          [('tags', 'gset'), ('title', 'lww'), ('meta', 'map')],
          'snapshot objects with types')
    check(s['objects'][0]['entries'] == 3 + 2, 'gset entries counted')
    check(s.get('buffered_count') == 0 and s.get('evidence_count') == 0,
          'buffered and evidence counts')

    # inspect: sync frames.
    h = js('inspect', f(tmp, 'hello.frame'))
    check(h.get('kind') == 'hello' and len(h.get('clock', [])) == 1 and
          h.get('doc_id') == docid,
          'hello clock')
    d = js('inspect', f(tmp, 'data.frame'))
    check(d.get('kind') == 'data' and 'flags' in d and
          d.get('message_count') == 5 and
          all(x.get('kind') == 'message' for x in d.get('messages', [])),
          'data frame: clock, flags, message headers')
    # version 4: each frame's variant digests, one per writer it logged
    hd, dd = h.get('digests', []), d.get('digests', [])
    check(h.get('version') == 4 and len(hd) == 1 and
          hd[0].get('lo') == 1 and len(hd[0].get('digest', '')) == 32 and
          hd[0].get('replica') == h['clock'][0].get('replica') and
          'digests' in d and all(len(x.get('digest', '')) == 32 for x in dd),
          'sync frames: variant digests')

    # inspect and verify: a clock and an object state.
    c = js('inspect', f(tmp, 'clock.state'))
    check(c.get('kind') == 'vclock' and len(c.get('clock', [])) == 2,
          'vclock inspected')
    g = js('inspect', f(tmp, 'gset.state'))
    check(g.get('kind') == 'gset' and len(g.get('state', [[]])[0]) == 15,
          'gset state inspected')
    expect(0, 'verify', f(tmp, 'clock.state'), f(tmp, 'gset.state'))
    cb = open(f(tmp, 'clock.state'), 'rb').read()
    # swap the two entries (each bin16 id + fixint counter, 19 bytes)
    hdr = 4
    e1, e2 = cb[hdr:hdr + 19], cb[hdr + 19:hdr + 38]
    check(len(cb) == hdr + 38, 'clock layout as expected')
    open(f(tmp, 'unsorted.state'), 'wb').write(cb[:hdr] + e2 + e1)
    expect(4, 'verify', f(tmp, 'unsorted.state'),
           what='verify refuses an unsorted clock')

    # inspect: signed and sealed.
    sg = js('inspect', '--doc-id', docid, f(tmp, 'signed.msg'))
    check(sg.get('signed') is True and
          sg.get('signer', {}).get('signature') == 'valid' and
          sg['signer'].get('matches_sender') is True, 'signed message')
    sl = js('inspect', f(tmp, 'sealed.msg'))
    check(sl.get('payload', {}).get('sealed') is True and
          'ops' not in sl['payload'], 'sealed payload not shown without key')
    sl = js('inspect', '--key', f(tmp, 'key.bin'), '--doc-id', docid,
            f(tmp, 'sealed.msg'))
    ops = sl.get('payload', {}).get('ops', [])
    check(len(ops) == 1 and ops[0]['fields'][0].get('text') == 'secret',
          'sealed payload opened with --key')
    ss = js('inspect', '--key', f(tmp, 'key.bin'), '--doc-id', docid,
            f(tmp, 'sealed.snap'))
    check(ss.get('kind') == 'sealed_snapshot' and
          ss.get('snapshot', {}).get('kind') == 'snapshot',
          'sealed snapshot opened')

    # inspect: malformed input.
    corrupt(f(tmp, 'full.snap'), f(tmp, 'trunc.snap'), 0,
            truncate=os.path.getsize(f(tmp, 'full.snap')) // 2)
    expect(4, 'inspect', f(tmp, 'trunc.snap'))
    open(f(tmp, 'junk'), 'wb').write(b'\xdd\x01\x00\x00\x00')
    expect(4, 'inspect', f(tmp, 'junk'))

    # verify.
    good = [f(tmp, n) for n in ('a.snap', 'b.snap', 'full.snap', 'a1.msg',
                                'hello.frame', 'data.frame', 'signed.snap')]
    expect(0, 'verify', *good)
    expect(0, 'verify', f(tmp, 'chat.msg'), f(tmp, 'chat.snap'))
    ch = js('inspect', f(tmp, 'chat.snap'))
    check(ch['objects'][0]['type'] == 'chat' and
          ch['objects'][0]['entries'] == 1, 'chat snapshot: one message')
    expect(0, 'verify', '--doc-id', docid, f(tmp, 'signed.msg'))
    expect(0, 'verify', '--doc-id', docid, '--key', f(tmp, 'key.bin'),
           f(tmp, 'sealed.msg'), f(tmp, 'sealed.snap'))
    expect(4, 'verify', f(tmp, 'trunc.snap'))
    for cut in (1, 10, os.path.getsize(f(tmp, 'a1.msg')) - 1):
        corrupt(f(tmp, 'a1.msg'), f(tmp, 'cut.msg'), 0, truncate=cut)
        expect(4, 'verify', f(tmp, 'cut.msg'), what='verify message cut at %d' % cut)
    _, err = expect(4, 'verify', f(tmp, 'a.snap'), f(tmp, 'trunc.snap'))
    check('trunc.snap' in err and 'a.snap' not in err,
          'verify names only the faulty file')
    # a non-minimal form: the counter 1 re-written as uint8 0xcc 0x01
    b = open(f(tmp, 'a1.msg'), 'rb').read()
    i = b.index(b'\x01', 3 + 18)
    open(f(tmp, 'nonmin.msg'), 'wb').write(b[:i] + b'\xcc' + b[i:])
    expect(4, 'verify', f(tmp, 'nonmin.msg'), what='verify non-minimal form')
    # a HELLO frame has no library decoder outside a document: the
    # re-pack check is what catches its non-minimal lo (the HELLO ends
    # with its last digest: lo, then bin 16)
    hb = open(f(tmp, 'hello.frame'), 'rb').read()
    check(hb[-19] < 0x80 and hb[-18:-16] == b'\xc4\x10',
          'hello ends with a digest whose lo is a fixint')
    open(f(tmp, 'nonmin.frame'), 'wb').write(hb[:-19] + b'\xcc' + hb[-19:])
    expect(4, 'verify', f(tmp, 'nonmin.frame'),
           what='verify non-minimal HELLO')
    # a digest whose lo is 0: canonical msgpack, refused by the check
    open(f(tmp, 'lo0.frame'), 'wb').write(hb[:-19] + b'\x00' + hb[-18:])
    expect(4, 'verify', f(tmp, 'lo0.frame'), what='verify HELLO digest lo 0')
    expect(0, 'verify', f(tmp, 'hello.frame'), what='verify HELLO as sent')
    # a flipped signature bit, and another document
    size = os.path.getsize(f(tmp, 'signed.msg'))
    corrupt(f(tmp, 'signed.msg'), f(tmp, 'badsig.msg'), size - 5)
    expect(1, 'verify', '--doc-id', docid, f(tmp, 'badsig.msg'),
           what='verify flipped signature')
    expect(1, 'verify', '--doc-id', '00' * 32, f(tmp, 'signed.msg'),
           what='verify signature for another document')
    expect(1, 'verify', '--signed', f(tmp, 'a1.msg'),
           what='verify --signed refuses an unsigned message')
    expect(1, 'verify', f(tmp, 'sealed.snap'),
           what='verify sealed snapshot without key')
    corrupt(f(tmp, 'sealed.snap'), f(tmp, 'badseal.snap'),
            os.path.getsize(f(tmp, 'sealed.snap')) - 3)
    expect(1, 'verify', '--doc-id', docid, '--key', f(tmp, 'key.bin'),
           f(tmp, 'badseal.snap'), what='verify forged sealed snapshot')

    # merge: two snapshots = the replica that got every message.
    expect(0, 'merge', '-o', f(tmp, 'merged.snap'), f(tmp, 'a.snap'),
           f(tmp, 'b.snap'))
    check(open(f(tmp, 'merged.snap'), 'rb').read() ==
          open(f(tmp, 'full.snap'), 'rb').read(),
          'merge of a and b is byte-identical to full')
    expect(0, 'merge', '-o', f(tmp, 'merged2.snap'), f(tmp, 'b.snap'),
           f(tmp, 'a.snap'), f(tmp, 'a1.msg'))
    check(open(f(tmp, 'merged2.snap'), 'rb').read() ==
          open(f(tmp, 'full.snap'), 'rb').read(),
          'merge in another order, with a message, is the same')
    expect(0, 'merge', '--schema', 'tags:gset,title:lww,meta:map',
           '--doc-id', docid, '-o', f(tmp, 'm3.snap'), f(tmp, 'a1.msg'))
    expect(4, 'merge', '-o', f(tmp, 'x.snap'), f(tmp, 'a.snap'),
           f(tmp, 'signed.snap'), what='merge of another schema')
    expect(4, 'merge', '-o', f(tmp, 'x.snap'), f(tmp, 'a.snap'),
           f(tmp, 'trunc.snap'), what='merge of a truncated snapshot')
    check(not os.path.exists(f(tmp, 'x.snap')), 'failed merge writes nothing')
    expect(2, 'merge', '-o', f(tmp, 'x.snap'), f(tmp, 'a1.msg'),
           what='merge of messages only needs --schema')

    # merge: sealed in, sealed out; the same state as the input.
    kd = ('--key', f(tmp, 'key.bin'), '--doc-id', docid)
    expect(2, 'merge', '-o', f(tmp, 'x.snap'), f(tmp, 'sealed.snap'),
           what='merge of a sealed snapshot without --key')
    expect(0, 'merge', *kd, '--seal', '-o', f(tmp, 'resealed.snap'),
           f(tmp, 'sealed.snap'))
    rs = js('inspect', *kd, f(tmp, 'resealed.snap'))
    check(rs.get('kind') == 'sealed_snapshot' and
          rs.get('snapshot', {}).get('objects', [{}])[0].get('entries') == 1,
          'merge --seal writes a sealed snapshot of the same state')
    expect(0, 'diff', *kd, f(tmp, 'sealed.snap'), f(tmp, 'resealed.snap'),
           what='diff of two sealings of one state')
    # an allowlist document needs the admin key (not in any snapshot)
    admin = open(f(tmp, 'admin.hex')).read().strip()
    expect(2, 'merge', '-o', f(tmp, 'x.snap'), f(tmp, 'acl.snap'),
           what='merge of an allowlist document without --admin-key')
    expect(0, 'merge', '--admin-key', admin, '-o', f(tmp, 'acl2.snap'),
           f(tmp, 'acl.snap'))
    check(open(f(tmp, 'acl2.snap'), 'rb').read() ==
          open(f(tmp, 'acl.snap'), 'rb').read(),
          'allowlist snapshot merged alone is itself')
    expect(0, 'verify', '--admin-key', admin, '--doc-id', docid,
           f(tmp, 'acl.snap'))
    aj = js('inspect', f(tmp, 'acl.snap'))
    check(aj['objects'][0]['name'].get('text') == '__acl' and
          'admin_seen' in aj, 'allowlist snapshot: __acl and admin_seen')

    # diff.
    dj, _ = expect(0, 'diff', f(tmp, 'merged.snap'), f(tmp, 'full.snap'))
    check(json.loads(dj).get('same') is True, 'diff of equal snapshots')
    dj, _ = expect(1, 'diff', f(tmp, 'a.snap'), f(tmp, 'full.snap'))
    dd = json.loads(dj)
    check(dd.get('same') is False and
          dd.get('clock', {}).get('order') == 'a_before_b' and
          len(dd['clock']['replicas']) == 1 and
          dd['clock']['replicas'][0]['a'] == 0 and
          dd['clock']['replicas'][0]['b'] == 5, 'diff clock per replica')
    check(any(not o['same'] for o in dd.get('objects', [])),
          'diff per object')
    dj, _ = expect(1, 'diff', f(tmp, 'a.snap'), f(tmp, 'b.snap'))
    check(json.loads(dj)['clock']['order'] == 'concurrent', 'diff concurrent')
    expect(4, 'diff', f(tmp, 'a.snap'), f(tmp, 'trunc.snap'))

    # store.
    db = f(tmp, 'store.db')
    st = js('store', 'list', db)
    check(st.get('checkpoint') is not None and st.get('message_count') == 9,
          'store list: checkpoint and 9 messages')
    # The checkpoint's clock is lowered below the run the log holds
    # (store.h, crdt_doc_checkpoint): "covered" must follow that clock.
    cov = {e['replica']: e['counter'] for e in st['checkpoint']['covers']}
    check(all(x['covered_by_checkpoint'] ==
              (x['dot']['counter'] <= cov.get(x['dot']['replica'], 0))
              for x in st.get('messages', [])),
          'store list: covered follows the checkpoint clock')
    js('store', 'check', db)
    expect(0, 'store', 'export', db, '-o', f(tmp, 'exported.snap'))
    check(open(f(tmp, 'exported.snap'), 'rb').read() ==
          open(f(tmp, 'store-expected.snap'), 'rb').read(),
          'store export = the document that wrote the store')
    os.mkdir(f(tmp, 'msgs'))
    expect(0, 'store', 'export', db, '--messages', f(tmp, 'msgs'))
    names = os.listdir(f(tmp, 'msgs'))
    check(len(names) == 9, 'store export --messages writes 9 files')
    expect(0, 'verify', *[os.path.join(tmp, 'msgs', n) for n in names])
    cj = js('store', 'compact', db)
    check(cj.get('checkpoint') is True, 'store compact')
    st2 = js('store', 'list', db)
    check(st2.get('message_count') == 9 and
          st2.get('checkpoint', {}).get('bytes', 0) >
          st.get('checkpoint', {}).get('bytes', 0),
          'compact keeps every message; the new checkpoint holds more')
    expect(0, 'store', 'export', db, '-o', f(tmp, 'exported2.snap'))
    check(open(f(tmp, 'exported2.snap'), 'rb').read() ==
          open(f(tmp, 'store-expected.snap'), 'rb').read(),
          'store export after compact is unchanged')
    import sqlite3
    con = sqlite3.connect(db)
    check(con.execute('PRAGMA user_version').fetchone()[0] == 3,
          'a new store is schema version 3')
    con.close()
    # A loaded snapshot record (storage.md, "Loaded snapshots"): listed,
    # read by check, merged by export; compact's checkpoint drops it.
    ldb = f(tmp, 'loaded.db')
    sl = js('store', 'list', ldb)
    check(sl.get('loaded_snapshots') == 1 and
          sl.get('loaded_snapshot_bytes', 0) > 0,
          'store list: the loaded snapshot record')
    check(js('store', 'check', ldb).get('loaded_snapshots') == 1,
          'store check reads the loaded snapshot record')
    for name in ('lexported.snap', 'lexported2.snap'):
        expect(0, 'store', 'export', ldb, '-o', f(tmp, name))
        check(open(f(tmp, name), 'rb').read() ==
              open(f(tmp, 'loaded-expected.snap'), 'rb').read(),
              'store export merges the loaded snapshot record (%s)' % name)
        if name == 'lexported.snap':
            js('store', 'compact', ldb)
            check(js('store', 'list', ldb).get('loaded_snapshots') == 0,
                  'store compact: the checkpoint drops the record')
    expect(3, 'store', 'check', f(tmp, 'nosuch.db'))
    expect(3, 'verify', f(tmp, 'nosuch.snap'))
    # corruption: a stored message's bytes changed in place
    shutil.copy(db, f(tmp, 'bad.db'))
    raw = bytearray(open(f(tmp, 'bad.db'), 'rb').read())
    msg = open(os.path.join(tmp, 'msgs', sorted(names)[0]), 'rb').read()
    at = raw.find(msg)
    check(at >= 0, 'message bytes found in the db file')
    if at >= 0:
        raw[at + len(msg) - 2] ^= 0x55
        open(f(tmp, 'bad.db'), 'wb').write(bytes(raw))
        expect(1, 'store', 'check', f(tmp, 'bad.db'),
               what='store check: a changed message')
    corrupt(db, f(tmp, 'hdr.db'), 0, xor=0xff)
    expect(1, 'store', 'check', f(tmp, 'hdr.db'),
           what='store check: not a database')
    open(f(tmp, 'empty.db'), 'wb').close()
    expect(1, 'store', 'check', f(tmp, 'empty.db'),
           what='store check: an empty file')

    # sim.
    out, _ = expect(0, 'sim', '--replicas', '3', '--messages', '40',
                    '--drop', '30', '--seed', '7', '--save', tmp)
    sj = json.loads(out)
    check(sj.get('converged') is True and sj.get('messages') == 40 and
          sj.get('rounds', 0) > 0 and sj.get('bytes', 0) > 0,
          'sim summary')
    out2, _ = expect(0, 'sim', '--replicas', '3', '--messages', '40',
                     '--drop', '30', '--seed', '7')
    check(json.loads(out2) == sj, 'sim replays from its seed')
    expect(0, 'diff', f(tmp, 'replica-0.snap'), f(tmp, 'replica-2.snap'))
    expect(0, 'verify', f(tmp, 'replica-1.snap'))


if __name__ == '__main__':
    sys.exit(main())
