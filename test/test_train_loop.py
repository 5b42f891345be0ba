"""The training loop on a tiny real SynthOcc set and a micro model: loss goes down, resume is exact, the CLI
writes its outputs, and two DDP processes (gloo, loopback) stay in sync."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file

from bdc_occ_ros.cli import main as cli_main

pytestmark = pytest.mark.slow

#: A micro network of the edge layout (BDC-V3 units + detection head) so a step takes seconds on 2 cores.
MICRO_CONFIG = {
    "name": "micro_test",
    "input_size": [32, 96],
    "unit": "bdc_v3",
    "backbone": {"depth": 18},
    "img_neck": {"out_channels": 16},
    "view_transformer": {"channels": 8, "depth_bins": [1.0, 45.0, 4.0]},
    "bev_encoder": {"channels": [8, 16, 32], "num_layers": [1, 1, 1], "neck_channels": 8},
    "occ_head": {"channels": 8, "hidden": 16},
    "det_head": {"share_channels": 8, "head_channels": 8, "num_conv": 1, "final_kernel": 1, "downsample": 4},
}


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> tuple[Path, Path]:
    """(config YAML, SynthOcc directory with 2 frames of one scene at 192x108)."""
    from bdc_occ_ros.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("train")
    config = root / "micro.yaml"
    config.write_text(yaml.safe_dump(MICRO_CONFIG))
    data = root / "synth"
    generate(SynthConfig(out=data, scenes=1, seed=11, frames_per_scene=2, image_size=(192, 108)))
    return config, data


def _train(config: Path, data: Path, out: Path, *extra: str) -> int:
    args = ["train", "--config", str(config), "--data", str(data), "--out", str(out), "--split", "all",
            "--workers", "0", "--threads", "1", "--log-every", "1", "--warmup-steps", "0", "--seed", "5", *extra]
    return cli_main(args)


def test_training_reduces_the_loss_and_writes_checkpoints_and_metrics(micro, tmp_path):
    config, data = micro
    out = tmp_path / "run"
    assert _train(config, data, out, "--epochs", "4", "--batch-size", "2", "--lr", "3e-3", "--no-augment") == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert {"loss", "loss_occ", "loss_heatmap", "loss_bbox", "lr", "time_s", "grad_norm"} <= set(rows[0])
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert float(rows[-1]["loss_occ"]) < float(rows[0]["loss_occ"])
    assert sorted(p.name for p in out.glob("epoch_*.safetensors")) == ["epoch_003.safetensors", "epoch_004.safetensors"]

    from bdc_occ_ros.model.checkpoint import load_checkpoint, load_model

    cfg, _, meta = load_checkpoint(out / "final.safetensors")
    assert cfg.name == "micro_test" and meta["step"] == 4 and meta["epoch"] == 4 and meta["seed"] == 5
    assert meta["data_generator"]["seed"] == 11
    load_model(out / "final.safetensors")  # the EMA weights fit the model

    # A second run into the same directory must not silently overwrite it.
    assert _train(config, data, out, "--max-steps", "1") == 2


def test_resume_continues_exactly_where_training_stopped(micro, tmp_path):
    config, data = micro
    common = ("--epochs", "2", "--batch-size", "1", "--lr", "2e-3", "--ema-decay", "0.5", "--ema-ramp", "1")
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(config, data, straight, *common, "--max-steps", "3") == 0
    # Stop mid-epoch (after step 1 of epoch 2), then resume to the same end point.
    assert _train(config, data, split, *common, "--max-steps", "2") == 0
    assert _train(config, data, split, *common, "--max-steps", "3", "--resume") == 0
    a, b = load_file(str(straight / "train_state.safetensors")), load_file(str(split / "train_state.safetensors"))
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    fa, fb = load_file(str(straight / "final.safetensors")), load_file(str(split / "final.safetensors"))
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    steps = [int(r["step"]) for r in csv.DictReader((split / "metrics.csv").open())]
    assert steps == [1, 2, 3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, config: str, data: str, out: str, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    import torch.distributed as dist

    from bdc_occ_ros.config import load_model_config
    from bdc_occ_ros.data.dataset import OccDataset
    from bdc_occ_ros.model.network import build_model
    from bdc_occ_ros.train.distributed import init_distributed, shutdown
    from bdc_occ_ros.train.loop import Trainer, TrainOptions

    ctx = init_distributed("cpu")
    cfg = load_model_config(config)
    torch.manual_seed(100 + rank)  # different init per rank: DDP must broadcast rank 0's weights
    model = build_model(cfg)
    dataset = OccDataset(data, None, cfg.input_size, cfg.cameras, augment=True, seed=1)
    opts = TrainOptions(epochs=2, batch_size=1, lr=2e-3, warmup_steps=0, workers=0, log_every=1)
    run = {"seed": 1, "world_size": world, "batch_size": 1, "config": config, "split": "all"}
    result_obj = Trainer(model, cfg, dataset, opts, ctx, Path(out), run).run()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        torch.save({"params": torch.stack(gathered), "step": result_obj.step}, result)
    shutdown(ctx)


def test_two_ddp_processes_stay_in_sync(micro, tmp_path):
    config, data = micro
    result = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(config), str(data), str(tmp_path / "out"), str(result)),
             nprocs=2, join=True)  # fmt: skip
    res = torch.load(result, weights_only=True)
    assert res["step"] == 2  # 2 frames over 2 ranks: one step per epoch
    assert torch.equal(res["params"][0], res["params"][1])
    rows = list(csv.DictReader((tmp_path / "out" / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2]
