#!/usr/bin/env python3
"""Tables and SVG charts for docs/benchmarks.md, from sol-bench and criterion.

    bench/report.py compare RESULTS.jsonl [--docs DIR]
    bench/report.py beforeafter RESULTS.jsonl
        prints a table of a run made with compare.sh --sol-before: each row's
        median for the sol before the change and after it, after / before,
        and each against the better peer.
        The side-by-side table (medians over rounds, ratios sol / better
        peer) from bench/compare.sh's results, and DIR/benchmarks-compare.svg.
    bench/report.py curves [--criterion DIR] [--docs DIR]
        The trie curves (publish cost against total and matching
        subscriptions) and the codec figures from criterion's estimates, and
        DIR/benchmarks-trie.svg.

Each writes its table into DIR/benchmarks.md between marker comments
(<!-- compare:begin --> ... <!-- compare:end -->, and the same for curves),
so the hand-written analysis around them is kept. Python standard library
only.
"""

import argparse
import json
import os
import statistics
import sys
from html import escape

BROKERS = ["sol", "mosquitto", "rumqttd"]
COLORS = {"sol": "#d95f02", "mosquitto": "#1b9e77", "rumqttd": "#7570b3"}

# id -> (label, metric, higher is better, goal ratio sol / better peer)
ROWS = [
    ("fanin10_q0", "fan-in, 10 pubs, QoS 0, 16 B", "msgs_per_broker_cpu_s", True, 2.0),
    ("fanin10_q1", "fan-in, 10 pubs, QoS 1, 16 B", "msgs_per_broker_cpu_s", True, 2.0),
    ("fanin10_q1_default", "fan-in, 10 pubs, QoS 1, each broker's default window",
     "msgs_per_broker_cpu_s", True, 2.0),
    ("fanout100_q0", "fan-out, 100 subs, QoS 0", "msgs_per_broker_cpu_s", True, 1.5),
    ("fanout1000_q0", "fan-out, 1000 subs, QoS 0", "msgs_per_broker_cpu_s", True, 1.5),
    ("fanout10000_q0", "fan-out, 10 000 subs, QoS 0", "msgs_per_broker_cpu_s", True, 1.5),
    ("fanout100_q1", "fan-out, 100 subs, QoS 1", "msgs_per_broker_cpu_s", True, 1.5),
    ("pairs100_q0", "pairs, 100, QoS 0", "msgs_per_broker_cpu_s", True, 2.0),
    ("pairs100_q1", "pairs, 100, QoS 1", "msgs_per_broker_cpu_s", True, 2.0),
    ("latency_q1", "latency p99 at 1000 msg/s, QoS 1", "latency_p99_us", False, 1.0),
    ("latency_q1", "latency p50 at 1000 msg/s, QoS 1", "latency_p50_us", False, None),
    ("conns10000", "RSS per idle connection, 10 000 conns", "rss_per_conn_bytes", False, 1.0),
    ("conns10000", "connects per second, 10 000 conns", "connects_per_s", True, None),
    ("conns10000", "connects per broker CPU-second", "connects_per_broker_cpu_s", True, None),
    ("conns10000", "broker sleeps per connect (context)", "broker_sleeps_per_connect", False, None),
    ("conns10000", "load generator CPU per connect (context)", "bench_cpu_us_per_connect", False, None),
    ("conns10000_unix", "connects per second, 10 000 conns, Unix socket", "connects_per_s", True, None),
    ("conns10000_unix", "connects per broker CPU-second, Unix socket", "connects_per_broker_cpu_s", True, None),
]


def fmt(v, metric):
    if v is None:
        return "–"
    if metric.startswith("latency"):
        return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"
    if metric == "broker_sleeps_per_connect":
        return f"{v:.2f}"
    if metric == "bench_cpu_us_per_connect":
        return f"{v:.1f} µs"
    if metric == "rss_per_conn_bytes":
        return f"{v / 1024:.1f} KB" if v >= 10240 else f"{v:.0f} B"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.0f} k"
    return f"{v:.0f}"


def load(path):
    runs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                runs.append(json.loads(line))
    return runs


