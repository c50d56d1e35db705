#!/usr/bin/env python3
"""Summarize tuning/compare.sh results: one table, case x server, median and min-max of the
headline figure of each case, and the ratio xmppd/peer (below 1 means xmppd is better, for
every figure here is lower-is-better).

usage: summarize.py RESULTS.jsonl        the table (Markdown)
       summarize.py --one CASE < LINE     one run's headline, for progress output
       summarize.py --paired [--max-steal P] RESULTS.jsonl... CASE_A CASE_B
                                          A/B pairs (same file, server and run number; from
                                          compare.sh --interleave), pooled over the files:
                                          every pair's server CPU per op, latency p50/p99,
                                          hypervisor steal, the median difference, and the
                                          mean difference with its 95 % confidence interval
                                          and the sign test. --max-steal P leaves out every
                                          pair in which either run had more than P % steal
                                          (the host ran someone else on our CPUs: such a
                                          run's CPU figures measure the host, not the server)
                                          and says how many it left out.

Each line of RESULTS.jsonl is {"case", "server", "run", "result": <xmppd-loadtest --json line>},
or {"case", "server", "run", "unsupported": "<the generator's message>"} for a run the generator
ended with exit status 3 (the server lacks the feature: MUC, XEP-0191 blocking, PEP, BOSH); such a case
shows as "not supported" rather than as a missing figure.
"""
import json
import math
import statistics
import sys

# case -> (headline label, how to read it from a result, unit)
HEADLINE = {
    "chat-max": ("server CPU per delivered 1:1 message at saturation", "server_cpu_us_per_op", "µs"),
    "chat-max-block20": (
        "server CPU per delivered 1:1 message at saturation, 20-entry blocklists",
        "server_cpu_us_per_op",
        "µs",
    ),
    "chat-1000": ("p99 latency, 1:1 chat at a fixed 1,000 msg/s", "latency_us.p99", "ms"),
    "login-plain": ("server CPU per login, SCRAM-SHA-1, plaintext", "server_cpu_us_per_op", "ms"),
    "login-tls": ("server CPU per login, SCRAM-SHA-1, STARTTLS", "server_cpu_us_per_op", "ms"),
    "idle-plain": ("RSS per idle authenticated session, plaintext", "rss_kib_per_session", "KiB"),
    "idle-tls": ("RSS per idle authenticated session, STARTTLS", "rss_kib_per_session", "KiB"),
    "presence": ("server CPU per presence delivery", "server_cpu_us_per_op", "µs"),
    "muc": (
        "server CPU per delivered groupchat stanza at saturation, 10 rooms x 50",
        "server_cpu_us_per_op",
        "µs",
    ),
    "muc-20ps": (
        "p99 latency, groupchat at 20 room messages/s (1,000 deliveries/s)",
        "latency_us.p99",
        "ms",
    ),
    "muc-20ps-spin": (
        "p99 latency, groupchat at 1,000 deliveries/s, generator spinning (--spin)",
        "latency_us.p99",
        "ms",
    ),
    "muc-2shards": (
        "server CPU per delivered groupchat stanza at saturation, 2 shards on one core",
        "server_cpu_us_per_op",
        "µs",
    ),
    "pep": (
        "server CPU per delivered PEP notification at saturation, 200 users x 50 contacts",
        "server_cpu_us_per_op",
        "µs",
    ),
    "chat-max-ws": (
        "server CPU per delivered 1:1 message at saturation, WebSocket",
        "server_cpu_us_per_op",
        "µs",
    ),
    "chat-1000-ws": (
        "p99 latency, 1:1 chat at a fixed 1,000 msg/s, WebSocket",
        "latency_us.p99",
        "ms",
    ),
    "login-ws": ("server CPU per login, SCRAM-SHA-1, WebSocket", "server_cpu_us_per_op", "ms"),
    "idle-ws": ("RSS per idle authenticated session, WebSocket", "rss_kib_per_session", "KiB"),
    "chat-max-bosh": (
        "server CPU per delivered 1:1 message at saturation, BOSH",
        "server_cpu_us_per_op",
        "µs",
    ),
    "chat-1000-bosh": (
        "p99 latency, 1:1 chat at a fixed 1,000 msg/s, BOSH",
        "latency_us.p99",
        "ms",
    ),
    "login-bosh": ("server CPU per login, SCRAM-SHA-1, BOSH", "server_cpu_us_per_op", "ms"),
    "idle-bosh": ("RSS per idle authenticated session, BOSH", "rss_kib_per_session", "KiB"),
}
# Context figures shown beside the headline: (label, key, unit)
CONTEXT = [
    ("throughput", "throughput_per_s", "/s"),
    ("generator CPU/op", "gen_cpu_us_per_op", "µs"),
    ("server CPU", "server_cpu_pct", "%"),
    ("steal", "steal_pct", "%"),
]
SERVERS = ["xmppd", "prosody", "ejabberd"]


