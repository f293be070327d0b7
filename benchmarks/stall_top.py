"""Top instructions of an ncu source page (SASS, --csv) by warp-state samples, with the stall
reasons that account for most of each one's samples. Usage: stall_top.py CSV [N=40]"""
import csv
import sys


def main(path, n):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head = next((i for i, r in enumerate(rows) if any("Source" == c or c.startswith("# Address") or c == "Address" for c in r)), None)
    if head is None:
        print("no header found; first lines:")
        for r in rows[:5]:
            print(r)
        return
    cols = rows[head]
    body = [r for r in rows[head + 1:] if len(r) == len(cols)]
    def col(*keys):
        return next((i for i, c in enumerate(cols) if all(k in c for k in keys)), None)
    src = col("Source")
    total = col("Warp Stall Sampling (All")
    if total is None:
        total = col("Sampling", "All")
    stall_cols = [i for i, c in enumerate(cols) if ("stall" in c.lower() or "pcsamp" in c) and i != total
                  and "Not-issued" not in c]
    print("columns:", " | ".join(cols))
    if total is None:
        print(cols)
        return
    def num(x):
        try:
            return float(x.replace(",", ""))
        except ValueError:
            return 0.0
    all_samples = sum(num(r[total]) for r in body) or 1.0
    top = sorted(body, key=lambda r: -num(r[total]))[:n]
    print(f"instructions: {len(body)}, samples: {all_samples:.0f}")
    for r in top:
        reasons = sorted(((num(r[i]), cols[i]) for i in stall_cols if num(r[i]) > 0), reverse=True)[:3]
        why = ", ".join(f"{c.replace('Warp Stall Sampling', '').strip()}={v:.0f}" for v, c in reasons)
        print(f"{100 * num(r[total]) / all_samples:5.1f}%  {r[src][:70]:70s}  {why}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 40)
