"""Real nuScenes (devkit JSON tables) -> camera bag in the nuScenes layout, with Occ3D ground truth.

The tables are read directly as JSON (``<dataroot>/<version>/{scene,sample,sample_data,calibrated_sensor,
sensor}.json``) instead of through ``nuscenes-devkit``: the devkit pins numpy 1.26 and an old OpenCV,
which would break this venv, and the five tables are plain JSON. Occ3D ground truth is read from
``<dataroot>/gts/<scene name>/<sample token>/labels.npz`` (or ``--gts DIR``) when present.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bdc_occ_ros.bags.layout import ANCHOR_CAMERA, SAMPLE_PERIOD_NS, CameraFrame, FrameSource
from bdc_occ_ros.geometry import NUSCENES_CAMERAS, CameraCalibration, RigCalibration, make_transform, quat_to_matrix

_TABLES = ("scene", "sample", "sample_data", "calibrated_sensor", "sensor")


@dataclass
class NuScenesTables:
    """The devkit tables needed for camera bags, indexed by token."""

    dataroot: Path
    scenes: dict[str, dict]
    samples: dict[str, dict]
    sample_data: dict[str, dict]
    calibrated_sensors: dict[str, dict]
    sensors: dict[str, dict]

    @classmethod
    def load(cls, dataroot: str | Path, version: str) -> NuScenesTables:
        root = Path(dataroot)
        table_dir = root / version
        if not table_dir.is_dir():
            raise FileNotFoundError(f"nuScenes tables not found: {table_dir} (check --dataroot and --version)")
        tables = {}
        for name in _TABLES:
            path = table_dir / f"{name}.json"
            if not path.is_file():
                raise FileNotFoundError(f"nuScenes table missing: {path}")
            tables[name] = {rec["token"]: rec for rec in json.loads(path.read_text())}
        return cls(root, tables["scene"], tables["sample"], tables["sample_data"], tables["calibrated_sensor"],
                   tables["sensor"])

    def scene_by_name(self, name: str) -> dict:
        for scene in self.scenes.values():
            if scene["name"] == name:
                return scene
        raise ValueError(f"no scene {name!r}; the tables have {sorted(s['name'] for s in self.scenes.values())}")

    def channel(self, sd: dict) -> str:
        return self.sensors[self.calibrated_sensors[sd["calibrated_sensor_token"]]["sensor_token"]]["channel"]

    def scene_samples(self, scene: dict) -> list[dict]:
        """Keyframe samples of a scene in time order (following the ``next`` chain)."""
        out, token = [], scene["first_sample_token"]
        while token:
            sample = self.samples[token]
            out.append(sample)
            token = sample["next"]
        return out

    def camera_records(self, samples: list[dict], sweeps: bool) -> dict[str, list[dict]]:
        """Camera channel -> its sample_data records (keyframes, plus sweeps between them if asked), by time."""
        tokens = {s["token"] for s in samples}
        t0, t1 = samples[0]["timestamp"], samples[-1]["timestamp"]
        out: dict[str, list[dict]] = {}
        for sd in self.sample_data.values():
            if sd["sample_token"] not in tokens or not self.channel(sd).startswith("CAM_"):
                continue
            if sd["is_key_frame"] or (sweeps and t0 - 60_000 <= sd["timestamp"] <= t1 + 60_000):
                out.setdefault(self.channel(sd), []).append(sd)
        for recs in out.values():
            recs.sort(key=lambda r: r["timestamp"])
        return out


def rig_from_tables(tables: NuScenesTables, key_records: dict[str, dict],
                    base_frame: str = "base_link") -> RigCalibration:
    """The rig of one camera set (channel -> sample_data): calibrated_sensor extrinsics (camera -> ego,
    quaternion w, x, y, z) and intrinsics at the record's image size."""
    cams = {}
    order = [n for n in NUSCENES_CAMERAS if n in key_records] + [n for n in key_records if n not in NUSCENES_CAMERAS]
    for name in order:
        sd = key_records[name]
        cs = tables.calibrated_sensors[sd["calibrated_sensor_token"]]
        if not cs.get("camera_intrinsic"):
            raise ValueError(f"calibrated_sensor {cs['token']} ({name}) has no camera_intrinsic")
        cams[name] = CameraCalibration(
            name=name, frame_id=name,
            cam_to_base=make_transform(quat_to_matrix(cs["rotation"]), cs["translation"]),
            width=int(sd.get("width") or 1600), height=int(sd.get("height") or 900),
            intrinsics=np.asarray(cs["camera_intrinsic"], dtype=np.float64).reshape(3, 3))
    return RigCalibration(base_frame=base_frame, cameras=cams)


