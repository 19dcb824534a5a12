"""`bench --quick --compare diffusers` for the FLUX cases: diffusers' FluxImg2ImgPipeline /
FluxPipeline run the same tiny random model in the same run; both timings, the ratio and the
largest pixel difference are in the JSON and the log lines, within a minute on a CPU."""
from __future__ import annotations

import json
import re
import time

from inference.cli import main

CASES = ("flux-schnell-preview", "flux-dev-final")


def test_quick_flux_cases_compare_with_diffusers(tmp_path, capsys):
    out = tmp_path / "bench.json"
    started = time.monotonic()
    code = main(["bench", "--quick", "--compare", "diffusers", "--cases", ",".join(CASES), "--runs", "1",
                 "--warmup", "0", "--json", str(out)])
    elapsed = time.monotonic() - started
    assert code == 0
    report = json.loads(out.read_text())
    assert [case["name"] for case in report["cases"]] == list(CASES) and report["skipped"] == []
    for case in report["cases"]:
        assert case["median_ms"] > 0 and case["diffusers_median_ms"] > 0
        assert abs(case["ratio_vs_diffusers"] - case["diffusers_median_ms"] / case["median_ms"]) < 1e-9
        assert 0 <= case["max_pixel_diff"] <= 2, case  # the same model, seed and settings: same image
    lines = capsys.readouterr()
    text = lines.out + lines.err
    for name in CASES:
        line = re.search(rf"bench: {name}: median [0-9.]+ ms, p90 [0-9.]+ ms, diffusers [0-9.]+ ms "
                         rf"\(×[0-9.]+\), max diff [0-2]/255", text)
        assert line, text[-2000:]
    assert elapsed < 60, f"{elapsed:.0f} s"
