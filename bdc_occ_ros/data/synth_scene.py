"""SynthOcc scene description: shape primitives, procedural street layouts and their motion.

A scene is a list of :class:`SceneObject` placed in a fixed *world* frame (x along the main road, y left,
z up, ground at z = 0). Each object is made of :class:`Primitive` shapes in its own frame and moves with a
constant ground velocity. :func:`frame_primitives` poses everything in the ego frame of one frame as flat
arrays (:class:`PrimitiveSet`), which the renderer and the voxeliser both consume, so images and ground
truth come from the same geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from bdc_occ_ros.classes import OCC_CLASSES

L = {name: i for i, name in enumerate(OCC_CLASSES)}  # Occ3D label of a class name


class Shape(IntEnum):
    """Primitive shapes; dims meaning per shape: BOX (l, w, h), FRUSTUM (r_bottom, r_top, h), ELLIPSOID (a, b, c)."""

    BOX = 0
    FRUSTUM = 1
    ELLIPSOID = 2


class Texture(IntEnum):
    """Procedural surface patterns (see synth_render.shade); ``params`` of a primitive parameterise them."""

    PLAIN = 0  # value noise only
    ASPHALT = 1  # lane markings: params (half_width, lane_width, centre_y, two_way)
    TILES = 2  # paving grid: params (tile_size,)
    ROUGH = 3  # grass/foliage: strong multi-scale noise
    FACADE = 4  # windows: params (window_w, window_h, floor_h, spacing)
    STRIPES = 5  # horizontal bands of the second colour: params (period, duty)


@dataclass
class Primitive:
    """One solid shape in its object's frame (centred at ``center``, rotated by ``yaw`` then ``pitch`` about y)."""

    shape: Shape
    dims: tuple[float, float, float]
    center: tuple[float, float, float]
    label: int
    color: np.ndarray  # (3,) float albedo in [0, 1]
    texture: Texture = Texture.PLAIN
    color2: np.ndarray | None = None  # pattern colour (markings, windows, stripes)
    params: tuple[float, ...] = ()
    yaw: float = 0.0
    pitch: float = 0.0
    voxelize: bool = True  # paint (crosswalk stripes) lies on a surface of the same class: skip


@dataclass
class SceneObject:
    """A rigid object: primitives in its frame, a ground pose (x, y, z, yaw) at t = 0 and a world velocity."""

    prims: list[Primitive]
    pose: tuple[float, float, float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    det_name: str | None = None  # nuScenes detection class, or None for stuff (roads, buildings, ...)
    box_size: tuple[float, float, float] | None = None  # (l, w, h) of the annotation box, base at z = 0

    def pose_at(self, t: float) -> tuple[float, float, float, float]:
        x, y, z, yaw = self.pose
        return x + self.velocity[0] * t, y + self.velocity[1] * t, z, yaw


@dataclass
class Scene:
    """A whole scene: objects, the ego trajectory, lighting and atmosphere."""

    objects: list[SceneObject]
    ego_start: tuple[float, float, float]  # world x, y, yaw at t = 0
    ego_velocity: tuple[float, float]
    sun: np.ndarray  # (3,) unit vector towards the sun, world frame
    ambient: float
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    fog_color: np.ndarray
    fog_distance: float
    layout: str
    noise_seed: int

    def ego_pose_at(self, t: float) -> tuple[float, float, float]:
        x, y, yaw = self.ego_start
        return x + self.ego_velocity[0] * t, y + self.ego_velocity[1] * t, yaw


@dataclass
class PrimitiveSet:
    """All primitives of one frame in the ego frame, as flat arrays (P = number of primitives).

    shape (P,) int, dims (P, 3), center (P, 3), rot (P, 3, 3) local -> ego, label (P,) uint8,
    color/color2 (P, 3) float32, texture (P,) int, params (P, 4) float32, voxelize (P,) bool, seed (P,) int64.
    """

    shape: np.ndarray
    dims: np.ndarray
    center: np.ndarray
    rot: np.ndarray
    label: np.ndarray
    color: np.ndarray
    color2: np.ndarray
    texture: np.ndarray
    params: np.ndarray
    voxelize: np.ndarray
    seed: np.ndarray

    def __len__(self) -> int:
        return int(self.shape.shape[0])


@dataclass
class Box:
    """An annotation box in the ego frame: centre (geometric), size (l, w, h), yaw, velocity (vx, vy)."""

    name: str
    center: np.ndarray
    size: np.ndarray
    yaw: float
    velocity: np.ndarray

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "center": [round(float(v), 4) for v in self.center],
            "size": [round(float(v), 4) for v in self.size],
            "yaw": round(float(self.yaw), 5),
            "velocity": [round(float(v), 4) for v in self.velocity],
        }


def rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(pitch: float) -> np.ndarray:
    c, s = np.cos(pitch), np.sin(pitch)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


# ----------------------------------------------------------------------------------------------------------
# Posing a frame
# ----------------------------------------------------------------------------------------------------------


