"""bench_e2e on the CPU: model specs against the preset table, the composed 50-step figure, and a
tiny run of the benchmark end to end (output structure, totals, phase counts of the real loop)."""
import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_e2e  # noqa: E402
from adaspa_ext.config import AdaSpaConfig  # noqa: E402
from adaspa_ext.integrations import diffusers as AD  # noqa: E402
from adaspa_ext.presets import PRESETS  # noqa: E402

MODEL_PRESETS = [n for n, p in PRESETS.items() if p.model is not None]


@pytest.mark.parametrize("name", MODEL_PRESETS)
def test_model_spec_matches_the_preset_shape(name):
    """The full-size model (built on the meta device: no memory) has the preset's heads, head dim,
    layers, tokens, text position and batch."""
    p = PRESETS[name]
    spec = p.model
    import diffusers
    with torch.device("meta"):
        model = getattr(diffusers, spec.cls)(**spec.config)
    fam = AD.FAMILIES[spec.cls]
    attns = AD._attention_modules(model, fam)
    assert len(attns) == p.layers
    assert {a.heads for a in attns} == {p.heads}
    assert model.config.attention_head_dim == p.head_dim
    assert bench_e2e.video_tokens(spec) == p.video_tokens
    assert bench_e2e.attention_tokens(spec) == p.tokens
    assert (fam.text_first if fam.text_first is not None else False) == p.text_first
    assert p.batch == (2 if spec.cfg == "batched" else 1)
    assert len(spec.text) == len(spec.text_valid) and all(v <= n for (n, _), v in zip(spec.text, spec.text_valid))
    sched = bench_e2e.make_scheduler(spec)
    ts = bench_e2e.set_timesteps(sched, spec, 50, "cpu")
    assert len(ts) == 50 and bool((ts[1:] < ts[:-1]).all())


def test_phase_counts_and_compose():
    counts = bench_e2e.phase_counts(AdaSpaConfig())
    assert counts == {"dense": 10, "search_fused": 1, "sparse": 38, "search_cached": 1}
    step_ms = {"dense": 10.0, "search_fused": 15.0, "sparse": 4.0, "search_cached": 12.0}
    assert bench_e2e.compose(step_ms, counts) == 10 * 10 + 15 + 38 * 4 + 12
    one = bench_e2e.phase_counts(AdaSpaConfig(num_steps=8, warmup_steps=2, search_steps=(2,)))
    assert one == {"dense": 2, "search_fused": 1, "sparse": 5, "search_cached": 0}
    cfg = bench_e2e.schedule_config(6, 0.8)
    assert (cfg.warmup_steps, cfg.search_steps) == (1, (1, 4))
    assert bench_e2e.schedule_config(50, 0.8) == AdaSpaConfig()
    assert bench_e2e.schedule_config(50, 0.8, cache_lse=False) == AdaSpaConfig(cache_lse=False)
    assert bench_e2e.phase_counts(AdaSpaConfig(), lse_cached=False) == \
        {"dense": 10, "search_fused": 2, "sparse": 38, "search_cached": 0}


def check_results(doc, models, steps, full_loop):
    assert set(doc) == {"header", "results"} and doc["header"]["diffusers"]
    rows = doc["results"]
    assert [r["model"] for r in rows] == models
    for r in rows:
        counts = r["phase_counts"]
        assert sum(counts.values()) == steps == r["steps"]
        sm = r["step_ms"]
        cached = {"search_cached"} if r["lse_cached"] else set()
        assert set(sm) == {"dense_default", "dense_best", "dense", "search_fused", "sparse"} | cached
        assert counts == bench_e2e.phase_counts(bench_e2e.schedule_config(steps, r["sparsity"]), r["lse_cached"])
        assert all(v > 0 for v in sm.values()) and sm["dense_best"] == sm["dense"]
        composed = sum(n * sm[p] for p, n in counts.items())
        assert r["total_s"]["adaspa"] == pytest.approx(composed / 1e3)
        assert r["total_s"]["dense_best"] == pytest.approx(steps * sm["dense_best"] / 1e3)
        assert r["total_s"]["dense_default"] == pytest.approx(steps * sm["dense_default"] / 1e3)
        assert r["speedup"]["vs_best"] == pytest.approx(r["total_s"]["dense_best"] / r["total_s"]["adaspa"])
        assert set(r["attn_ms"]) == set(bench_e2e.PHASES) and 0 < r["attn_share_dense"] < 1
        assert r["finite"] and r["cache_gib"] > 0 and 0 < r["density"] <= 1
        assert r["forwards_per_step"] == (2 if PRESETS[r["model"]].model.cfg == "separate" else 1)
        if r["model"] in full_loop:
            fl = r["full_loop"]
            # the real loop (steps from the scheduler) ran exactly the composed phase counts
            assert fl["counts_match"] and fl["phase_counts"] == counts and len(fl["step_ms"]) == steps
            assert fl["composed_s"] == pytest.approx(r["total_s"]["adaspa"])
        else:
            assert "full_loop" not in r


def test_bench_e2e_tiny_cpu(tmp_path, capsys):
    models = ["hunyuan1.5-720p", "wan2.2-ti2v-5b-720p"]
    out = tmp_path / "e2e.json"
    bench_e2e.main(["--tiny", "--models", *models, "--steps", "6", "--full-loop", "hunyuan1.5-720p",
                    "--json", str(out), "--device", "cpu"])
    check_results(json.loads(out.read_text()), models, 6, ["hunyuan1.5-720p"])
    table = capsys.readouterr().out.rstrip().split("\n\n")[-1]  # the table is printed last
    assert table.lstrip().startswith("model") and all(m in table for m in models)


@pytest.mark.slow
def test_bench_e2e_tiny_cpu_every_model_and_compile(tmp_path):
    out = tmp_path / "e2e.json"
    bench_e2e.main(["--tiny", "--models", *MODEL_PRESETS, "--steps", "6", "--full-loop", *MODEL_PRESETS,
                    "--json", str(out), "--device", "cpu"])
    check_results(json.loads(out.read_text()), MODEL_PRESETS, 6, MODEL_PRESETS)
    torch._dynamo.reset()
    bench_e2e.main(["--tiny", "--models", "wan1.3b-480p", "--steps", "6", "--compile-only",
                    "--compile-backend", "aot_eager", "--json", str(out), "--device", "cpu"])
    doc = json.loads(out.read_text())
    assert [r["mode"] for r in doc["results"]] == ["compile"] and doc["results"][0]["attn_ms"] is None
    torch._dynamo.reset()
