"""Warp-state samples of an ncu source page (SASS, --csv): the share of each stall reason and of
each opcode (with its warp-instructions executed), then the instructions with the most samples
and their leading stall reasons. Usage: stall_top.py CSV [N=40]"""
import collections
import csv
import sys


def num(x):
    try:
        return float(x.replace(",", ""))
    except ValueError:
        return 0.0


def main(path, n):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head = next((i for i, r in enumerate(rows) if "Source" in r), None)
    if head is None:
        print("no header found; first lines:")
        for r in rows[:5]:
            print(r)
        return
    cols = rows[head]
    body = [r for r in rows[head + 1:] if len(r) == len(cols)]
    if "Warp Stall Sampling (All Samples)" not in cols:
        print("no sample column; columns:", " | ".join(cols))
        return
    src = cols.index("Source")
    total = cols.index("Warp Stall Sampling (All Samples)")
    executed = cols.index("Instructions Executed") if "Instructions Executed" in cols else None
    reasons = [i for i, c in enumerate(cols) if c.startswith("stall_") and "Not Issued" not in c]
    all_samples = sum(num(r[total]) for r in body) or 1.0
    print(f"instructions: {len(body)}, samples: {all_samples:.0f}")

    print("stall reasons (share of all samples):")
    by_reason = sorted(((sum(num(r[i]) for r in body), cols[i]) for i in reasons), reverse=True)
    for v, c in by_reason[:12]:
        print(f"  {c:28s} {100 * v / all_samples:5.1f} %")

    print("opcodes (share of samples, warp-instructions executed):")
    samples, count = collections.Counter(), collections.Counter()
    for r in body:
        words = [w for w in r[src].split() if not w.startswith("@")]
        op = words[0].split(".")[0] if words else "?"
        samples[op] += num(r[total])
        if executed is not None:
            count[op] += num(r[executed])
    for op, v in samples.most_common(18):
        print(f"  {op:14s} {100 * v / all_samples:5.1f} %  {count[op]:.3g}")

    print(f"top {n} instructions:")
    for r in sorted(body, key=lambda r: -num(r[total]))[:n]:
        top = sorted(((num(r[i]), cols[i]) for i in reasons if num(r[i]) > 0), reverse=True)[:3]
        why = ", ".join(f"{c}={v:.0f}" for v, c in top)
        print(f"{100 * num(r[total]) / all_samples:5.1f} %  {r[src][:70]:70s}  {why}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 40)