def frame_primitives(scene: Scene, t: float) -> tuple[PrimitiveSet, list[Box], np.ndarray]:
    """Everything at time ``t`` (s) in the ego frame: primitives, annotation boxes, ego-from-world 4x4."""
    ex, ey, eyaw = scene.ego_pose_at(t)
    world_to_ego_r = rot_z(-eyaw)
    world_to_ego_t = -world_to_ego_r @ np.array([ex, ey, 0.0])
    rows: dict[str, list] = {k: [] for k in PrimitiveSet.__dataclass_fields__}
    boxes: list[Box] = []
    for oi, obj in enumerate(scene.objects):
        x, y, z, yaw = obj.pose_at(t)
        obj_r = world_to_ego_r @ rot_z(yaw)
        obj_t = world_to_ego_r @ np.array([x, y, z]) + world_to_ego_t
        for pi, p in enumerate(obj.prims):
            rows["shape"].append(int(p.shape))
            rows["dims"].append(p.dims)
            rows["center"].append(obj_r @ np.asarray(p.center) + obj_t)
            rows["rot"].append(obj_r @ rot_z(p.yaw) @ rot_y(p.pitch))
            rows["label"].append(p.label)
            rows["color"].append(p.color)
            rows["color2"].append(p.color if p.color2 is None else p.color2)
            rows["texture"].append(int(p.texture))
            rows["params"].append((*p.params, 0.0, 0.0, 0.0, 0.0)[:4])
            rows["voxelize"].append(p.voxelize)
            rows["seed"].append(scene.noise_seed + oi * 64 + pi)
        if obj.det_name is not None and obj.box_size is not None:
            size = np.asarray(obj.box_size, dtype=np.float64)
            centre = world_to_ego_r @ np.array([x, y, z + size[2] / 2]) + world_to_ego_t
            vel = world_to_ego_r[:2, :2] @ np.asarray(obj.velocity)
            boxes.append(Box(obj.det_name, centre, size, _wrap(yaw - eyaw), vel))
    prims = PrimitiveSet(
        shape=np.asarray(rows["shape"], dtype=np.int64),
        dims=np.asarray(rows["dims"], dtype=np.float64),
        center=np.asarray(rows["center"], dtype=np.float64),
        rot=np.asarray(rows["rot"], dtype=np.float64),
        label=np.asarray(rows["label"], dtype=np.uint8),
        color=np.asarray(rows["color"], dtype=np.float32),
        color2=np.asarray(rows["color2"], dtype=np.float32),
        texture=np.asarray(rows["texture"], dtype=np.int64),
        params=np.asarray(rows["params"], dtype=np.float32),
        voxelize=np.asarray(rows["voxelize"], dtype=bool),
        seed=np.asarray(rows["seed"], dtype=np.int64),
    )
    ego_from_world = np.eye(4)
    ego_from_world[:3, :3] = world_to_ego_r
    ego_from_world[:3, 3] = world_to_ego_t
    return prims, boxes, ego_from_world


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


# ----------------------------------------------------------------------------------------------------------
# Object builders (object frame: x forward, y left, z up, base on the ground at z = 0)
# ----------------------------------------------------------------------------------------------------------


def _jitter(rng: np.random.Generator, base, spread: float = 0.06) -> np.ndarray:
    return np.clip(np.asarray(base, dtype=np.float64) + rng.uniform(-spread, spread, 3), 0.02, 0.98)


def _pick(rng: np.random.Generator, colors, spread: float = 0.05) -> np.ndarray:
    return _jitter(rng, colors[int(rng.integers(len(colors)))], spread)


def _box(dims, center, label, color, **kw) -> Primitive:
    return Primitive(Shape.BOX, tuple(float(d) for d in dims), tuple(float(c) for c in center), label, color, **kw)


CAR_COLORS = [(0.85, 0.85, 0.85), (0.1, 0.1, 0.12), (0.55, 0.56, 0.58), (0.6, 0.1, 0.1), (0.12, 0.2, 0.5),
              (0.75, 0.72, 0.65), (0.3, 0.35, 0.3), (0.9, 0.9, 0.92)]
GLASS = (0.08, 0.1, 0.14)
TIRE = (0.05, 0.05, 0.05)


def _wheels(rng, length: float, width: float, radius: float, label: int, axles=(0.32, -0.32)) -> list[Primitive]:
    out = []
    for ax in axles:
        for side in (1, -1):
            centre = (ax * length, side * (width / 2 - 0.12), radius)
            out.append(Primitive(Shape.FRUSTUM, (radius, radius, 0.25), centre, label, _jitter(rng, TIRE, 0.02),
                                 pitch=np.pi / 2, yaw=np.pi / 2))
    return out


def make_car(rng: np.random.Generator) -> SceneObject:
    lab = L["car"]
    length, width = rng.uniform(3.8, 5.0), rng.uniform(1.65, 2.0)
    body_h, cabin_h = rng.uniform(0.55, 0.8), rng.uniform(0.45, 0.65)
    clear = 0.3
    color = _pick(rng, CAR_COLORS)
    cab_l = length * rng.uniform(0.45, 0.6)
    cab_x = rng.uniform(-0.15, 0.05) * length
    prims = [
        _box((length, width, body_h), (0, 0, clear + body_h / 2), lab, color),
        _box((cab_l, width * 0.9, cabin_h), (cab_x, 0, clear + body_h + cabin_h / 2), lab, _jitter(rng, GLASS, 0.03),
             texture=Texture.STRIPES, color2=color, params=(cabin_h, 0.25)),
        *_wheels(rng, length, width, clear + 0.05, lab),
    ]
    return SceneObject(prims, (0, 0, 0, 0), det_name="car", box_size=(length, width, clear + body_h + cabin_h))


def make_truck(rng: np.random.Generator) -> SceneObject:
    lab = L["truck"]
    length, width, height = rng.uniform(6.0, 10.0), rng.uniform(2.2, 2.6), rng.uniform(2.8, 3.8)
    cab_l = rng.uniform(1.8, 2.4)
    cab_color = _pick(rng, [(0.85, 0.85, 0.85), (0.15, 0.3, 0.6), (0.7, 0.12, 0.1), (0.2, 0.45, 0.25)])
    box_color = _pick(rng, [(0.9, 0.9, 0.88), (0.6, 0.6, 0.62), (0.5, 0.4, 0.3)])
    cargo_l = length - cab_l - 0.2
    prims = [
        _box((cab_l, width, height * 0.8 - 0.5), (length / 2 - cab_l / 2, 0, 0.5 + (height * 0.8 - 0.5) / 2), lab,
             cab_color, texture=Texture.STRIPES, color2=_jitter(rng, GLASS, 0.02), params=(height * 0.8 - 0.5, 0.6)),
        _box((cargo_l, width, height - 0.9), (-length / 2 + cargo_l / 2, 0, 0.9 + (height - 0.9) / 2), lab, box_color),
        *_wheels(rng, length, width, 0.5, lab, axles=(0.35, -0.25, -0.4)),
    ]
    return SceneObject(prims, (0, 0, 0, 0), det_name="truck", box_size=(length, width, height))


