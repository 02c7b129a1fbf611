#!/usr/bin/env python3
"""Classify the Byzantine target's divergences (docs/testing.md, "Byzantine
target").

    python3 fuzz/byzantine-classify.py build/fuzz/fuzz_byzantine \
        fuzz/corpus/byzantine [more files or directories]

Replays each input in the default mode (the protocol as it is, sync
alone) and, for each that diverges, with FUZZ_BYZ_HAND_OVER=1 (replica 0
handed the variants of B's dots that the other honest replicas' logs hold,
then healed again). An input that diverges in the default mode is put in
one class:

  (1) equal clocks     some dot of B is held as different variants by two
                       honest replicas, their clocks are equal, and the
                       hand-over makes them converge: equivocation under
                       equal clocks, which the variant digests of sync
                       version 4 should have found.
  (2) B's permission   some dot of B is split and the honest replicas'
                       clocks differ, or a handed-over variant is refused:
                       a message of B judged through different variants
                       of its own earlier dot.
  other                anything else: a local bug (no split dot, a
                       divergence that stays with FUZZ_BYZ_ONE_FORK=1, where
                       B never equivocates, or a split dot whose hand-over
                       does not close it).

Prints one line per diverging input, then the counts with a sample input
per class. Exit status 1 when an input is "other" or crashed otherwise.
"""
import os
import re
import subprocess
import sys


def inputs(paths):
    for p in paths:
        if os.path.isdir(p):
            for n in sorted(os.listdir(p)):
                if not n.startswith('.'):
                    yield os.path.join(p, n)
        elif os.path.exists(p):
            yield p


def run(exe, path, strict, one_fork=False):
    env = dict(os.environ, FUZZ_DEBUG='1')
    for k in ('FUZZ_BYZ_SAFETY_ONLY', 'FUZZ_BYZ_HAND_OVER',
              'FUZZ_BYZ_ONE_FORK'):
        env.pop(k, None)
    if not strict:
        env['FUZZ_BYZ_HAND_OVER'] = '1'
    if one_fork:
        env['FUZZ_BYZ_ONE_FORK'] = '1'
    r = subprocess.run([exe, path], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, errors='replace')
    return r.returncode, r.stderr


def clocks(err):
    """The honest replicas' clocks as the harness prints them."""
    return [m.group(2) for m in
            re.finditer(r'^h(\d) buffered \d+:(.*)$', err, re.M)]


# A snapshot's fields, in order (docs/document.md, "Snapshot (kind 6)").
FIELDS = ['version', 'kind', 'doc_id', 'clock', 'stamps', 'hlc_max',
          'objects', 'buffered', 'admin_seen', 'evidence']


def field(err):
    m = re.search(r'snapshot field (\d+) of', err)
    if m is None:
        return '-'
    i = int(m.group(1))
    return FIELDS[i] if i < len(FIELDS) else m.group(1)


def classify(exe, path):
    rc, err = run(exe, path, True)
    if rc == 0:
        return None, '-'
    if 'oracle failed: same_but_buffer' not in err and \
            'oracle failed: s0.len == si.len' not in err:
        return 'crash', '-'
    split = "B's dot" in err
    equal = len(set(clocks(err))) == 1
    # Both open causes need B to equivocate: one that stays with B's
    # second fork kept away is not theirs.
    if not split or run(exe, path, True, True)[0] != 0:
        return 'other', field(err)
    drc, derr = run(exe, path, False)
    refused = re.search(r"variant is not h0's: CRDT_E", derr) is not None
    if not equal or refused:
        return '(2) B\'s permission', field(err)
    return ('(1) equal clocks' if drc == 0 else 'other'), field(err)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    exe = sys.argv[1]
    counts, sample, total = {}, {}, 0
    fields = {}
    for path in inputs(sys.argv[2:]):
        total += 1
        cls, f = classify(exe, path)
        if cls is None:
            continue
        name = os.path.basename(path)
        print(f'{name}  {cls}  (first field that differs: {f})')
        counts[cls] = counts.get(cls, 0) + 1
        sample.setdefault(cls, name)
        fields.setdefault(cls, {})
        fields[cls][f] = fields[cls].get(f, 0) + 1
    print(f'\n{total} inputs, {total - sum(counts.values())} converge')
    for cls in sorted(counts):
        by = ', '.join(f'{k} {v}' for k, v in
                       sorted(fields[cls].items()))
        print(f'{cls:22} {counts[cls]:4}  e.g. {sample[cls]}  ({by})')
    sys.exit(1 if 'other' in counts or 'crash' in counts else 0)


if __name__ == '__main__':
    main()
