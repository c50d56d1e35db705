#!/usr/bin/env python3
"""The federation table of tuning/S2S.md from compare.sh's raw results.

    summarize_s2s.py RESULTS.jsonl [RESULTS.jsonl ...]

For every server: medians (min–max, n) over the runs of chat-max-s2s (both servers' CPU per
relayed message, each side's, throughput, steal) and chat-1000-s2s (p50, p99, CPU), and the
errors seen in any run.
"""
import json
import statistics
import sys

SERVERS = ["xmppd", "prosody", "ejabberd"]


def get(r, path):
    v = r
    for p in path.split("."):
        if not isinstance(v, dict) or v.get(p) is None:
            return None
        v = v[p]
    return float(v)


def cell(rows, path, digits=1):
    vals = [v for v in (get(r, path) for r in rows) if v is not None]
    if not vals:
        return "–"
    m = statistics.median(vals)
    f = f"{{:.{digits}f}}"
    if len(vals) == 1:
        return f.format(m)
    return f"{f.format(m)} ({f.format(min(vals))}–{f.format(max(vals))}, {len(vals)})"


def main():
    runs = {}
    for path in sys.argv[1:]:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                row = json.loads(line)
                if not row["case"].endswith("-s2s") or "result" not in row:
                    continue
                runs.setdefault((row["case"], row["server"]), []).append(row["result"])
    servers = [s for s in SERVERS if any(k[1] == s for k in runs)]
    servers += sorted({s for _, s in runs} - set(servers))
    cols = [
        ("chat-max-s2s", "server_cpu_us_per_op", "CPU/msg, both servers (µs)", 2),
        ("chat-max-s2s", "sender_cpu_us_per_op", "sender side (µs)", 2),
        ("chat-max-s2s", "peer_cpu_us_per_op", "receiver side (µs)", 2),
        ("chat-max-s2s", "throughput_per_s", "saturation (msg/s)", 0),
        ("chat-max-s2s", "server_cpu_pct", "both servers' CPU (% of a core)", 0),
        ("chat-max-s2s", "steal_pct", "steal (%)", 1),
        ("chat-1000-s2s", "latency_us.p50", "p50 at 1,000/s (µs)", 0),
        ("chat-1000-s2s", "latency_us.p99", "p99 at 1,000/s (µs)", 0),
        ("chat-1000-s2s", "server_cpu_us_per_op", "CPU/msg at 1,000/s, both (µs)", 1),
        ("chat-1000-s2s", "steal_pct", "steal at 1,000/s (%)", 1),
    ]
    print("| figure | " + " | ".join(f"{s} median (min–max, n)" for s in servers) + " |")
    print("|---|" + "---|" * len(servers))
    for case, path, label, digits in cols:
        print(f"| {label} | " + " | ".join(
            cell(runs.get((case, s), []), path, digits) for s in servers) + " |")
    errs = []
    for (case, s), rows in sorted(runs.items()):
        e = [int(r.get("errors") or 0) for r in rows]
        if any(e):
            errs.append(f"{s} {case}: errors per run {e}")
    print()
    print("\n".join(errs) if errs else "no errors in any run")


if __name__ == "__main__":
    main()