def make_bus(rng: np.random.Generator) -> SceneObject:
    lab = L["bus"]
    length, width, height = rng.uniform(9.5, 12.5), rng.uniform(2.45, 2.6), rng.uniform(3.0, 3.5)
    color = _pick(rng, [(0.9, 0.9, 0.9), (0.75, 0.15, 0.12), (0.15, 0.5, 0.3), (0.15, 0.3, 0.65)])
    prims = [
        _box((length, width, height - 0.35), (0, 0, 0.35 + (height - 0.35) / 2), lab, color, texture=Texture.STRIPES,
             color2=_jitter(rng, GLASS, 0.02), params=(height - 0.35, 0.45)),
        *_wheels(rng, length, width, 0.5, lab, axles=(0.3, -0.3)),
    ]
    return SceneObject(prims, (0, 0, 0, 0), det_name="bus", box_size=(length, width, height))


def make_trailer(rng: np.random.Generator) -> SceneObject:
    lab = L["trailer"]
    length, width, height = rng.uniform(5.0, 12.0), rng.uniform(2.3, 2.6), rng.uniform(2.5, 4.0)
    color = _pick(rng, [(0.85, 0.85, 0.82), (0.45, 0.45, 0.5), (0.55, 0.35, 0.2), (0.2, 0.25, 0.45)])
    prims = [
        _box((length, width, height - 1.1), (0, 0, 1.1 + (height - 1.1) / 2), lab, color, texture=Texture.TILES,
             params=(1.2,)),
        _box((0.4, 0.2, 1.0), (length / 2 + 0.2, 0, 0.6), lab, _jitter(rng, (0.2, 0.2, 0.2))),
        *_wheels(rng, length, width, 0.5, lab, axles=(-0.3, -0.42)),
    ]
    return SceneObject(prims, (0, 0, 0, 0), det_name="trailer", box_size=(length + 0.4, width, height))


def make_construction_vehicle(rng: np.random.Generator) -> SceneObject:
    lab = L["construction_vehicle"]
    length, width = rng.uniform(4.5, 7.5), rng.uniform(2.3, 2.9)
    color = _pick(rng, [(0.9, 0.7, 0.1), (0.9, 0.45, 0.08), (0.85, 0.8, 0.2)])
    body_h = rng.uniform(1.3, 1.8)
    cab_h = rng.uniform(1.2, 1.6)
    arm_len = rng.uniform(2.5, 4.0)
    pitch = -rng.uniform(0.3, 0.7)
    arm_z = body_h + 0.6 + np.sin(-pitch) * arm_len / 2
    prims = [
        _box((length, width, 0.9), (0, 0, 0.45), lab, _jitter(rng, (0.12, 0.12, 0.12)), texture=Texture.TILES,
             params=(0.3,)),
        _box((length * 0.8, width * 0.9, body_h - 0.9), (-0.1 * length, 0, 0.9 + (body_h - 0.9) / 2), lab, color),
        _box((1.6, 1.4, cab_h), (-0.05 * length, width * 0.15, body_h + cab_h / 2), lab, color,
             texture=Texture.STRIPES, color2=_jitter(rng, GLASS, 0.02), params=(cab_h, 0.5)),
        _box((arm_len, 0.45, 0.45), (length * 0.25 + np.cos(pitch) * arm_len / 2, -width * 0.2, arm_z), lab, color,
             pitch=pitch),
    ]
    height = max(body_h + cab_h, arm_z + 0.6)
    return SceneObject(prims, (0, 0, 0, 0), det_name="construction_vehicle", box_size=(length + 1.0, width, height))


def make_pedestrian(rng: np.random.Generator) -> SceneObject:
    lab = L["pedestrian"]
    height = rng.uniform(1.5, 1.95)
    width = rng.uniform(0.45, 0.6)
    legs_h = height * 0.47
    torso_h = height * 0.35
    head_r = height * 0.065
    top = _pick(rng, [(0.8, 0.1, 0.1), (0.1, 0.2, 0.6), (0.9, 0.9, 0.9), (0.15, 0.15, 0.15), (0.2, 0.5, 0.2),
                      (0.9, 0.75, 0.2)], 0.1)
    bottom = _pick(rng, [(0.1, 0.12, 0.3), (0.15, 0.15, 0.15), (0.5, 0.45, 0.35)], 0.08)
    skin = _pick(rng, [(0.85, 0.65, 0.5), (0.55, 0.38, 0.25), (0.35, 0.22, 0.15)], 0.05)
    prims = [
        _box((0.25, width * 0.7, legs_h), (0, 0, legs_h / 2), lab, bottom),
        _box((0.3, width, torso_h), (0, 0, legs_h + torso_h / 2), lab, top),
        Primitive(Shape.ELLIPSOID, (head_r, head_r, head_r * 1.15), (0, 0, height - head_r * 1.15), lab, skin),
    ]
    return SceneObject(prims, (0, 0, 0, 0), det_name="pedestrian", box_size=(0.5 + rng.uniform(0, 0.3), width, height))