def medians(runs):
    """(id, broker, metric) -> (median, n, all verified, max bench cpu %)."""
    out = {}
    by = {}
    for r in runs:
        run = r["run"]
        us = run.get("broker_cpu_us_per_connect")
        if us:
            run["connects_per_broker_cpu_s"] = 1e6 / us
        by.setdefault((r["id"], run.get("broker")), []).append(run)
    for (rid, broker), rs in by.items():
        for _, label, metric, _, _ in [x for x in ROWS if x[0] == rid]:
            vals = [x[metric] for x in rs if x.get(metric) is not None and not x.get("failed")]
            verified = all(x.get("verified") for x in rs)
            bench = max((x.get("bench_cpu_pct") or 0 for x in rs), default=0)
            wall = [x["msgs_per_s"] for x in rs if x.get("msgs_per_s")]
            out[(rid, broker, metric)] = {
                "median": statistics.median(vals) if vals else None,
                "values": vals,
                "runs": len(rs),
                "verified": verified,
                "bench_cpu_pct": bench,
                "wall": statistics.median(wall) if wall else None,
            }
    return out


def ratio(sol, peers, higher):
    peers = [p for p in peers if p]
    if not sol or not peers:
        return None
    best = max(peers) if higher else min(peers)
    return sol / best


def compare_table(m):
    lines = [
        "| scenario | sol | mosquitto | rumqttd | sol / better peer | goal |",
        "|---|---|---|---|---|---|",
    ]
    for rid, label, metric, higher, goal in ROWS:
        cells = []
        vals = {}
        for b in BROKERS:
            e = m.get((rid, b, metric))
            v = e["median"] if e else None
            vals[b] = v
            mark = "" if not e or e["verified"] else " ✗"
            cells.append(fmt(v, metric) + mark)
        context = label.endswith("(context)")
        r = None if context else ratio(vals["sol"], [vals["mosquitto"], vals["rumqttd"]], higher)
        better = "higher" if higher else "lower"
        if context:
            goal_s = "context, no goal"
        elif goal is None:
            goal_s = "≥ 50 k/s" if metric.startswith("connects") else ("lower is better" if not higher else "")
        elif higher:
            goal_s = f"≥ {goal:g}×"
        else:
            goal_s = f"≤ {goal:g}× ({better} is better)"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {'–' if r is None else f'{r:.2f}×'} | {goal_s} |")
    lines.append("")
    lines.append("Wall-clock context (medians; the bench's own CPU as % of the run, highest seen):")
    lines.append("")
    lines.append("| scenario | " + " | ".join(f"{b} msgs/s (bench CPU)" for b in BROKERS) + " |")
    lines.append("|---|" + "---|" * len(BROKERS))
    for rid, label, metric, _, _ in ROWS:
        if metric != "msgs_per_broker_cpu_s":
            continue
        cells = []
        for b in BROKERS:
            e = m.get((rid, b, metric))
            if not e or e["wall"] is None:
                cells.append("–")
            else:
                cells.append(f"{fmt(e['wall'], metric)} ({e['bench_cpu_pct']:.0f} %)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Every round's value, for the spread (" + ", ".join(BROKERS) + "):")
    lines.append("")
    for rid, label, metric, _, _ in ROWS:
        parts = []
        for b in BROKERS:
            e = m.get((rid, b, metric))
            parts.append(b + " " + (" / ".join(fmt(v, metric) for v in e["values"]) if e else "–"))
        lines.append(f"- {label}: " + "; ".join(parts))
    return "\n".join(lines)


