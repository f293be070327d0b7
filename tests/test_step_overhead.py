"""bench_step_overhead on the CPU: the --tiny run end to end (both step paths, aligned and
unaligned text, same output, the table)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_step_overhead  # noqa: E402


def test_bench_step_overhead_tiny_cpu(tmp_path, capsys):
    csv = tmp_path / "overhead.csv"
    rows = bench_step_overhead.main(["--tiny", "--legacy", "--reps", "2", "--warmup", "1", "--csv", str(csv)])
    assert [(r["preset"], r["path"]) for r in rows] == [("tiny", "lean"), ("tiny", "legacy"),
                                                        ("tiny-text37", "lean"), ("tiny-text37", "legacy")]
    assert all(r["same_out"] == "True" for r in rows)  # the lean step gives the legacy step's output
    # tiny's text starts on a block boundary (one call); tiny-text37's does not (a text call)
    assert rows[0]["text_ms"] == 0 and rows[2]["text_ms"] > 0
    for r in rows:
        assert r["step_ms"] > 0 and r["attn_ms"] > 0
        assert abs(r["overhead_ms"] - (r["step_ms"] - r["attn_ms"])) < 1e-9
    out = capsys.readouterr().out
    assert "overhead_pct" in out and "tiny-text37" in out
    assert csv.read_text().splitlines()[0].startswith("preset,path,step_ms")