def make_two_wheeler(rng: np.random.Generator, motor: bool) -> SceneObject:
    lab = L["motorcycle" if motor else "bicycle"]
    length = rng.uniform(1.8, 2.3) if motor else rng.uniform(1.6, 1.8)
    radius = 0.32 if motor else 0.34
    color = _pick(rng, [(0.1, 0.1, 0.1), (0.7, 0.1, 0.1), (0.15, 0.25, 0.6), (0.8, 0.8, 0.8), (0.2, 0.5, 0.3)], 0.08)
    prims = [
        Primitive(Shape.FRUSTUM, (radius, radius, 0.12), (sx * (length / 2 - radius), 0, radius), lab,
                  _jitter(rng, TIRE, 0.02), pitch=np.pi / 2, yaw=np.pi / 2)
        for sx in (1, -1)
    ]
    if motor:
        prims.append(_box((length * 0.55, 0.45, 0.45), (0, 0, 0.65), lab, color))
        prims.append(_box((0.2, 0.7, 0.12), (length / 2 - 0.45, 0, 1.05), lab, _jitter(rng, (0.15, 0.15, 0.15))))
        height = 1.2
    else:
        prims.append(_box((length * 0.6, 0.1, 0.1), (0, 0, 0.65), lab, color, pitch=0.25))
        prims.append(_box((0.1, 0.1, 0.5), (-0.25, 0, 0.75), lab, color))
        prims.append(_box((0.12, 0.55, 0.1), (length / 2 - 0.4, 0, 1.0), lab, _jitter(rng, (0.15, 0.15, 0.15))))
        height = 1.1
    if rng.random() < 0.5:  # a rider, annotated as part of the two-wheeler box (nuScenes: with_rider)
        cloth = _pick(rng, [(0.1, 0.1, 0.1), (0.8, 0.2, 0.1), (0.2, 0.3, 0.6)], 0.1)
        prims.append(_box((0.35, 0.45, 0.65), (-0.15, 0, 1.25), lab, cloth))
        prims.append(Primitive(Shape.ELLIPSOID, (0.13, 0.13, 0.15), (-0.1, 0, 1.75), lab,
                               _pick(rng, [(0.9, 0.9, 0.9), (0.1, 0.1, 0.1), (0.8, 0.6, 0.1)])))
        height = 1.9
    name = "motorcycle" if motor else "bicycle"
    return SceneObject(prims, (0, 0, 0, 0), det_name=name, box_size=(length, 0.8 if motor else 0.6, height))


def make_barrier(rng: np.random.Generator) -> SceneObject:
    lab = L["barrier"]
    length, width, height = rng.uniform(1.5, 3.0), rng.uniform(0.35, 0.6), rng.uniform(0.8, 1.1)
    if rng.random() < 0.5:  # concrete jersey barrier
        prims = [_box((length, width, height), (0, 0, height / 2), lab, _jitter(rng, (0.72, 0.72, 0.68)),
                      texture=Texture.STRIPES, color2=_jitter(rng, (0.5, 0.5, 0.48)), params=(0.25, 0.2))]
    else:  # striped plastic barrier
        prims = [_box((length, width * 0.6, height), (0, 0, height / 2), lab, _pick(rng, [(0.9, 0.3, 0.05),
                      (0.85, 0.1, 0.1)]), texture=Texture.STRIPES, color2=_jitter(rng, (0.95, 0.95, 0.95)),
                      params=(0.3, 0.5))]
    return SceneObject(prims, (0, 0, 0, 0), det_name="barrier", box_size=(length, width, height))


def make_cone(rng: np.random.Generator) -> SceneObject:
    lab = L["traffic_cone"]
    height = rng.uniform(0.5, 0.9)
    r = height * rng.uniform(0.25, 0.32)
    prims = [
        _box((2 * r + 0.1, 2 * r + 0.1, 0.05), (0, 0, 0.025), lab, _jitter(rng, (0.1, 0.1, 0.1))),
        Primitive(Shape.FRUSTUM, (r, 0.03, height - 0.05), (0, 0, 0.05 + (height - 0.05) / 2), lab,
                  _pick(rng, [(0.95, 0.4, 0.05), (0.95, 0.25, 0.05)]), texture=Texture.STRIPES,
                  color2=_jitter(rng, (0.95, 0.95, 0.95)), params=(height / 2.5, 0.35)),
    ]
    return SceneObject(prims, (0, 0, 0, 0), det_name="traffic_cone", box_size=(2 * r + 0.1, 2 * r + 0.1, height))


def make_other(rng: np.random.Generator) -> SceneObject:
    """Occ3D 'others': bins, crates, benches, debris (no detection class)."""
    lab = L["others"]
    kind = rng.integers(3)
    if kind == 0:  # wheelie bin
        c = _pick(rng, [(0.1, 0.35, 0.15), (0.1, 0.1, 0.1), (0.15, 0.25, 0.6)])
        prims = [_box((0.7, 0.6, 1.05), (0, 0, 0.525), lab, c)]
    elif kind == 1:  # crates / boxes
        c = _pick(rng, [(0.55, 0.4, 0.22), (0.6, 0.55, 0.45)])
        s = rng.uniform(0.5, 1.2)
        prims = [_box((s, s * rng.uniform(0.7, 1.3), s * 0.8), (0, 0, s * 0.4), lab, c, texture=Texture.TILES,
                      params=(s / 2,))]
    else:  # bench
        c = _pick(rng, [(0.45, 0.3, 0.15), (0.3, 0.3, 0.3)])
        prims = [_box((1.8, 0.5, 0.1), (0, 0, 0.45), lab, c), _box((1.8, 0.1, 0.45), (0, -0.22, 0.75), lab, c),
                 _box((0.1, 0.45, 0.4), (0.8, 0, 0.2), lab, c), _box((0.1, 0.45, 0.4), (-0.8, 0, 0.2), lab, c)]
    return SceneObject(prims, (0, 0, 0, 0))


def make_tree(rng: np.random.Generator) -> SceneObject:
    lab = L["vegetation"]
    trunk_h = rng.uniform(1.5, 4.0)
    trunk_r = rng.uniform(0.12, 0.25)
    crown = rng.uniform(1.5, 3.5)
    green = _pick(rng, [(0.15, 0.4, 0.12), (0.25, 0.45, 0.15), (0.1, 0.3, 0.12), (0.35, 0.45, 0.18)], 0.05)
    prims = [
        Primitive(Shape.FRUSTUM, (trunk_r, trunk_r * 0.8, trunk_h + crown * 0.5), (0, 0, (trunk_h + crown * 0.5) / 2),
                  lab, _pick(rng, [(0.35, 0.25, 0.15), (0.3, 0.28, 0.25)]), texture=Texture.ROUGH),
        Primitive(Shape.ELLIPSOID, (crown, crown * rng.uniform(0.8, 1.2), crown * rng.uniform(0.8, 1.4)),
                  (0, 0, trunk_h + crown), lab, green, texture=Texture.ROUGH),
    ]
    return SceneObject(prims, (0, 0, 0, 0))


def make_bush(rng: np.random.Generator) -> SceneObject:
    lab = L["vegetation"]
    a, b, c = rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0.4, 1.0)
    green = _pick(rng, [(0.2, 0.42, 0.12), (0.15, 0.32, 0.1), (0.3, 0.4, 0.15)], 0.05)
    return SceneObject([Primitive(Shape.ELLIPSOID, (a, b, c), (0, 0, c * 0.8), lab, green, texture=Texture.ROUGH)],
                       (0, 0, 0, 0))


