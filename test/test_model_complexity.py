"""``bdc-occ complexity`` reproduces the paper's Table 1 Params/OPs (within 1 %) with its counting rule."""

from __future__ import annotations

import json

import pytest
from test_model_network import CONFIG_DIR

from bdc_occ_ros.cli import main
from bdc_occ_ros.config import load_model_config
from bdc_occ_ros.tools.complexity import model_complexity

# Paper Table 1 (single-frame Params in M, OPs in G; reference §1.1).
PAPER = {"bdc_occ_r50": (26.82, 129.90), "flashocc_r50": (44.74, 248.57), "bisr_r50": (26.79, 129.70)}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_numbers_within_one_percent(name):
    report = model_complexity(load_model_config(CONFIG_DIR / f"{name}.yaml"))
    params_m, ops_g = PAPER[name]
    assert report["params"]["paper"] / 1e6 == pytest.approx(params_m, rel=0.01)
    assert report["ops"]["paper"] / 1e9 == pytest.approx(ops_g, rel=0.01)
    binary = report["params"]["binary"]
    assert report["params"]["bnn"] == report["params"]["paper"] + binary // 32
    assert report["ops"]["bnn"] == report["ops"]["paper"] + report["ops"]["binary"] // 64
    if name == "flashocc_r50":
        assert binary == 0 and report["params"]["total"] == report["params"]["paper"]
    else:
        # The binarized weights as bits (+ one float alpha per output channel) are >= 25x smaller than float32.
        packed_binary = report["storage_bytes"]["packed"] - 4 * (report["params"]["total"] - binary)
        assert 0 < packed_binary * 25 <= 4 * binary


def test_reference_part_counts_of_bdc_t():
    # §10.3: single-frame BDC-T holds 69.17 M binarized weights in total.
    report = model_complexity(load_model_config(CONFIG_DIR / "bdc_occ_r50.yaml"))
    assert report["params"]["binary"] / 1e6 == pytest.approx(69.17, abs=0.01)
    assert report["params"]["total"] / 1e6 == pytest.approx(96.1, abs=0.05)


def test_cli_prints_the_json_schema(capsys):
    assert main(["complexity", "--config", str(CONFIG_DIR / "bdc_occ_edge.yaml"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"params", "ops", "storage_bytes"}
    assert set(report["params"]) >= {"total", "binary", "paper"}
    assert set(report["ops"]) >= {"paper", "bnn"}
    assert set(report["storage_bytes"]) >= {"fp32", "packed"}
    assert all(isinstance(v, int) and v > 0 for section in report.values() for v in section.values())
