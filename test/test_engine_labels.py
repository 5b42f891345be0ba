"""Occupancy labels (the argmax over classes every CPU engine runs) against torch.argmax."""

from __future__ import annotations

import pytest
import torch

from bdc_occ_ros.engines.bitwise import kernels
from bdc_occ_ros.engines.labels import occupancy_labels


def _reference(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(dim=-1).to(torch.uint8)


@pytest.mark.parametrize("shape", [(1, 200, 200, 16, 18), (2, 3, 5, 7, 3), (1, 1, 1, 1, 1), (1, 4, 4, 16, 300)])
def test_labels_equal_torch_argmax(shape: tuple[int, ...]) -> None:
    """Random logits with exact ties (first maximum wins), NaNs (the first NaN wins), infinities; the edge model's
    grid (the parallel build), odd sizes, a single class and more classes than uint8 holds (wrapped like torch's)."""
    g = torch.Generator().manual_seed(sum(shape))
    logits = torch.randn(shape, generator=g)
    flat = logits.view(-1)
    flat[3::17] = 2.5  # ties within rows
    flat[5::23] = 2.5
    flat[::101] = float("nan")
    flat[7::29] = float("inf")
    flat[11::31] = float("-inf")
    assert torch.equal(occupancy_labels(logits), _reference(logits))


def test_labels_of_all_nan_and_all_minus_inf_rows() -> None:
    logits = torch.zeros(1, 1, 1, 3, 4)
    logits[0, 0, 0, 0] = float("nan")
    logits[0, 0, 0, 1] = float("-inf")
    logits[0, 0, 0, 2] = torch.tensor([1.0, float("nan"), 5.0, float("nan")])
    assert torch.equal(occupancy_labels(logits), _reference(logits))
    assert occupancy_labels(logits).view(-1).tolist() == [0, 0, 1]


def test_labels_of_other_layouts_and_types_fall_back_to_torch() -> None:
    logits = torch.randn(1, 4, 5, 3, 6, generator=torch.Generator().manual_seed(1))
    strided = logits.transpose(1, 2)
    assert not strided.is_contiguous()
    assert torch.equal(occupancy_labels(strided), _reference(strided))
    assert torch.equal(occupancy_labels(logits.double()), _reference(logits))


def test_labels_kernel_builds_agree() -> None:
    """The serial and the parallel build give the same labels (both run in engines, by map size and threads)."""
    logits = torch.randn(3, 70, 16, 18, generator=torch.Generator().manual_seed(2)).numpy().reshape(-1, 16, 18)
    serial = torch.empty(logits.shape[:2], dtype=torch.uint8).numpy()
    parallel = serial.copy()
    kernels.argmax_classes.serial(logits, serial)
    kernels.argmax_classes.parallel(logits, parallel)
    assert (serial == parallel).all()
    assert torch.equal(torch.from_numpy(serial), _reference(torch.from_numpy(logits)))