def make_building(rng: np.random.Generator, length: float, depth: float) -> SceneObject:
    lab = L["manmade"]
    height = rng.uniform(4.0, 25.0)
    wall = _pick(rng, [(0.8, 0.75, 0.65), (0.9, 0.9, 0.88), (0.6, 0.3, 0.22), (0.55, 0.55, 0.55), (0.7, 0.6, 0.45),
                       (0.45, 0.5, 0.55)], 0.06)
    window = _pick(rng, [(0.1, 0.15, 0.25), (0.2, 0.25, 0.3), (0.05, 0.07, 0.1)], 0.04)
    params = (rng.uniform(0.8, 1.6), rng.uniform(1.0, 1.6), rng.uniform(3.0, 3.6), rng.uniform(2.2, 3.5))
    prims = [_box((length, depth, height), (0, 0, height / 2), lab, wall, texture=Texture.FACADE, color2=window,
                  params=params)]
    return SceneObject(prims, (0, 0, 0, 0))


def make_pole(rng: np.random.Generator) -> SceneObject:
    """A street light or a traffic sign post (manmade)."""
    lab = L["manmade"]
    metal = _pick(rng, [(0.45, 0.47, 0.5), (0.2, 0.22, 0.2), (0.6, 0.6, 0.58)])
    if rng.random() < 0.6:
        h = rng.uniform(5.0, 9.0)
        arm = rng.uniform(1.0, 2.5)
        prims = [
            Primitive(Shape.FRUSTUM, (0.15, 0.1, h), (0, 0, h / 2), lab, metal),
            _box((arm, 0.15, 0.15), (0, arm / 2, h - 0.1), lab, metal, yaw=np.pi / 2),
        ]
    else:
        h = rng.uniform(2.2, 3.2)
        sign = _pick(rng, [(0.1, 0.3, 0.7), (0.8, 0.1, 0.1), (0.9, 0.9, 0.9), (0.1, 0.5, 0.2)], 0.05)
        prims = [
            Primitive(Shape.FRUSTUM, (0.06, 0.06, h), (0, 0, h / 2), lab, metal),
            _box((0.1, 0.7, 0.7), (0, 0, h + 0.3), lab, sign, yaw=np.pi / 2),
        ]
    return SceneObject(prims, (0, 0, 0, 0))


def make_fence(rng: np.random.Generator, length: float) -> SceneObject:
    lab = L["manmade"]
    h = rng.uniform(1.0, 2.5)
    if rng.random() < 0.5:  # solid wall
        c = _pick(rng, [(0.7, 0.68, 0.62), (0.55, 0.3, 0.22), (0.5, 0.5, 0.5)])
        prims = [_box((length, 0.25, h), (0, 0, h / 2), lab, c, texture=Texture.TILES, params=(0.5,))]
    else:  # slatted fence
        c = _pick(rng, [(0.2, 0.3, 0.2), (0.35, 0.35, 0.38), (0.5, 0.38, 0.25)])
        prims = [_box((length, 0.1, h), (0, 0, h / 2), lab, c, texture=Texture.STRIPES,
                      color2=np.clip(c * 0.6, 0, 1), params=(0.4, 0.3))]
    return SceneObject(prims, (0, 0, 0, 0))


# ----------------------------------------------------------------------------------------------------------
# Layouts
# ----------------------------------------------------------------------------------------------------------

ASPHALT = (0.27, 0.27, 0.29)
PAVEMENT = [(0.62, 0.6, 0.56), (0.55, 0.55, 0.55), (0.68, 0.62, 0.52)]
GRASS = [(0.3, 0.45, 0.18), (0.38, 0.45, 0.2), (0.45, 0.4, 0.28)]
GROUND_Z = {"driveable_surface": 0.02, "sidewalk": 0.15, "other_flat": 0.12, "terrain": 0.0}
SLAB_BOTTOM = -0.15
WORLD_HALF = 160.0


@dataclass
class _Placer:
    """Rejects overlapping footprints (each object as circles along its length)."""

    circles: list[tuple[float, float, float]] = field(default_factory=list)

    def fits(self, x: float, y: float, yaw: float, length: float, width: float) -> bool:
        cs = self._circles(x, y, yaw, length, width)
        for cx, cy, r in cs:
            for ox, oy, orad in self.circles:
                if (cx - ox) ** 2 + (cy - oy) ** 2 < (r + orad) ** 2:
                    return False
        self.circles.extend(cs)
        return True

    @staticmethod
    def _circles(x, y, yaw, length, width):
        n = max(1, int(np.ceil(length / max(width, 0.3))))
        r = max(width, length / n) * 0.6 + 0.15
        offs = (np.arange(n) + 0.5) / n * length - length / 2
        return [(x + o * np.cos(yaw), y + o * np.sin(yaw), r) for o in offs]


def _ground(kind: str, x0: float, x1: float, y0: float, y1: float, along_y: bool = False, sink: float = 0.0,
            **kw) -> SceneObject:
    """A ground slab covering [x0, x1] x [y0, y1] in the world frame, top at the class's ground height.

    ``along_y`` turns the slab's own x axis to world y (road markings run along a slab's x axis); ``sink`` lowers
    the top a little, so overlapping slabs of one class do not z-fight in the images.
    """
    top = GROUND_Z[kind] - sink
    h = top - SLAB_BOTTOM
    dims = (y1 - y0, x1 - x0, h) if along_y else (x1 - x0, y1 - y0, h)
    centre = ((x0 + x1) / 2, (y0 + y1) / 2, SLAB_BOTTOM + h / 2)
    return SceneObject([_box(dims, centre, L[kind], kw.pop("color"), yaw=np.pi / 2 if along_y else 0.0, **kw)],
                       (0, 0, 0, 0))


