#!/usr/bin/env python3
"""Summary of tuning/s2s/stream_open.sh's runs.

    open_report.py WORKDIR DELAY_MS SERVER...

Per server: the CPU that opening the streams to one new domain costs each side (median over
the domains, first ping minus second, relay without delay), the first and second ping's time,
the round trips on the first stanza's path ((first − second) with the delay minus the same
without, over 2·delay), and from the relay's log the s2s connections opened per new domain
and the median number of flights (runs of bytes in one direction) on each.
"""
import json
import statistics
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        for line in f:
            if line.startswith("{"):
                return json.loads(line)
    return None


def flights(log_path):
    conns = defaultdict(list)
    opened = {}
    with open(log_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            t, cid, what = float(parts[0]), parts[1], parts[2]
            if what == "open":
                opened[cid] = parts[3]
            elif what in (">", "<"):
                conns[cid].append(what)
    per = {}
    for cid, dirs in conns.items():
        n = 0
        last = None
        for d in dirs:
            if d != last:
                n += 1
                last = d
        per[cid] = n
    return opened, per


def main():
    work, delay = sys.argv[1], float(sys.argv[2])
    print("| server | open CPU A (µs) | open CPU B (µs) | open CPU sum (µs) | first ping (ms) "
          "| second ping (ms) | round trips added (relay delay) | s2s connections per new domain "
          "(to B / to A) | flights per connection (median, to B / to A) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for server in sys.argv[3:]:
        r0 = load(f"{work}/{server}-0.out")
        rd = load(f"{work}/{server}-{delay:g}.out")
        if not r0:
            print(f"| {server} | no result |||||||")
            continue
        s0 = r0["summary"]
        n = s0["targets"]
        rtt = "–"
        if rd:
            sd = rd["summary"]
            extra = statistics.median(
                (a["first"]["ms"] - a["second"]["ms"]) for a in rd["rows"]) - statistics.median(
                (a["first"]["ms"] - a["second"]["ms"]) for a in r0["rows"])
            rtt = f"{extra / (2 * delay):.1f} ({sd['first_ms']:.0f} ms first ping at {delay:g} ms)"
        opened, per = flights(f"{work}/{server}-relay-0.log")
        # Connections that carried nothing (the scripts' own probes that the relay is up)
        # are not counted.
        to_b = [c for c, t in opened.items() if t.startswith("127.48.0.3") and per.get(c)]
        to_a = [c for c, t in opened.items() if t.startswith("127.48.0.2") and per.get(c)]
        fb = statistics.median(per.get(c, 0) for c in to_b) if to_b else 0
        fa = statistics.median(per.get(c, 0) for c in to_a) if to_a else 0
        print(f"| {server} | {s0['open_cpu_a_us']:.0f} | {s0['open_cpu_b_us']:.0f} | "
              f"{s0['open_cpu_sum_us']:.0f} | {s0['first_ms']:.1f} | {s0['second_ms']:.2f} | {rtt} | "
              f"{len(to_b) / n:.1f} / {len(to_a) / n:.1f} | {fb:g} / {fa:g} |")


if __name__ == "__main__":
    main()