def bar_svg(title, rows, note):
    """rows: [(label, {series: value}, higher_is_better, formatter)]. Each
    row's bars are scaled to that row's largest value."""
    series = BROKERS
    bar_h, gap, left, width = 14, 12, 420, 400
    row_h = bar_h * len(series) + gap
    height = 60 + row_h * len(rows) + 30
    total_w = left + width + 110
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{total_w}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="15" font-weight="bold">{escape(title)}</text>',
        f'<text x="10" y="38" fill="#555">{escape(note)}</text>',
    ]
    x = left
    for s in series:
        out.append(f'<rect x="{x}" y="46" width="10" height="10" fill="{COLORS[s]}"/>')
        out.append(f'<text x="{x + 14}" y="55">{s}</text>')
        x += 100
    y = 66
    for label, vals, higher, formatter in rows:
        present = [v for v in vals.values() if v]
        top = max(present) if present else 1
        out.append(
            f'<text x="{left - 8}" y="{y + row_h / 2}" text-anchor="end">{escape(label)}'
            f'{"" if higher else " (lower is better)"}</text>'
        )
        for i, s in enumerate(series):
            v = vals.get(s)
            by = y + i * bar_h
            w = 0 if not v else max(1, width * v / top)
            out.append(f'<rect x="{left}" y="{by}" width="{w:.1f}" height="{bar_h - 2}" fill="{COLORS[s]}"/>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{by + bar_h - 4}">{escape(formatter(v))}</text>')
        y += row_h
    out.append("</svg>")
    return "\n".join(out) + "\n"


def replace_section(path, name, body):
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def compare(args):
    runs = load(args.results)
    m = medians(runs)
    table = compare_table(m)
    rows = []
    for rid, label, metric, higher, _ in ROWS:
        if label.endswith("(context)"):
            continue
        vals = {b: (m.get((rid, b, metric)) or {}).get("median") for b in BROKERS}
        rows.append((label, vals, higher, lambda v, metric=metric: fmt(v, metric)))
    svg = bar_svg(
        "sol, mosquitto, rumqttd side by side (medians of the rounds)",
        rows,
        "Throughput rows are messages per broker CPU-second. Each row is scaled to its largest value.",
    )
    os.makedirs(args.docs, exist_ok=True)
    with open(os.path.join(args.docs, "benchmarks-compare.svg"), "w") as f:
        f.write(svg)
    replace_section(os.path.join(args.docs, "benchmarks.md"), "compare", table)
    print(table)


def estimate(crit, group, param):
    path = os.path.join(crit, group, str(param), "new", "estimates.json")
    try:
        with open(path) as f:
            e = json.load(f)
    except OSError:
        return None
    return e["mean"]["point_estimate"]