@dataclass
class _Street:
    """The road layout of one scene (world frame, main road along x, optional cross road at ``cross_x``) and
    the objects placed on it so far."""

    rng: np.random.Generator
    layout: str  # straight | intersection | t_junction (the cross road only on the -y side)
    lanes: int  # per direction
    lane_w: float
    median: float  # width of the central reservation (0: none)
    walk: float  # sidewalk width
    verge: float  # terrain strip between sidewalk and buildings
    cross_x: float
    cross_half: float
    objs: list[SceneObject] = field(default_factory=list)
    placer: _Placer = field(default_factory=_Placer)

    @property
    def half(self) -> float:
        """Half width of the main road."""
        return self.lanes * self.lane_w + self.median / 2

    @property
    def cross(self) -> bool:
        return self.layout != "straight"

    def cross_side(self, side: int) -> bool:
        """Whether the cross road leaves the main road on this side (+1: +y, -1: -y)."""
        return self.cross and (self.layout == "intersection" or side == -1)

    def near_junction(self, x: float, margin: float) -> bool:
        return self.cross and abs(x - self.cross_x) < self.cross_half + margin

    def free_x(self) -> list[tuple[float, float]]:
        """Stretches of the main road's length outside the junction."""
        if not self.cross:
            return [(-WORLD_HALF, WORLD_HALF)]
        return [(-WORLD_HALF, self.cross_x - self.cross_half), (self.cross_x + self.cross_half, WORLD_HALF)]

    def add(self, obj: SceneObject, x: float, y: float, z: float, yaw: float, velocity=(0.0, 0.0)) -> None:
        obj.pose = (float(x), float(y), float(z), float(yaw))
        obj.velocity = (float(velocity[0]), float(velocity[1]))
        self.objs.append(obj)

    def road_x(self, avoid_junction: bool) -> float:
        while True:
            x = self.rng.uniform(-60, 60)
            if not (avoid_junction and self.near_junction(x, 3.0)):
                return x

    def sidewalk_point(self, margin: float = 0.3) -> tuple[float, float]:
        side = 1 if self.rng.random() < 0.5 else -1
        return self.road_x(True), side * self.rng.uniform(self.half + margin, self.half + self.walk - margin)


def _sample_street(rng: np.random.Generator) -> _Street:
    layout = ["straight", "intersection", "t_junction"][int(rng.choice(3, p=[0.4, 0.4, 0.2]))]
    lanes = int(rng.integers(1, 3))
    lane_w = rng.uniform(3.0, 3.7)
    median = rng.uniform(1.0, 3.0) if lanes == 2 and rng.random() < 0.4 else 0.0
    return _Street(rng, layout, lanes, lane_w, median, walk=rng.uniform(2.0, 5.0), verge=rng.uniform(0.0, 8.0),
                   cross_x=rng.uniform(-5.0, 35.0), cross_half=rng.uniform(3.0, 7.5))


def _add_ground(st: _Street) -> None:
    """Terrain base, main (and cross) road with markings, median, sidewalks, zebra crossings."""
    rng, half = st.rng, st.half
    road_color, pave_color = _jitter(rng, ASPHALT, 0.05), _pick(rng, PAVEMENT)
    marking = _jitter(rng, (0.92, 0.92, 0.9), 0.03)
    st.objs.append(_ground("terrain", -WORLD_HALF, WORLD_HALF, -WORLD_HALF, WORLD_HALF, color=_pick(rng, GRASS),
                           texture=Texture.ROUGH))
    st.objs.append(_ground("driveable_surface", -WORLD_HALF, WORLD_HALF, -half, half, color=road_color,
                           texture=Texture.ASPHALT, color2=marking,
                           params=(half, st.lane_w, 0.0, float(st.median == 0))))
    if st.cross:
        y_far = WORLD_HALF if st.layout == "intersection" else half
        st.objs.append(_ground("driveable_surface", st.cross_x - st.cross_half, st.cross_x + st.cross_half,
                               -WORLD_HALF, y_far, along_y=True, sink=0.008, color=_jitter(rng, ASPHALT, 0.04),
                               texture=Texture.ASPHALT, color2=marking,
                               params=(st.cross_half, st.cross_half, 0.0, 1.0)))
    if st.median > 0:
        median_color = _pick(rng, [(0.55, 0.35, 0.3), (0.5, 0.48, 0.42)])
        for xa, xb in st.free_x():
            st.objs.append(_ground("other_flat", xa, xb, -st.median / 2, st.median / 2, color=median_color,
                                   texture=Texture.TILES, params=(0.4,)))
    for side in (1, -1):
        y0, y1 = sorted((side * half, side * (half + st.walk)))
        for xa, xb in st.free_x() if st.cross_side(side) else [(-WORLD_HALF, WORLD_HALF)]:
            st.objs.append(_ground("sidewalk", xa, xb, y0, y1, color=pave_color, texture=Texture.TILES,
                                   params=(rng.uniform(0.4, 0.8),)))
    if not st.cross:
        return
    for sx in (-1, 1):  # sidewalks along the cross road
        xa, xb = sorted((st.cross_x + sx * st.cross_half, st.cross_x + sx * (st.cross_half + st.walk)))
        for side in (1, -1):
            if st.cross_side(side):
                ya, yb = sorted((side * (half + st.walk), side * WORLD_HALF))
                st.objs.append(_ground("sidewalk", xa, xb, ya, yb, color=pave_color, texture=Texture.TILES,
                                       params=(0.5,)))
    for xs in (st.cross_x - st.cross_half - 2.5, st.cross_x + st.cross_half + 2.5):  # zebra crossings
        for k in range(int(2 * half)):
            centre = (xs, -half + 0.5 + k, GROUND_Z["driveable_surface"] + 0.006)
            st.objs.append(SceneObject([_box((2.5, 0.5, 0.012), centre, L["driveable_surface"], marking,
                                             voxelize=False)], (0, 0, 0, 0)))


_VEHICLE_MAKERS = {"car": make_car, "truck": make_truck, "bus": make_bus, "trailer": make_trailer,
                   "construction": make_construction_vehicle}


