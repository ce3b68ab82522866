"""`make bench-micro` compares each kernel's ratio to a reference measured in the same run: a
machine twice as slow passes, one kernel twice as slow against the same reference fails."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import compare_micro  # noqa: E402


def run_file(tmp_path, times, name="run.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"machine_info": {"cpu": {"brand_raw": "test"}},
                                "benchmarks": [{"name": k, "stats": {"min": v}} for k, v in times.items()]}))
    return str(path)


def test_a_slower_machine_passes_and_a_slower_kernel_fails(tmp_path, capsys):
    here = {"test_reference_aes_ctr_4mib": 1e-3, "test_masking": 10e-3, "test_shamir": 2e-3}
    baseline = str(tmp_path / "baseline.json")
    assert compare_micro.main([run_file(tmp_path, here), "--baseline", baseline, "--save"]) == 0
    slower_machine = {name: 2.5 * seconds for name, seconds in here.items()}
    assert compare_micro.main([run_file(tmp_path, slower_machine), "--baseline", baseline]) == 0
    slower_kernel = dict(here, test_masking=20e-3)
    assert compare_micro.main([run_file(tmp_path, slower_kernel), "--baseline", baseline]) == 1
    assert "test_masking" in capsys.readouterr().out.split("SLOWER")[0].splitlines()[-1]