def line_svg(title, curves, xlabel, ylabel):
    """curves: [(name, color, [(x, y_ns)])], log-log axes."""
    import math

    w, h, l, r, t, b = 660, 360, 70, 50, 40, 50
    xs = [x for _, _, pts in curves for x, _ in pts]
    ys = [y for _, _, pts in curves for _, y in pts]
    x0, x1 = math.log10(min(xs)), math.log10(max(xs))
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    if y1 == y0:
        y1 += 1

    def px(x):
        return l + (math.log10(x) - x0) / max(x1 - x0, 1e-9) * (w - l - r)

    def py(y):
        return h - b - (math.log10(y) - y0) / (y1 - y0) * (h - t - b)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="10" y="20" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for e in range(y0, y1 + 1):
        y = py(10**e)
        label = f"{10**e / 1000:g} µs" if e >= 3 else f"{10**e:g} ns"
        out.append(f'<line x1="{l}" y1="{y:.1f}" x2="{w - r}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{l - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for e in range(int(x0), int(math.ceil(x1)) + 1):
        x = px(10**e)
        out.append(f'<line x1="{x:.1f}" y1="{t}" x2="{x:.1f}" y2="{h - b}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{h - b + 16}" text-anchor="middle">{10**e:,}</text>')
    out.append(f'<text x="{(l + w - r) / 2}" y="{h - 12}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{(t + h - b) / 2}" transform="rotate(-90 14 {(t + h - b) / 2})" text-anchor="middle">{escape(ylabel)}</text>')
    for i, (name, color, pts) in enumerate(curves):
        d = " ".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for j, (x, y) in enumerate(pts))
        out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        out.append(f'<rect x="{l + 10}" y="{t + 6 + 16 * i}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{l + 24}" y="{t + 15 + 16 * i}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def ns(v):
    if v is None:
        return "–"
    return f"{v / 1000:.2f} µs" if v >= 1000 else f"{v:.1f} ns"


def curves(args):
    crit = args.criterion
    total = [(n, estimate(crit, "trie_total_subscriptions", n)) for n in [1, 10, 100, 1000, 10000, 100000, 1000000]]
    total = [(n, v) for n, v in total if v is not None]
    matching = [(k, estimate(crit, "trie_matching_subscribers", k)) for k in [1, 10, 100, 1000, 10000]]
    matching = [(k, v) for k, v in matching if v is not None]
    if not total and not matching:
        sys.exit(f"no criterion results under {crit}: run cargo bench --bench trie first")
    lines = ["Publish cost in the trie (`for_each_match`, criterion mean):", ""]
    lines.append("| total subscriptions (1 matching) | time per publish |")
    lines.append("|---|---|")
    lines += [f"| {n:,} | {ns(v)} |" for n, v in total]
    lines.append("")
    lines.append("| matching subscribers | time per publish | per subscriber |")
    lines.append("|---|---|---|")
    lines += [f"| {k:,} | {ns(v)} | {ns(v / k)} |" for k, v in matching]
    codec = []
    for group, names in [
        ("decode", ["publish_qos0_16B", "publish_qos0_16B_topic_changes", "publish_qos1_16B", "publish_qos1_1KiB", "puback", "subscribe_1_filter"]),
        ("encode", ["publish_qos0_16B", "publish_qos1_16B", "publish_qos1_1KiB", "puback"]),
        ("fanout_100_encode", ["encode_per_subscriber", "encode_once_copy_bytes", "shared_publish_qos1_patch_id"]),
    ]:
        for n in names:
            v = estimate(crit, group, n)
            if v is None:
                continue
            per = {"decode": 1000, "fanout_100_encode": 100}.get(group, 1)
            codec.append(f"| {group} | {n} | {ns(v / per)} |")
    if codec:
        lines += ["", "Codec (criterion mean per packet; decode runs over bursts of 1000, fan-out over 100 subscribers):", ""]
        lines += ["| group | case | time per packet |", "|---|---|---|"] + codec
    table = "\n".join(lines)
    curves_ = []
    if total:
        curves_.append(("total subscriptions, 1 matching", "#d95f02", total))
    if matching:
        curves_.append(("matching subscribers", "#1b9e77", matching))
    svg = line_svg("sol trie: cost of routing one publish", curves_, "subscriptions (log)", "time per publish (log)")
    os.makedirs(args.docs, exist_ok=True)
    with open(os.path.join(args.docs, "benchmarks-trie.svg"), "w") as f:
        f.write(svg)
    replace_section(os.path.join(args.docs, "benchmarks.md"), "curves", table)
    print(table)


def beforeafter(args):
    m = medians(load(args.results))
    lines = [
        "| scenario | sol before | sol after | after / before | mosquitto | rumqttd "
        "| before / better peer | after / better peer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rid, label, metric, higher, _ in ROWS:
        if label.endswith("(context)"):
            continue
        vals = {}
        cells = {}
        for b in ["sol-before", "sol", "mosquitto", "rumqttd"]:
            e = m.get((rid, b, metric))
            vals[b] = e["median"] if e else None
            mark = "" if not e or e["verified"] else " ✗"
            cells[b] = fmt(vals[b], metric) + mark
        if vals["sol"] is None and vals["sol-before"] is None:
            continue
        change = vals["sol"] / vals["sol-before"] if vals["sol"] and vals["sol-before"] else None
        peers = [vals["mosquitto"], vals["rumqttd"]]
        r_before = ratio(vals["sol-before"], peers, higher)
        r_after = ratio(vals["sol"], peers, higher)
        show = lambda r: "–" if r is None else f"{r:.2f}×"
        lines.append(
            f"| {label} | {cells['sol-before']} | {cells['sol']} | {show(change)} | "
            f"{cells['mosquitto']} | {cells['rumqttd']} | {show(r_before)} | {show(r_after)} |"
        )
    print("\n".join(lines))


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("results")
    c.add_argument("--docs", default=os.path.join(root, "docs"))
    b = sub.add_parser("beforeafter")
    b.add_argument("results")
    k = sub.add_parser("curves")
    k.add_argument("--criterion", default=os.path.join(root, "target", "criterion"))
    k.add_argument("--docs", default=os.path.join(root, "docs"))
    a = p.parse_args()
    {"compare": compare, "curves": curves, "beforeafter": beforeafter}[a.cmd](a)


if __name__ == "__main__":
    main()