def _load_gt(gts: Path | None, scene_name: str, sample_token: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    if gts is None:
        return None, None
    path = gts / scene_name / sample_token / "labels.npz"
    if not path.is_file():
        return None, None
    with np.load(path) as npz:
        return npz["semantics"].astype(np.uint8), npz["mask_camera"].astype(np.uint8)


def _group_sweeps(records: dict[str, list[dict]], anchor: str) -> list[dict[str, dict]]:
    """Camera sets around each anchor record: per camera the record nearest to anchor time + that camera's
    median keyframe offset (cameras fire in a fixed order, ~43 ms apart), each record used once."""
    keyed = {name: {r["sample_token"]: r for r in recs if r["is_key_frame"]} for name, recs in records.items()}
    offsets = {}
    for name, by_sample in keyed.items():
        common = [tok for tok in by_sample if tok in keyed[anchor]]
        deltas = [by_sample[t]["timestamp"] - keyed[anchor][t]["timestamp"] for t in common]
        offsets[name] = float(np.median(deltas)) if deltas else 0.0
    times = {name: np.array([r["timestamp"] for r in recs], dtype=np.float64) for name, recs in records.items()}
    used: dict[str, set[str]] = {name: set() for name in records}
    sets = []
    for a in records[anchor]:
        cam_set = {}
        for name, recs in records.items():
            err = np.abs(times[name] - (a["timestamp"] + offsets[name]))
            i = int(np.argmin(err))
            if err[i] < SAMPLE_PERIOD_NS / 2000 and recs[i]["token"] not in used[name]:  # half a period, in us
                cam_set[name] = recs[i]
        if len(cam_set) == len(records):
            for name, rec in cam_set.items():
                used[name].add(rec["token"])
            sets.append(cam_set)
    return sets


def nuscenes_frames(tables: NuScenesTables, scene_name: str, sweeps: bool = False, gts: Path | None = None,
                    anchor: str = ANCHOR_CAMERA, max_frames: int | None = None) -> FrameSource:
    """The rig and camera sets of one scene. Keyframe sets are grouped by sample; with ``sweeps`` the
    12 Hz non-keyframe images are added, grouped around each anchor image. Ground truth attaches to
    keyframes that have ``gts/<scene>/<sample token>/labels.npz``. ``max_frames`` keeps the first sets only."""
    scene = tables.scene_by_name(scene_name)
    samples = tables.scene_samples(scene)
    records = tables.camera_records(samples, sweeps)
    if anchor not in records:
        raise ValueError(f"scene {scene_name}: no {anchor} images; cameras: {sorted(records)}")
    if sweeps:
        sets = _group_sweeps(records, anchor)
    else:
        by_sample: dict[str, dict[str, dict]] = {}
        for name, recs in records.items():
            for r in recs:
                by_sample.setdefault(r["sample_token"], {})[name] = r
        sets = [by_sample[s["token"]] for s in samples if len(by_sample.get(s["token"], {})) == len(records)]
    if not sets:
        raise ValueError(f"scene {scene_name}: no complete camera set")
    sets = sets[:max_frames]

    def frames() -> Iterator[CameraFrame]:
        for cam_set in sets:
            key = cam_set[anchor]
            labels, vis = _load_gt(gts, scene_name, key["sample_token"]) if key["is_key_frame"] else (None, None)
            yield CameraFrame(
                stamps_ns={n: int(r["timestamp"]) * 1000 for n, r in cam_set.items()},  # us -> ns
                jpegs={n: _read_image(tables.dataroot, r) for n, r in cam_set.items()},
                gt_labels=labels, gt_visibility=vis,
                extra={"scene": scene_name, "sample_token": key["sample_token"], "key_frame": key["is_key_frame"]})

    return FrameSource(rig_from_tables(tables, sets[0]), len(sets), frames())


def _read_image(dataroot: Path, sd: dict) -> bytes:
    path = dataroot / sd["filename"]
    if not path.is_file():
        raise FileNotFoundError(f"image of sample_data {sd['token']} not found: {path}")
    return path.read_bytes()

