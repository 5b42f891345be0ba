"""``bdc-occ bench`` report helpers: the timing loop and the README table (the full run is a benchmark)."""

from __future__ import annotations

import time

import numba
import pytest

from bdc_occ_ros.tools.bench import _median_ms, _memory, _popcount, markdown_table, paired_ratio, timing_report


def test_median_ms_settles_each_callable_before_timing_it() -> None:
    calls: list[str] = []
    _median_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, settle_seconds=0.0)
    # one warm-up each, then per round an untimed and a timed call of the same callable back to back
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3
    calls.clear()
    slow = {"a": lambda: (calls.append("a"), time.sleep(0.002)), "b": lambda: calls.append("b")}
    _median_ms(slow, repeats=1, settle_seconds=0.01)
    # untimed calls repeat until the settle time has passed: a few of the slow one, many of the fast one
    settle_a, settle_b = calls[2:].index("b") - 1, len(calls) - 2 - calls[2:].index("b") - 1
    assert 1 <= settle_a <= 5 and settle_b > settle_a
    calls.clear()
    _median_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2)
    assert calls == ["a", "b"] * 3


def test_markdown_table_groups_layers_and_lists_engines() -> None:
    row = {"kind": "xnor3x3", "shape": "1x32x8x8->32 s1", "torch_ms": 2.0, "bitwise_ms": 0.5, "speedup": 4.0,
           "conv_only_speedup": 5.0}  # fmt: skip
    pointwise = {"kind": "pointwise", "shape": "1x32x8x8->32", "torch_ms": 1.0, "bitwise_ms": 1.0, "speedup": 1.0}
    report = {
        "layers": [{**row, "name": "a.conv3x3"}, {**row, "name": "b.conv3x3"}, {**pointwise, "name": "a.conv1x1_0"}],
        "end_to_end_ms": {"flashocc_torch": 100.0, "bdc_bitwise": 90.0},
        "stages_ms": {"flashocc_torch": {"heads": 10.0}, "bdc_bitwise": {"heads": 8.0}},
        "end_to_end_ratio": {"bdc_bitwise/flashocc_torch": 0.9},
        "memory_bandwidth": {"l3": {"bytes_per_thread": 1 << 23, "gb_per_s_1_threads": 100.0, "scaling": 1.7}},
    }
    table = markdown_table(report)
    assert "| xnor3x3 | 1x32x8x8->32 s1 | 2 | `a.conv3x3` | 2.00 | 0.50 | 4.0x | 5.0x |" in table
    assert "| pointwise | 1x32x8x8->32 | 1 | `a.conv1x1_0` | 1.00 | 1.00 | 1.0x | - |" in table
    assert "| bdc_bitwise | 90 | 8 |" in table
    assert "bdc_bitwise/flashocc_torch = 0.900" in table
    assert "l3 8 MB per thread 100 GB/s x1.70" in table


def test_paired_ratio_follows_the_rounds_not_the_medians() -> None:
    # the machine is 10x slower in rounds 2-3 and b's round 2 caught a hiccup: within rounds a takes half of b
    # twice, while the ratio of the medians (10 / 11) hides that
    assert paired_ratio({"a": [1.0, 10.0, 10.0], "b": [2.0, 11.0, 20.0]}, "a", "b") == 0.5
    assert paired_ratio({"a": [1.0, 3.0], "b": [2.0, 1.0]}, "a", "b") == (0.5 + 3.0) / 2


def test_timing_report_medians_and_ratios_of_the_binarized_stages() -> None:
    def stages(neck: float, bev: float, heads: float) -> dict[str, float]:
        return {"preprocess": 5.0, "image_backbone": 50.0, "image_neck": neck, "bev_encoder": bev, "heads": heads}

    rounds = {"flashocc_torch": [100.0, 200.0, 100.0], "bdc_bitwise": [90.0, 150.0, 95.0]}
    stage_rounds = {"flashocc_torch": [stages(10, 20, 10)] * 3, "bdc_bitwise": [stages(5, 15, 10)] * 3}
    report = timing_report(rounds, stage_rounds)
    assert report["end_to_end_ms"] == {"flashocc_torch": 100.0, "bdc_bitwise": 95.0}
    assert report["end_to_end_ratio"] == {"bdc_bitwise/flashocc_torch": 0.9}  # rounds: 0.9, 0.75, 0.95
    assert report["binarized_stages_ms"] == {"flashocc_torch": 40.0, "bdc_bitwise": 30.0}
    assert report["binarized_stages_ratio"] == {"bdc_bitwise/flashocc_torch": 0.75}
    assert report["stages_ms"]["bdc_bitwise"]["image_backbone"] == 50.0


def test_popcount_limit_is_the_best_of_its_samples() -> None:
    peak = _popcount(1, seconds=0.05)
    assert peak["samples"] >= 2 and peak["threads"] == 1
    assert peak["binary_gmacs_per_s"] >= peak["binary_gmacs_per_s_median"] > 0


@pytest.mark.parametrize("cores", [1, 2])
def test_memory_probe_reports_each_size_and_the_scaling(cores: int) -> None:
    if cores > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"numba has {numba.config.NUMBA_NUM_THREADS} thread(s)")
    before = numba.get_num_threads()
    report = _memory(cores, seconds=0.01, sizes={"small": 1 << 16, "large": 1 << 22})
    assert numba.get_num_threads() == before  # the probe restores the engine's thread count
    assert list(report) == ["small", "large"]
    for row in report.values():
        assert row[f"gb_per_s_{cores}_threads"] > 0 and row["gb_per_s_1_threads"] > 0
        assert row["scaling"] == pytest.approx(row[f"gb_per_s_{cores}_threads"] / row["gb_per_s_1_threads"])