def _add_traffic(st: _Street, ego_lane: int, ego_speed: float) -> None:
    """Vehicles in the lanes (one speed per lane, so nothing collides), parked ones along the kerbs, and
    vehicles waiting on the cross road."""
    rng, half = st.rng, st.half
    lanes = {}  # (lane, direction) -> (y, vx); right-hand traffic: +x lanes at y < 0
    for li in range(st.lanes):
        for direction in (1, -1):
            lane_y = -direction * (st.median / 2 + st.lane_w * (li + 0.5))
            v = ego_speed if (li, direction) == (ego_lane, 1) else (rng.uniform(0, 14) if rng.random() < 0.8 else 0.0)
            lanes[(li, direction)] = (lane_y, v * direction)
    for _ in range(int(rng.integers(6, 26))):
        kind = str(rng.choice(["car", "truck", "bus", "trailer", "construction", "motorcycle", "bicycle"],
                              p=[0.62, 0.1, 0.06, 0.05, 0.04, 0.07, 0.06]))
        maker = _VEHICLE_MAKERS.get(kind)
        obj = maker(rng) if maker else make_two_wheeler(rng, motor=kind == "motorcycle")
        length, width, _ = obj.box_size
        parked = rng.random() < 0.3 or kind == "construction"
        for _try in range(12):
            if parked:
                side = 1 if rng.random() < 0.5 else -1
                y, x = side * (half - width / 2 - 0.3), st.road_x(True)
                yaw, vel = (0.0 if side < 0 else np.pi) + rng.normal(0, 0.05), (0.0, 0.0)
            else:
                li, direction = int(rng.integers(st.lanes)), int(rng.choice([1, -1]))
                lane_y, vx = lanes[(li, direction)]
                y, x = lane_y + rng.normal(0, 0.2), st.road_x(False)
                yaw, vel = (0.0 if direction > 0 else np.pi) + rng.normal(0, 0.02), (vx, 0.0)
            if st.placer.fits(x, y, yaw, length, width):
                st.add(obj, x, y, GROUND_Z["driveable_surface"], yaw, vel)
                break
    if not st.cross:
        return
    for _ in range(int(rng.integers(0, 5))):
        obj = make_car(rng) if rng.random() < 0.8 else make_truck(rng)
        length, width, _ = obj.box_size
        for _try in range(8):
            sy = -1 if st.layout == "t_junction" else int(rng.choice([1, -1]))
            y = sy * rng.uniform(half + st.walk + 2, 45)
            x = st.cross_x + (st.cross_half / 2 if sy < 0 else -st.cross_half / 2) + rng.normal(0, 0.2)
            yaw = (np.pi / 2 if sy < 0 else -np.pi / 2) + rng.normal(0, 0.03)
            if st.placer.fits(x, y, yaw, length, width):
                st.add(obj, x, y, GROUND_Z["driveable_surface"], yaw)
                break


def _add_work_zone(st: _Street) -> None:
    """A line of cones on the road edge and a row of barriers (road edge or sidewalk), each with a chance."""
    rng, half = st.rng, st.half
    if rng.random() < 0.5:
        side = 1 if rng.random() < 0.5 else -1
        x_start, y_line = rng.uniform(-30, 30), side * (half - rng.uniform(0.5, st.lane_w))
        for k in range(int(rng.integers(3, 12))):
            obj = make_cone(rng)
            x = x_start + k * rng.uniform(1.5, 3.0)
            if st.placer.fits(x, y_line + rng.normal(0, 0.1), 0.0, 0.4, 0.4):
                st.add(obj, x, y_line, GROUND_Z["driveable_surface"], rng.uniform(-np.pi, np.pi))
    if rng.random() < 0.6:
        side = 1 if rng.random() < 0.5 else -1
        x = rng.uniform(-40, 20)
        y = side * (half - 0.5) if rng.random() < 0.5 else side * (half + st.walk - 0.5)
        z = GROUND_Z["driveable_surface"] if abs(y) < half else GROUND_Z["sidewalk"]
        for _ in range(int(rng.integers(2, 10))):
            obj = make_barrier(rng)
            length = obj.box_size[0]
            if st.placer.fits(x + length / 2, y, 0.0, length, obj.box_size[1]):
                st.add(obj, x + length / 2, y, z, rng.normal(0, 0.03))
            x += length + rng.uniform(0.05, 1.5)


def _add_sidewalk_life(st: _Street) -> None:
    """Pedestrians (walking, some on the zebra crossing), parked two-wheelers, bins, crates and benches."""
    rng, half = st.rng, st.half
    for _ in range(int(rng.integers(3, 22))):
        obj = make_pedestrian(rng)
        for _try in range(8):
            if st.cross and rng.random() < 0.15:
                x, y = st.cross_x - st.cross_half - 2.5 + rng.normal(0, 0.4), rng.uniform(-half, half)
                z, yaw = GROUND_Z["driveable_surface"], np.pi / 2 * rng.choice([1, -1])
            else:
                x, y = st.sidewalk_point()
                z, yaw = GROUND_Z["sidewalk"], float(rng.choice([0.0, np.pi])) + rng.normal(0, 0.3)
            speed = rng.uniform(0.0, 1.6) if rng.random() < 0.7 else 0.0
            if st.placer.fits(x, y, yaw, 0.6, 0.6):
                st.add(obj, x, y, z, yaw, (speed * np.cos(yaw), speed * np.sin(yaw)))
                break
    for _ in range(int(rng.integers(0, 5))):
        obj = make_two_wheeler(rng, motor=rng.random() < 0.4)
        x, y = st.sidewalk_point(0.6)
        yaw = np.pi / 2 + rng.normal(0, 0.2)
        if st.placer.fits(x, y, yaw, obj.box_size[0], obj.box_size[1]):
            st.add(obj, x, y, GROUND_Z["sidewalk"], yaw)
    for _ in range(int(rng.integers(0, 9))):
        obj = make_other(rng)
        x, y = st.sidewalk_point(0.5)
        if st.placer.fits(x, y, 0.0, 1.0, 1.0):
            st.add(obj, x, y, GROUND_Z["sidewalk"], rng.uniform(-np.pi, np.pi))


