#!/usr/bin/env python3
"""Turn the bench's --json output into the plots of docs/performance.md.

    ./build-rel/bench/bench_chat --scaling --floor build-rel/bench/floor \
        --json scaling.json
    ./build-rel/bench/bench_chat --n 100000 --runs 3 \
        --floor build-rel/bench/floor --json main.json
    python3 bench/plot.py scaling.json main.json ../shared/peers/RESULTS.md \
        docs/plots

Needs gnuplot (Debian: gnuplot-nox) and only the Python standard library.
Writes docs/plots/time.svg (ns per message against N, log-log: in-order,
shuffled, reversed delivery, load, and the floor, with the peers' figures
at the sizes they ran) and docs/plots/bytes.svg (snapshot and memory bytes
per message beside the peers' and the targets).
"""
import json
import os
import re
import subprocess
import sys
import tempfile

PEERS = ("collabs", "yjs", "loro", "automerge")


def peer_tables(path):
    """{N: {metric: {peer: text}}} from the RESULTS.md tables."""
    tables, n, cols = {}, None, None
    for line in open(path, encoding="utf-8"):
        m = re.match(r"## Results: N = ([\d,]+)", line)
        if m:
            n = int(m.group(1).replace(",", ""))
            tables[n] = {}
            cols = None
            continue
        if n is None or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0].startswith("metric"):
            cols = cells[1:]
        elif cols and not set(cells[0]) <= set("-: "):
            tables[n][cells[0]] = dict(zip(cols, cells[1:]))
    return tables


def number(text):
    """A plain figure ("161,115", "93.0"); None for "not at N" and such."""
    m = re.fullmatch(r"[\d,]+(\.\d+)?", text or "")
    return float(text.replace(",", "")) if m else None


def main(argv):
    if len(argv) != 5:
        sys.exit(__doc__)
    scaling, main_run = json.load(open(argv[1])), json.load(open(argv[2]))
    peers, out = peer_tables(argv[3]), argv[4]
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp()

    sizes = sorted({int(k.split()[1]) for k in scaling
                    if k.startswith("scale ")})
    series = ["in-order ns", "shuffled ns", "reversed ns", "load ns",
              "floor ns"]
    with open(os.path.join(tmp, "ours.dat"), "w") as f:
        for n in sizes:
            f.write(" ".join([str(n)] + [str(scaling[f"scale {n} {s}"])
                                         for s in series]) + "\n")
    # Peers: in-order apply (1e9 / rate) and load (ms / N) at each N.
    with open(os.path.join(tmp, "peers.dat"), "w") as f:
        for p in PEERS:
            for n, t in sorted(peers.items()):
                rate = number(t.get("W1 apply in order at B, updates/s",
                                    {}).get(p))
                load = number(t.get("W5 load into fresh replica (+read "
                                    "last msg), ms", {}).get(p))
                if rate:
                    f.write(f"{n} {1e9 / rate} {load * 1e6 / n if load else 'NaN'}"
                            f"  # {p}\n")
            f.write("\n\n")
    style = ("set terminal svg size 900,560 dynamic font 'sans,12'\n"
             "set grid\nset key outside right\n")
    plot = [
        style,
        f"set output '{os.path.join(out, 'time.svg')}'\n",
        "set logscale xy\nset xlabel 'messages (N)'\n",
        "set ylabel 'ns per message'\n",
        "set title 'libcrdt: time per message against N (one run, with "
        "the floor)'\n",
        f"d = '{os.path.join(tmp, 'ours.dat')}'\n",
        f"p = '{os.path.join(tmp, 'peers.dat')}'\n",
        "plot d u 1:2 w lp lw 2 t 'in-order apply', "
        "d u 1:3 w lp lw 2 t 'shuffled', d u 1:4 w lp lw 2 t 'reversed', "
        "d u 1:5 w lp lw 2 t 'load (snapshot)', "
        "d u 1:6 w l dt 2 lw 2 t 'floor (floor.c)'",
    ]
    for i, p in enumerate(PEERS):
        plot.append(f", p index {i} u 1:2 w p pt {4 + 2 * i} ps 1.5 "
                    f"t '{p} in-order'")
    plot.append("\n")

    # Bytes per message at the main run's N, beside the peers' at theirs.
    def ours(key):
        v = main_run.get(key)
        return float(v) if v not in (None, "") else float("nan")
    n_main = int(float(main_run.get("N (messages / sets)", 0)))
    rows = [("libcrdt", ours("W5 snapshot bytes per message"),
             ours("W6 allocator live bytes / message"))]
    big = max(peers) if peers else None
    for p in PEERS:
        t = peers.get(big, {})
        snap = number(t.get("W5 snapshot bytes per message", {}).get(p))
        mem = number(t.get("W6 rss bytes / message", {}).get(p))
        if snap or mem:
            rows.append((p, snap or float("nan"), mem or float("nan")))
    with open(os.path.join(tmp, "bytes.dat"), "w") as f:
        for name, snap, mem in rows:
            f.write(f"{name} {snap} {mem}\n")
    plot += [
        "reset\n", style,
        f"set output '{os.path.join(out, 'bytes.svg')}'\n",
        "set style data histograms\nset style histogram clustered gap 1\n",
        "set style fill solid 0.8 border -1\nset boxwidth 0.9\n",
        "set ylabel 'bytes per message'\nset yrange [0:*]\n",
        f"set title 'bytes per message (libcrdt N = {n_main}: allocator "
        f"live; peers N = {big}: rss); targets 50 and 120'\n",
        "set arrow 1 from graph 0, first 50 to graph 1, first 50 nohead "
        "dt 2 lw 2\n",
        "set arrow 2 from graph 0, first 120 to graph 1, first 120 nohead "
        "dt 3 lw 2\n",
        f"plot '{os.path.join(tmp, 'bytes.dat')}' u 2:xtic(1) "
        "t 'snapshot', '' u 3 t 'memory'\n",
    ]
    script = os.path.join(tmp, "plot.gp")
    with open(script, "w") as f:
        f.write("".join(plot))
    subprocess.run(["gnuplot", script], check=True)
    print(f"wrote {out}/time.svg and {out}/bytes.svg")


if __name__ == "__main__":
    main(sys.argv)
