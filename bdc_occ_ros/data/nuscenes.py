"""Occ3D-nuScenes frames from BEVDet/FlashOcc-style info records (JSON/YAML export) or the devkit tables.

The released pipelines keep infos in pickles; unpickling an untrusted file can run code, so this reader
accepts only a JSON/YAML export of the same records (a list, or ``{"infos": [...]}`` as the pkl holds).
Export once where the pkl is trusted::

    python -c "import pickle, json; d = pickle.load(open('bevdetv2-nuscenes_infos_val.pkl', 'rb')); \
json.dump(d, open('bevdetv2-nuscenes_infos_val.json', 'w'), default=lambda o: o.tolist())"

Per record: ``token``, ``timestamp`` (µs), ``scene_name`` (or ``occ_path``), ``cams.<CAM>``:
``data_path``, ``cam_intrinsic`` (3x3), ``sensor2ego_rotation`` (w, x, y, z), ``sensor2ego_translation``,
``timestamp``; optionally ``ann_infos`` = [boxes (N, 9) ego [x, y, z, l, w, h, yaw, vx, vy], labels (N,)
DET_CLASSES index] as BEVDet writes them. Images and ``gts/`` resolve against ``root`` (prefixes such
as ``./data/nuscenes/`` are stripped). Image sizes come from the files when they differ from 1600x900.

Alternatively ``info`` may be the devkit table directory (``<dataroot>/v1.0-mini``, plain JSON, read
without nuscenes-devkit): keyframes of every scene (split None) or of the built-in v1.0-mini splits, boxes
from ``sample_annotation`` in the ego frame of the CAM_FRONT keyframe (as BEVDet), velocities as the devkit
computes them, annotations without LiDAR/radar points dropped (BEVDet's ``valid_flag``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from bdc_occ_ros.classes import DET_CLASSES
from bdc_occ_ros.data.records import FrameRecord
from bdc_occ_ros.geometry import CalibrationError, RigCalibration, quat_to_matrix

NUSCENES_IMAGE_SIZE = (1600, 900)
_INFO_PATTERNS = ("bevdetv3-nuscenes_infos_{split}", "bevdetv2-nuscenes_infos_{split}", "nuscenes_infos_{split}")
_ROOT_DIRS = ("samples", "sweeps", "gts")
#: nuscenes-devkit ``utils/splits.py`` for v1.0-mini; the trainval splits need an info export.
MINI_SPLITS = {
    "train": ("scene-0061", "scene-0553", "scene-0655", "scene-0757", "scene-0796", "scene-1077", "scene-1094",
              "scene-1100"),
    "val": ("scene-0103", "scene-0916"),
}
#: nuscenes-devkit ``category_to_detection_name``.
CATEGORY_TO_DET = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}


def find_info_file(root: Path, split: str | None) -> Path:
    """The info export of a split under ``root`` (JSON or YAML, BEVDet/mmdet3d names)."""
    if split is None:
        raise ValueError(f"{root}: no index.json; a nuScenes tree needs --split or an info file")
    for pattern in _INFO_PATTERNS:
        for ext in (".json", ".yaml", ".yml"):
            path = root / (pattern.format(split=split) + ext)
            if path.is_file():
                return path
    raise FileNotFoundError(f"{root}: no index.json and no info export for split {split!r} "
                            f"(looked for {_INFO_PATTERNS[0].format(split=split)}.json and similar)")


def load_info_export(path: Path) -> list[dict]:
    """Records from a JSON/YAML info export; refuses pickles."""
    if path.suffix == ".pkl":
        raise ValueError(f"{path}: pickle files are not read (unsafe); export the infos to JSON first "
                         "(see bdc_occ_ros/data/nuscenes.py)")
    try:
        data = yaml.safe_load(path.read_text())  # YAML also parses JSON
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid JSON/YAML: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("infos", data.get("data_list"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of info records or {{'infos': [...]}}")
    return data


def resolve(root: Path, path: str) -> Path:
    """A path of an info record relative to the dataroot (absolute, or with a ``.../samples/...`` prefix)."""
    p = Path(path)
    if p.is_absolute() and p.exists():
        return p
    parts = p.parts
    for i, part in enumerate(parts):
        if part in _ROOT_DIRS:
            return root.joinpath(*parts[i:])
    return root / p


def load_nuscenes_records(root: Path, split: str | None, info: str | Path | None) -> list[FrameRecord]:
    if info is not None and Path(info).is_dir():
        return load_devkit_records(root, Path(info), split)
    path = Path(info) if info is not None else find_info_file(root, split)
    if not path.is_file():
        raise FileNotFoundError(f"info file not found: {path}")
    records = []
    for i, rec in enumerate(load_info_export(path)):
        where = f"{path}: record {i}"
        try:
            records.append(_record(root, rec, split or "all", where))
        except CalibrationError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"{where}: missing or malformed field {exc}") from exc
    return records


def _record(root: Path, rec: dict, split: str, where: str) -> FrameRecord:
    token = str(rec["token"])
    rig = RigCalibration.from_info(rec, *NUSCENES_IMAGE_SIZE)
    if rec.get("occ_path"):
        occ = resolve(root, str(rec["occ_path"]))
        occ = occ / "labels.npz" if occ.suffix != ".npz" else occ
    elif rec.get("scene_name"):
        occ = root / "gts" / str(rec["scene_name"]) / token / "labels.npz"
    else:
        raise ValueError(f"{where}: needs 'occ_path' or 'scene_name' to find its Occ3D labels")
    scene = str(rec.get("scene_name") or occ.parent.parent.name)
    boxes = np.zeros((0, 9), np.float32)
    labels = np.zeros((0,), np.int64)
    if rec.get("ann_infos"):
        raw_boxes, raw_labels = rec["ann_infos"]
        boxes = np.asarray(raw_boxes, dtype=np.float32).reshape(-1, 9)
        labels = np.asarray(raw_labels, dtype=np.int64).reshape(-1)
        if len(boxes) != len(labels):
            raise ValueError(f"{where}: ann_infos has {len(boxes)} boxes but {len(labels)} labels")
    cams = rec["cams"]
    return FrameRecord(
        scene=scene,
        token=token,
        timestamp=int(rec["timestamp"]),
        split=split,
        rig=rig,
        image_paths={name: resolve(root, str(c["data_path"])) for name, c in cams.items()},
        cam_timestamps={name: int(c.get("timestamp", rec["timestamp"])) for name, c in cams.items()},
        occ_path=occ,
        boxes=boxes,
        box_labels=labels,
    )


def load_devkit_records(root: Path, table_dir: Path, split: str | None) -> list[FrameRecord]:
    """Keyframes with all cameras from the devkit tables in ``table_dir`` (``<root>/<version>``)."""
    from bdc_occ_ros.bags.nuscenes import NuScenesTables, rig_from_tables  # the table reader of the bag tools

    tables = NuScenesTables.load(table_dir.parent, table_dir.name)
    extra = {}
    for name in ("sample_annotation", "instance", "category", "ego_pose"):
        path = table_dir / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"nuScenes table missing: {path}")
        extra[name] = {rec["token"]: rec for rec in yaml.safe_load(path.read_text())}
    if split is None:
        names = sorted(s["name"] for s in tables.scenes.values())
    elif table_dir.name == "v1.0-mini" and split in MINI_SPLITS:
        names = list(MINI_SPLITS[split])
    else:
        raise ValueError(f"split {split!r} of {table_dir.name}: only the v1.0-mini splits are built in; use an info "
                         "export (see bdc_occ_ros/data/nuscenes.py) or all scenes")
    anns_by_sample: dict[str, list[dict]] = {}
    for ann in extra["sample_annotation"].values():
        anns_by_sample.setdefault(ann["sample_token"], []).append(ann)
    records = []
    for scene in sorted(tables.scenes.values(), key=lambda s: s["name"]):
        if scene["name"] not in names:
            continue
        samples = tables.scene_samples(scene)
        by_sample: dict[str, dict[str, dict]] = {}
        for cam, recs in tables.camera_records(samples, sweeps=False).items():
            for sd in recs:
                by_sample.setdefault(sd["sample_token"], {})[cam] = sd
        for sample in samples:
            cams = by_sample.get(sample["token"], {})
            if "CAM_FRONT" not in cams:
                continue
            ego = extra["ego_pose"][cams["CAM_FRONT"]["ego_pose_token"]]
            boxes, labels = _devkit_boxes(anns_by_sample.get(sample["token"], []), ego, extra, tables.samples)
            records.append(FrameRecord(
                scene=scene["name"],
                token=sample["token"],
                timestamp=int(sample["timestamp"]),
                split=split or "all",
                rig=rig_from_tables(tables, cams),
                image_paths={cam: root / sd["filename"] for cam, sd in cams.items()},
                cam_timestamps={cam: int(sd["timestamp"]) for cam, sd in cams.items()},
                occ_path=root / "gts" / scene["name"] / sample["token"] / "labels.npz",
                boxes=boxes,
                box_labels=labels,
            ))
    return records


def _devkit_boxes(anns: list[dict], ego: dict, extra: dict, samples: dict) -> tuple[np.ndarray, np.ndarray]:
    """(M, 9) ego-frame boxes [x, y, z, l, w, h, yaw, vx, vy] and DET_CLASSES labels of one sample."""
    rot_e = quat_to_matrix(ego["rotation"])
    t_e = np.asarray(ego["translation"], dtype=np.float64)
    rows, labels = [], []
    for ann in sorted(anns, key=lambda a: a["token"]):
        category = extra["category"][extra["instance"][ann["instance_token"]]["category_token"]]["name"]
        det = CATEGORY_TO_DET.get(category)
        if det is None or ann.get("num_lidar_pts", 1) + ann.get("num_radar_pts", 0) == 0:
            continue
        centre = rot_e.T @ (np.asarray(ann["translation"], dtype=np.float64) - t_e)
        rot = rot_e.T @ quat_to_matrix(ann["rotation"])
        w, length, h = ann["size"]
        vel = rot_e.T @ np.append(_devkit_velocity(ann, extra["sample_annotation"], samples), 0.0)
        rows.append([*centre, length, w, h, np.arctan2(rot[1, 0], rot[0, 0]), vel[0], vel[1]])
        labels.append(DET_CLASSES.index(det))
    return np.asarray(rows, dtype=np.float32).reshape(-1, 9), np.asarray(labels, dtype=np.int64)


def _devkit_velocity(ann: dict, anns: dict, samples: dict) -> np.ndarray:
    """Global (vx, vy) as nuscenes-devkit ``box_velocity`` (0 where the devkit gives NaN, as BEVDet)."""
    prev, nxt = anns.get(ann["prev"]) if ann["prev"] else None, anns.get(ann["next"]) if ann["next"] else None
    if prev is None and nxt is None:
        return np.zeros(2)
    first, last = prev or ann, nxt or ann
    dt = 1e-6 * (samples[last["sample_token"]]["timestamp"] - samples[first["sample_token"]]["timestamp"])
    if dt <= 0 or dt > (3.0 if prev is not None and nxt is not None else 1.5):
        return np.zeros(2)
    return (np.asarray(last["translation"][:2]) - np.asarray(first["translation"][:2])) / dt