def get(result, path):
    v = result
    for part in path.split("."):
        if not isinstance(v, dict) or v.get(part) is None:
            return None
        v = v[part]
    return float(v)


def scale(value, unit):
    # Results carry µs and KiB; milliseconds read better for slow figures.
    return value / 1000.0 if unit == "ms" else value


def fmt(v):
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def one(case):
    result = json.loads(sys.stdin.read())
    label, key, unit = HEADLINE.get(case, (case, "server_cpu_us_per_op", "µs"))
    v = get(result, key)
    extra = ", ".join(
        f"{name} {fmt(get(result, k))}{u}" for name, k, u in CONTEXT if get(result, k) is not None
    )
    head = f"{fmt(scale(v, unit))} {unit}" if v is not None else "no figure"
    errors = result.get("errors") or 0
    print(f"{head} ({extra}{', errors ' + str(errors) if errors else ''})")


def table(path):
    runs = {}
    unsupported = set()
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            row = json.loads(line)
            key = (row["case"], row["server"])
            if "unsupported" in row:
                unsupported.add(key)
                runs.setdefault(key, [])
            else:
                runs.setdefault(key, []).append(row["result"])
    cases = [c for c in HEADLINE if any(k[0] == c for k in runs)]
    cases += sorted({c for c, _ in runs} - set(cases))
    servers = [s for s in SERVERS if any(k[1] == s for k in runs)]
    servers += sorted({s for _, s in runs} - set(servers))

    def missing(case, server):
        return "not supported" if (case, server) in unsupported else "–"
    peers = [s for s in servers if s != "xmppd"]

    head = ["figure", "unit"] + [f"{s} median (min–max, n)" for s in servers]
    if "xmppd" in servers:
        head += [f"xmppd/{p}" for p in peers]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for case in cases:
        label, key, unit = HEADLINE.get(case, (case, "server_cpu_us_per_op", "µs"))
        medians = {}
        cells = [label, unit]
        for s in servers:
            vals = [get(r, key) for r in runs.get((case, s), [])]
            vals = [scale(v, unit) for v in vals if v is not None]
            if not vals:
                cells.append(missing(case, s))
                continue
            medians[s] = statistics.median(vals)
            cells.append(f"{fmt(medians[s])} ({fmt(min(vals))}–{fmt(max(vals))}, {len(vals)})")
        if "xmppd" in servers:
            for p in peers:
                if "xmppd" in medians and medians.get(p):
                    cells.append(f"{medians['xmppd'] / medians[p]:.3g}")
                else:
                    cells.append("–")
        print("| " + " | ".join(cells) + " |")

    print()
    print("Context (medians): throughput, the generator's own CPU per operation (it must stay")
    print("below the server's for the figure to be the server's), server CPU utilisation.")
    print()
    head = ["case"] + servers
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for case in cases:
        cells = [case]
        for s in servers:
            rs = runs.get((case, s), [])
            parts = []
            for name, k, u in CONTEXT:
                vals = [get(r, k) for r in rs]
                vals = [v for v in vals if v is not None]
                if vals:
                    parts.append(f"{fmt(statistics.median(vals))}{u}")
            errors = sum(int(r.get("errors") or 0) for r in rs)
            if errors:
                parts.append(f"errors {errors}")
            cells.append(", ".join(parts) if parts else missing(case, s))
        print("| " + " | ".join(cells) + " |")


