"""Trainer building blocks: losses, detection targets, LR schedule, EMA, resumable state, sampler, CSV log."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from bdc_occ_ros.classes import OCC3D_GRID
from bdc_occ_ros.model.heads import BevCellMapping
from bdc_occ_ros.train.detection import build_targets, detection_loss, gaussian_focal_loss, gaussian_radius
from bdc_occ_ros.train.ema import ModelEMA
from bdc_occ_ros.train.losses import class_weights_from_counts, occupancy_loss
from bdc_occ_ros.train.metrics import MetricsLog
from bdc_occ_ros.train.sampler import ResumableSampler
from bdc_occ_ros.train.schedule import LRSchedule
from bdc_occ_ros.train.state import Progress, load_train_state, save_train_state


def test_occupancy_loss_averages_cross_entropy_over_visible_voxels_only():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 2, 1, 3)
    semantics = torch.tensor([[[[0], [2]], [[1], [2]]]])
    mask = torch.tensor([[[[1], [0]], [[1], [1]]]], dtype=torch.bool)
    flat, target = logits.reshape(-1, 3), semantics.reshape(-1)
    ce = -torch.log_softmax(flat, dim=1)[torch.arange(4), target]
    expected = (ce[0] + ce[2] + ce[3]) / 3
    assert torch.allclose(occupancy_loss(logits, semantics, mask), expected)
    # Whatever the logits of the invisible voxel, the loss does not change.
    logits2 = logits.clone()
    logits2[0, 0, 1, 0] = torch.tensor([50.0, -50.0, 3.0])
    assert torch.allclose(occupancy_loss(logits2, semantics, mask), expected)
    # Class weights scale each voxel's term; the divisor stays the visible-voxel count (mmdet avg_factor).
    w = torch.tensor([2.0, 1.0, 0.5])
    weighted = (2.0 * ce[0] + 1.0 * ce[2] + 0.5 * ce[3]) / 3
    assert torch.allclose(occupancy_loss(logits, semantics, mask, w), weighted)
    # unobserved_weight: the invisible voxel joins, scaled, still over the visible count (complete ground truth).
    with_unobserved = (ce[0] + 0.25 * ce[1] + ce[2] + ce[3]) / 3
    assert torch.allclose(occupancy_loss(logits, semantics, mask, unobserved_weight=0.25), with_unobserved)
    with pytest.raises(ValueError, match="unobserved_weight"):
        occupancy_loss(logits, semantics, mask, unobserved_weight=-1.0)


def test_occupancy_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape mismatch"):
        occupancy_loss(torch.zeros(1, 2, 2, 2, 3), torch.zeros(1, 2, 2, 1, dtype=torch.long), torch.ones(1, 2, 2, 1))


def test_class_weights_favour_rare_classes_and_keep_mean_one():
    counts = np.array([1000, 10, 0, 100000])
    for mode in ("log", "inv_sqrt"):
        w = class_weights_from_counts(counts, mode)
        assert w[1] > w[0] > w[3]
        assert w[2] == pytest.approx(w.max())  # absent class: largest weight
        assert (w * counts).sum() / counts.sum() == pytest.approx(1.0, rel=1e-5)
    assert class_weights_from_counts(counts, "none") is None
    with pytest.raises(ValueError, match="class weighting"):
        class_weights_from_counts(counts, "bogus")


def test_detection_targets_put_a_unit_peak_and_the_regression_at_the_box_centre():
    box = torch.tensor([[10.3, -5.1, 0.8, 4.5, 1.9, 1.6, 0.7, 2.0, -1.0]])
    targets = build_targets([box, torch.zeros(0, 9)], [torch.tensor([3]), torch.zeros(0, dtype=torch.long)],
                            num_classes=10, map_hw=(50, 50), grid=OCC3D_GRID)  # fmt: skip
    mapping = BevCellMapping.from_grid(OCC3D_GRID, (50, 50))
    ix, iy, offset = mapping.cell_of(box[:, :2].numpy())
    assert targets.heatmap.shape == (2, 10, 50, 50)
    assert targets.heatmap[0, 3, iy[0], ix[0]] == 1.0
    assert targets.heatmap[0, 3].eq(1).sum() == 1 and targets.heatmap[1].sum() == 0
    assert targets.heatmap[0, [0, 1, 2, 4]].sum() == 0  # other classes untouched
    assert (targets.batch.tolist(), targets.row.tolist(), targets.col.tolist()) == ([0], [iy[0]], [ix[0]])
    expected = [offset[0, 0], offset[0, 1], 0.8, math.log(4.5), math.log(1.9), math.log(1.6),
                math.sin(0.7), math.cos(0.7), 2.0, -1.0]  # fmt: skip
    assert torch.allclose(targets.regression[0], torch.tensor(expected, dtype=torch.float32), atol=1e-6)
    # Decoding the targets with the model's own cell mapping gives the box centre back.
    centre = mapping.centre_of(targets.col, targets.row, targets.regression[:, :2])
    assert torch.allclose(centre[0], box[0, :2], atol=1e-4)


def test_gaussian_radius_grows_with_box_size():
    assert gaussian_radius(2.0, 2.0) < gaussian_radius(10.0, 4.0)


def test_detection_loss_is_low_for_a_matching_prediction_and_reaches_every_output():
    box = torch.tensor([[0.5, 0.5, 1.0, 4.0, 2.0, 1.5, 0.3, 1.0, 0.0]])
    targets = build_targets([box], [torch.tensor([0])], 10, (20, 20), OCC3D_GRID)
    good = {"heatmap": torch.logit(targets.heatmap.clamp(1e-4, 1 - 1e-4))}
    for name, k, start in (("reg", 2, 0), ("height", 1, 2), ("dim", 3, 3), ("rot", 2, 6), ("vel", 2, 8)):
        t = torch.zeros(1, k, 20, 20)
        t[0, :, targets.row[0], targets.col[0]] = targets.regression[0, start : start + k]
        good[name] = t
    bad = {k: (v + 1.0).requires_grad_() for k, v in good.items()}
    lg, lb = detection_loss(good, targets), detection_loss(bad, targets)
    assert lg["loss_bbox"] < 1e-5 and lg["loss_heatmap"] < lb["loss_heatmap"]
    sum(lb.values()).backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in bad.values())


def test_gaussian_focal_loss_is_normalised_by_peak_count():
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 1] = 1.0
    logits = torch.zeros(1, 1, 4, 4)
    p = 0.5
    expected = -math.log(p) * (1 - p) ** 2 + 15 * (-math.log(1 - p) * p**2)
    assert gaussian_focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_lr_schedule_warms_up_linearly_then_constant_or_cosine():
    s = LRSchedule(1e-3, warmup_steps=10, warmup_ratio=0.001)
    assert s.lr(0) == pytest.approx(1e-6)
    assert s.lr(5) == pytest.approx(1e-3 * (0.001 + 0.999 * 0.5))
    assert s.lr(10) == s.lr(10_000) == 1e-3
    c = LRSchedule(1e-3, warmup_steps=10, kind="cosine", total_steps=110, min_ratio=0.01)
    assert c.lr(10) == pytest.approx(1e-3)
    assert c.lr(60) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))
    assert c.lr(110) == pytest.approx(1e-5)
    # A time budget half used moves the cosine to its middle even when few steps were done.
    assert c.lr(20, time_fraction=0.5) == pytest.approx(c.lr(60))
    assert c.lr(20, time_fraction=2.0) == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="schedule"):
        LRSchedule(1e-3, kind="step")
    with pytest.raises(ValueError, match="total_steps"):
        LRSchedule(1e-3, warmup_steps=10, kind="cosine", total_steps=5)


def _small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))


def test_ema_follows_the_reference_decay_ramp():
    model = _small_model()
    ema = ModelEMA(model, decay=0.999, ramp=2000)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    d = 0.999 * (1 - math.exp(-1 / 2000))
    assert ema.decay() == pytest.approx(d)
    ema.update(model)
    for name, value in ema.module.state_dict().items():
        if value.dtype.is_floating_point:
            expected = d * before[name] + (1 - d) * model.state_dict()[name]
            assert torch.allclose(value, expected), name
    assert ema.updates == 1
    assert not any(p.requires_grad for p in ema.module.parameters())


def _train_some(model: nn.Module, opt: torch.optim.Optimizer, ema: ModelEMA, steps: int) -> None:
    for _ in range(steps):
        x = torch.randn(2, 3, 6, 6)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model)


def test_train_state_round_trip_restores_everything_exactly(tmp_path):
    model = _small_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    ema = ModelEMA(model, decay=0.9, ramp=1.0)
    _train_some(model, opt, ema, 3)
    progress = Progress(step=3, epoch=1, batch_in_epoch=1, elapsed_s=12.5, run={"seed": 7})
    save_train_state(tmp_path / "s.safetensors", model, ema, opt, progress)
    rng_after_save = torch.get_rng_state()

    # Continue the original run...
    _train_some(model, opt, ema, 2)
    # ...and a fresh one restored from the file: both must end bit-identical.
    torch.manual_seed(123)
    model2 = _small_model()
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1.0)
    ema2 = ModelEMA(model2, decay=0.9, ramp=1.0)
    restored = load_train_state(tmp_path / "s.safetensors", model2, ema2, opt2)
    assert torch.equal(torch.get_rng_state(), rng_after_save)
    assert restored == progress and ema2.updates == 3
    assert opt2.param_groups[0]["lr"] == 1e-2 and opt2.param_groups[0]["betas"] == (0.9, 0.999)
    _train_some(model2, opt2, ema2, 2)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(ema.module.state_dict().values(), ema2.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_train_state_rejects_other_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "w.safetensors"))
    model = _small_model()
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="not a training state"):
        load_train_state(tmp_path / "w.safetensors", model, ModelEMA(model), opt)
    with pytest.raises(FileNotFoundError):
        load_train_state(tmp_path / "missing.safetensors", model, ModelEMA(model), opt)


def test_resumable_sampler_shards_like_distributed_sampler_and_skips():
    data = list(range(11))
    shards = [list(ResumableSampler(data, rank, 2, seed=3)) for rank in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5 and not set(shards[0]) & set(shards[1])
    s = ResumableSampler(data, 0, 2, seed=3)
    s.set_position(epoch=0, skip=2)
    assert list(s) == shards[0][2:] and len(s) == 3
    s.set_position(epoch=1)
    assert list(s) != shards[0] and sorted(s) != []


def test_metrics_log_appends_under_the_first_header(tmp_path):
    path = tmp_path / "m.csv"
    MetricsLog(path).write({"step": 1, "epoch": 0, "lr": 0.1, "time_s": 1.0, "loss": 2.0, "loss_occ": 2.0})
    MetricsLog(path).write({"step": 2, "epoch": 0, "lr": 0.1, "time_s": 2.0, "loss": 1.5, "loss_occ": 1.5})
    rows = list(csv.DictReader(path.open()))
    assert [r["step"] for r in rows] == ["1", "2"] and rows[1]["loss_occ"] == "1.5"
