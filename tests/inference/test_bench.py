"""`python -m inference bench` writes the documented JSON fields (timings are not asserted)."""
import json

from inference.cli import main


def test_bench_cli_writes_cases_with_documented_fields(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--cases", "text-encode", "--runs", "2", "--warmup", "0",
                 "--compare", "diffusers", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device_name"] and report["quick"] is True
    (case,) = report["cases"]
    for field in ("name", "device", "dtype", "resolution", "steps", "median_ms", "p90_ms",
                  "diffusers_median_ms", "ratio_vs_diffusers"):
        assert field in case
    assert case["runs"] == 2 and case["median_ms"] > 0
    assert abs(case["ratio_vs_diffusers"] - case["diffusers_median_ms"] / case["median_ms"]) < 1e-9


def test_bench_rejects_bad_runs(tmp_path, capsys):
    assert main(["bench", "--runs", "0", "--json", str(tmp_path / "x.json")]) == 2
    assert "--runs 0" in capsys.readouterr().err


def test_bench_lora_case_times_the_preview_with_and_without_a_lora(tmp_path, capsys):
    out = tmp_path / "lora.json"
    assert main(["bench", "--cases", "house-preview-lora", "--runs", "2", "--warmup", "0", "--json", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    assert case["name"] == "house-preview-lora" and case["median_ms"] > 0
    assert "without a LoRA" in case["note"] and "weight changing every frame" in case["note"]