# Two-sided 95 % quantiles of Student's t by degrees of freedom (1..30); 1.96 beyond.
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def mean_ci(diffs):
    """Mean of the pairwise differences and the half-width of its 95 % confidence interval
    (t distribution; None for fewer than 2 pairs)."""
    m = statistics.fmean(diffs)
    if len(diffs) < 2:
        return m, None
    df = len(diffs) - 1
    t = T95[df - 1] if df <= len(T95) else 1.96
    return m, t * statistics.stdev(diffs) / len(diffs) ** 0.5


def sign_test(diffs):
    """Exact two-sided sign test p-value for "B − A is as often positive as negative"
    (ties dropped)."""
    pos, neg = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    n = pos + neg
    if n == 0:
        return 1.0
    k = min(pos, neg)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(paths, case_a, case_b, max_steal=None):
    rows = {}
    for fileno, path in enumerate(paths):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    row = json.loads(line)
                    if "result" in row and row["case"] in (case_a, case_b):
                        rows[(row["server"], (fileno, row["run"]), row["case"])] = row
    key = "server_cpu_us_per_op"
    for server in sorted({k[0] for k in rows}):
        pairs = sorted(
            r for (s, r, c) in rows if s == server and c == case_a and (s, r, case_b) in rows
        )
        if not pairs:
            continue
        print(f"{server}: {case_a} (A) vs {case_b} (B), server CPU per op in µs, latency in µs")
        print()
        print("| run | A CPU/op | B CPU/op | B − A | A p50 / p99 | B p50 / p99 | A, B throughput | A, B steal % | load (1/5/15 min) |")
        print("|---|---|---|---|---|---|---|---|---|")
        diffs, va, vb = [], [], []
        stolen = 0
        for r in pairs:
            a, b = rows[(server, r, case_a)], rows[(server, r, case_b)]
            xa, xb = get(a["result"], key), get(b["result"], key)
            if xa is None or xb is None:
                continue
            sa, sb = get(a["result"], "steal_pct"), get(b["result"], "steal_pct")
            if max_steal is not None and any(x is not None and x > max_steal for x in (sa, sb)):
                stolen += 1
                continue
            va.append(xa)
            vb.append(xb)
            diffs.append(xb - xa)

            def lat(row):
                return f"{fmt(get(row['result'], 'latency_us.p50'))} / {fmt(get(row['result'], 'latency_us.p99'))}"

            tput = f"{fmt(get(a['result'], 'throughput_per_s'))}, {fmt(get(b['result'], 'throughput_per_s'))}"
            load = f"{a.get('load', '?')} → {b.get('load', '?')}"
            run = f"{r[0] + 1}.{r[1]}" if len(paths) > 1 else f"{r[1]}"
            steal = f"{fmt(sa)}, {fmt(sb)}"
            print(f"| {run} | {xa:.3f} | {xb:.3f} | {xb - xa:+.3f} | {lat(a)} | {lat(b)} | {tput} | {steal} | {load} |")
        if stolen:
            print()
            print(f"{stolen} pair(s) left out: a run had more than {max_steal} % hypervisor steal")
        if not diffs:
            continue
        ma, mb, md = statistics.median(va), statistics.median(vb), statistics.median(diffs)
        print()
        print(
            f"median A {ma:.3f} µs, median B {mb:.3f} µs; median pairwise B − A {md:+.3f} µs "
            f"({100 * md / ma:+.1f} % of A), range {min(diffs):+.3f} … {max(diffs):+.3f}; "
            f"B > A in {sum(d > 0 for d in diffs)} of {len(diffs)} pairs "
            f"(sign test p = {sign_test(diffs):.2f})"
        )
        m, hw = mean_ci(diffs)
        if hw is not None:
            print(
                f"mean pairwise B − A {m:+.3f} µs ({100 * m / statistics.fmean(va):+.1f} % of A), "
                f"95 % confidence interval {m - hw:+.3f} … {m + hw:+.3f} µs"
            )
        print()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        one(sys.argv[2])
    elif len(sys.argv) >= 5 and sys.argv[1] == "--paired":
        args = sys.argv[2:]
        max_steal = None
        if args[0] == "--max-steal":
            max_steal = float(args[1])
            args = args[2:]
        if len(args) < 3:
            print(__doc__, file=sys.stderr)
            sys.exit(2)
        paired(args[:-2], args[-2], args[-1], max_steal)
    elif len(sys.argv) == 2 and not sys.argv[1].startswith("-"):
        table(sys.argv[1])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
