"""SynthOcc data (``bdc-occ synth`` output) -> camera sets for a bag in the nuScenes layout.

One bag is one drive with one calibration: the scenes are put back to back on a continuous 12 Hz
timeline (SynthOcc spaces scenes an hour apart), each camera keeping its exposure offset within its
frame from ``index.json``; the original JPEG files are written unchanged and the ground truth comes
from ``gts/<scene>/<token>/labels.npz`` (``semantics``, ``mask_camera`` as visibility).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bdc_occ_ros.bags.layout import SAMPLE_PERIOD_NS, CameraFrame, FrameSource
from bdc_occ_ros.geometry import RigCalibration


def generate_synth_data(out: Path, scenes: int, seed: int, frames_per_scene: int,
                        image_size: tuple[int, int] = (1600, 900), workers: int = 1, progress=None) -> Path:
    """Run the SynthOcc generator (one rig for all scenes) into ``out``; returns ``out``."""
    from bdc_occ_ros.data.synth import SynthConfig, generate

    cfg = SynthConfig(out=Path(out), scenes=scenes, seed=seed, frames_per_scene=frames_per_scene,
                      image_size=image_size, workers=workers, rig_jitter=False)
    generate(cfg, progress=progress)
    return Path(out)


def synth_frames(data: str | Path, max_frames: int | None = None) -> FrameSource:
    """The frames of a SynthOcc directory in (scene, frame) order as camera sets on one timeline."""
    data = Path(data)
    index_path = data / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"not a SynthOcc directory (no index.json): {data}")
    index = json.loads(index_path.read_text())
    records = sorted(index["frames"], key=lambda r: (r["scene"], r["frame_index"]))[:max_frames]
    if not records:
        raise ValueError(f"{index_path}: no frames")
    calib = records[0]["calibration"]
    differing = sorted({r["scene"] for r in records if r["calibration"] != calib})
    if differing:
        raise ValueError(f"{data}: scenes {differing} have another camera calibration than {records[0]['scene']}; "
                         "one bag holds one rig (generate with one rig: bdc-occ bag synth does)")
    rig = RigCalibration.from_dict(calib, source=str(index_path))
    start_ns = int(records[0]["timestamp"]) * 1000

    def frames() -> Iterator[CameraFrame]:
        for i, rec in enumerate(records):
            frame_ns = start_ns + i * SAMPLE_PERIOD_NS
            with np.load(data / rec["occ_path"]) as npz:
                labels, vis = npz["semantics"].astype(np.uint8), npz["mask_camera"].astype(np.uint8)
            yield CameraFrame(
                stamps_ns={cam: frame_ns + (int(c["timestamp"]) - int(rec["timestamp"])) * 1000
                           for cam, c in rec["cams"].items()},
                jpegs={cam: (data / c["image"]).read_bytes() for cam, c in rec["cams"].items()},
                gt_labels=labels, gt_visibility=vis,
                extra={"scene": rec["scene"], "token": rec["token"]})

    return FrameSource(rig, len(records), frames())