def _add_street_furniture(st: _Street) -> None:
    """Street lights / sign posts along the kerbs and, on some sides, a row of street trees."""
    rng, half = st.rng, st.half
    pole_step = rng.uniform(12, 30)
    for side in (1, -1):
        x = -WORLD_HALF / 3 + rng.uniform(0, pole_step)
        while x < WORLD_HALF / 3:
            if not st.near_junction(x, 1.0):
                obj = make_pole(rng)
                obj.prims = [_mirror_arm(p, side) for p in obj.prims]
                if st.placer.fits(x, side * (half + 0.4), 0.0, 0.4, 0.4):
                    st.add(obj, x, side * (half + 0.4), GROUND_Z["sidewalk"], 0.0)
            x += pole_step * rng.uniform(0.8, 1.2)
        if rng.random() < 0.6:
            x, step = -WORLD_HALF / 3 + rng.uniform(0, 8), rng.uniform(7, 15)
            while x < WORLD_HALF / 3:
                y = side * (half + st.walk - rng.uniform(0.6, 1.2))
                if not st.near_junction(x, st.walk) and st.placer.fits(x, y, 0.0, 0.6, 0.6):
                    st.add(make_tree(rng), x, y, GROUND_Z["sidewalk"], 0.0)
                x += step * rng.uniform(0.7, 1.3)


def _add_roadside(st: _Street) -> None:
    """Beyond the sidewalks: bushes and trees on the verge, then buildings, walls/fences or woods; buildings
    along the cross road."""
    rng = st.rng
    edge = st.half + st.walk
    frontage = edge + st.verge
    for side in (1, -1):
        for _ in range(int(st.verge * rng.uniform(0.5, 2.0))):
            x, y = rng.uniform(-70, 70), side * (edge + rng.uniform(0.5, max(st.verge, 0.6)))
            if not st.near_junction(x, st.walk + 2):
                st.add(make_bush(rng) if rng.random() < 0.7 else make_tree(rng), x, y, 0.0, rng.uniform(-np.pi, np.pi))
        style = rng.choice(["buildings", "woods", "fence"], p=[0.65, 0.2, 0.15])
        x = -WORLD_HALF / 2
        while x < WORLD_HALF / 2:
            length = rng.uniform(6.0, 30.0)
            xa, xb = x, x + length
            x = xb + rng.uniform(0.0, 6.0)
            if st.cross_side(side) and xb > st.cross_x - st.cross_half - st.walk - 1 \
                    and xa < st.cross_x + st.cross_half + st.walk + 1:
                continue
            if style == "buildings" or rng.random() < 0.2:
                depth = rng.uniform(8.0, 20.0)
                obj = make_building(rng, length, depth)
                st.add(obj, (xa + xb) / 2, side * (frontage + depth / 2 + rng.uniform(0, 2)), 0.0, 0.0)
            elif style == "fence":
                st.add(make_fence(rng, length), (xa + xb) / 2, side * (frontage + 0.3), 0.0, 0.0)
            else:
                for _ in range(int(length / 3)):
                    tree = make_tree(rng)
                    st.add(tree, rng.uniform(xa, xb), side * (frontage + rng.uniform(1, 12)), 0.0, 0.0)
    if not st.cross:
        return
    for sx in (-1, 1):
        for sy in (1, -1):
            if not st.cross_side(sy):
                continue
            y = edge + rng.uniform(2, 6)
            while y < 80:
                length, depth = rng.uniform(8, 25), rng.uniform(8, 18)
                obj = make_building(rng, length, depth)
                xc = st.cross_x + sx * (st.cross_half + st.walk + st.verge * 0.3 + depth / 2 + 0.5)
                st.add(obj, xc, sy * (y + length / 2), 0.0, np.pi / 2)
                y += length + rng.uniform(0, 5)


def generate_scene(rng: np.random.Generator, duration: float) -> Scene:
    """A random street scene whose ego drives along +x (in a +x lane) for ``duration`` seconds."""
    st = _sample_street(rng)
    ego_speed = float(rng.choice([0.0, rng.uniform(2.0, 12.0)], p=[0.15, 0.85]))
    ego_lane = int(rng.integers(st.lanes))
    ego_y = -st.median / 2 - st.lane_w * (ego_lane + 0.5)
    ego_x0, ego_yaw = -ego_speed * duration / 2, rng.normal(0.0, 0.03)
    _add_ground(st)
    for k in range(8):  # keep the ego's path clear
        st.placer.fits(ego_x0 + k / 7 * ego_speed * duration, ego_y, ego_yaw, 5.0, 2.2)
    _add_traffic(st, ego_lane, ego_speed)
    _add_work_zone(st)
    _add_sidewalk_life(st)
    _add_street_furniture(st)
    _add_roadside(st)

    sun_el, sun_az = rng.uniform(0.35, 1.2), rng.uniform(-np.pi, np.pi)
    overcast = rng.random() < 0.3
    horizon = _jitter(rng, (0.75, 0.8, 0.85) if overcast else (0.7, 0.8, 0.92), 0.05)
    return Scene(
        objects=st.objs,
        ego_start=(float(ego_x0), float(ego_y), float(ego_yaw)),
        ego_velocity=(float(ego_speed * np.cos(ego_yaw)), float(ego_speed * np.sin(ego_yaw))),
        sun=np.array([np.cos(sun_el) * np.cos(sun_az), np.cos(sun_el) * np.sin(sun_az), np.sin(sun_el)]),
        ambient=float(rng.uniform(0.5, 0.7) if overcast else rng.uniform(0.3, 0.45)),
        sky_horizon=horizon,
        sky_zenith=_jitter(rng, (0.6, 0.63, 0.68) if overcast else (0.3, 0.5, 0.85), 0.05),
        fog_color=horizon.copy(),
        fog_distance=float(rng.uniform(120.0, 400.0)),
        layout=st.layout,
        noise_seed=int(rng.integers(0, 2**31)),
    )


def _mirror_arm(p: Primitive, side: int) -> Primitive:
    """Street-light arms reach over the road: towards -y on the left side of the road."""
    if p.center[1] != 0:
        p.center = (p.center[0], -side * abs(p.center[1]), p.center[2])
    return p

