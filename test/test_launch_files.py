"""launch/*.launch.py and config/bdc_occ.rviz, checked structurally: launch and launch_ros cannot be installed
from PyPI here, so the files run against recording stand-ins of the launch API (dependency_probes.md §10),
and what they would start (nodes, parameters, environment, included files) is checked."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import pytest
import yaml
from node_support import REPO_ROOT

from bdc_occ_ros.ros.convert import OUTPUT_TOPICS
from bdc_occ_ros.ros.params import NodeParams

SHARE = "<share/bdc_occ_ros>"


class Recorded:
    """A stand-in launch entity: remembers its class name, positional and keyword arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __repr__(self):
        return f"{type(self).__name__}{self.args}{self.kwargs}"


class LaunchConfiguration(Recorded):
    def perform(self, context):
        return context.launch_configurations[self.args[0]]


class PathJoinSubstitution(Recorded):
    def perform(self, context):
        return "/".join(_perform(p, context) for p in self.args[0])


class FindPackageShare(Recorded):
    def perform(self, context):
        return SHARE


def _perform(value, context):
    return value.perform(context) if hasattr(value, "perform") else value


@pytest.fixture
def launch_stubs(monkeypatch):
    """Install stand-in modules for launch / launch_ros; yields the name -> class table."""
    classes = {name: type(name, (Recorded,), {}) for name in (
        "LaunchDescription", "DeclareLaunchArgument", "SetEnvironmentVariable", "OpaqueFunction", "IfCondition",
        "Node", "IncludeLaunchDescription", "ExecuteProcess", "PythonLaunchDescriptionSource")}
    classes.update(LaunchConfiguration=LaunchConfiguration, PathJoinSubstitution=PathJoinSubstitution,
                   FindPackageShare=FindPackageShare)
    modules = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "SetEnvironmentVariable", "OpaqueFunction",
                           "IncludeLaunchDescription", "ExecuteProcess"],
        "launch.conditions": ["IfCondition"],
        "launch.substitutions": ["LaunchConfiguration", "PathJoinSubstitution"],
        "launch.launch_description_sources": ["PythonLaunchDescriptionSource"],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
        "launch_ros.substitutions": ["FindPackageShare"],
    }
    for name, members in modules.items():
        module = types.ModuleType(name)
        for member in members:
            setattr(module, member, classes[member])
        monkeypatch.setitem(sys.modules, name, module)
    return classes


def _load(name: str) -> types.ModuleType:
    path = REPO_ROOT / "launch" / name
    tree = ast.parse(path.read_text(), str(path))
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    module = types.ModuleType(name.replace(".", "_"))
    exec(compile(tree, str(path), "exec"), module.__dict__)
    return module


class Context:
    def __init__(self, **configurations):
        self.launch_configurations = configurations


def _entities(description, cls):
    return [e for e in description.args[0] if isinstance(e, cls)]


def _defaults(description, stubs) -> dict:
    ctx = Context()
    return {a.args[0]: _perform(a.kwargs.get("default_value"), ctx)
            for a in _entities(description, stubs["DeclareLaunchArgument"])}


def _check_fastdds_profile(description, stubs):
    env = {e.args[0]: _perform(e.args[1], Context()) for e in _entities(description, stubs["SetEnvironmentVariable"])}
    assert env == {"FASTDDS_DEFAULT_PROFILES_FILE": f"{SHARE}/config/fastdds_shm.xml",
                   "FASTRTPS_DEFAULT_PROFILES_FILE": f"{SHARE}/config/fastdds_shm.xml"}
    assert (REPO_ROOT / "config" / "fastdds_shm.xml").is_file()


def test_bdc_occ_launch(launch_stubs):
    module = _load("bdc_occ.launch.py")
    description = module.generate_launch_description()
    defaults = _defaults(description, launch_stubs)
    assert {"params_file", "calibration_file", "model_config", "checkpoint", "engine", "use_sim_time", "namespace",
            "rviz"} <= set(defaults)
    assert defaults["params_file"] == f"{SHARE}/config/bdc_occ.param.yaml"
    assert defaults["use_sim_time"] == "false" and defaults["rviz"] == "false"
    _check_fastdds_profile(description, launch_stubs)

    # the node, as the OpaqueFunction creates it: empty overrides keep params_file's values
    (opaque,) = _entities(description, launch_stubs["OpaqueFunction"])
    ctx = Context(**{**defaults, "params_file": "/p.yaml", "calibration_file": "/calib.yaml", "engine": "bitwise",
                     "use_camera_info": "false", "use_sim_time": "true", "namespace": "car1"})
    (node,) = opaque.kwargs["function"](ctx)
    assert node.kwargs["package"] == "bdc_occ_ros" and node.kwargs["executable"] == "bdc_occ_node"
    assert node.kwargs["name"] == "bdc_occ" and node.kwargs["respawn"] is False
    assert _perform(node.kwargs["namespace"], ctx) == "car1"
    params_file, overrides = node.kwargs["parameters"]
    assert params_file == "/p.yaml"
    assert overrides == {"calibration_file": "/calib.yaml", "engine": "bitwise", "use_camera_info": False,
                         "use_sim_time": True}
    known = {f for f in NodeParams.__dataclass_fields__} | {"use_sim_time"}
    assert set(overrides) <= known
    assert set(module.STRING_OVERRIDES) | set(module.BOOL_OVERRIDES) <= known

    # RViz, only with rviz:=true
    (rviz,) = [n for n in _entities(description, launch_stubs["Node"]) if n.kwargs["package"] == "rviz2"]
    assert _perform(rviz.kwargs["arguments"][1], Context()) == f"{SHARE}/config/bdc_occ.rviz"
    assert rviz.kwargs["condition"].args[0].args[0] == "rviz"


def test_the_launched_executable_and_files_are_installed():
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    assert "DESTINATION lib/${PROJECT_NAME}" in cmake and "bdc_occ_node" in cmake
    assert "DESTINATION share/${PROJECT_NAME}" in cmake and "launch" in cmake and "config" in cmake
    assert "bdc_occ_node = bdc_occ_ros.ros.node:main" in (REPO_ROOT / "setup.py").read_text()


@pytest.mark.parametrize("layout", ["nuscenes_rosbag", "nuscenes2bag", "ros2_dataset_bridge"])
def test_nuscenes_replay_presets(launch_stubs, layout):
    module = _load("nuscenes_replay.launch.py")
    description = module.generate_launch_description()
    defaults = _defaults(description, launch_stubs)
    assert defaults["calibration_file"] == f"{SHARE}/config/calibration/nuscenes.yaml"
    assert (REPO_ROOT / "config" / "calibration" / "nuscenes.yaml").is_file()
    _check_fastdds_profile(description, launch_stubs)
    (opaque,) = _entities(description, launch_stubs["OpaqueFunction"])

    actions = opaque.kwargs["function"](Context(**{**defaults, "layout": layout, "bag": "/bags/scene.mcap"}))
    include, play = actions
    assert _perform(include.args[0].args[0], Context()) == f"{SHARE}/launch/bdc_occ.launch.py"
    arguments = {k: _perform(v, Context(**defaults)) for k, v in include.kwargs["launch_arguments"]}
    assert arguments["use_sim_time"] == "true"
    assert arguments["calibration_file"] == f"{SHARE}/config/calibration/nuscenes.yaml"
    assert play.kwargs["cmd"] == ["ros2", "bag", "play", "--clock", "/bags/scene.mcap"]
    # the preset is a valid node configuration, with the topics of that bag layout
    params = NodeParams.from_dict({
        "transport": arguments["transport"], "image_topic": arguments["image_topic"],
        "camera_info_topic": arguments["camera_info_topic"], "use_camera_info": arguments["use_camera_info"] == "true",
        "calibration_file": arguments["calibration_file"]})
    expected = {"nuscenes_rosbag": "/CAM_FRONT/image_rect_compressed", "nuscenes2bag": "cam_front/raw",
                "ros2_dataset_bridge": "/nuscenes/CAM_FRONT/image"}[layout]
    assert params.image_topic_for("CAM_FRONT") == expected

    assert len(opaque.kwargs["function"](Context(**{**defaults, "layout": layout, "bag": ""}))) == 1
    with pytest.raises(ValueError, match="layout"):
        opaque.kwargs["function"](Context(**{**defaults, "layout": "kitti"}))


def test_rviz_config_shows_the_node_outputs():
    config = yaml.safe_load((REPO_ROOT / "config" / "bdc_occ.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "base_link"
    displays = {d["Class"]: d for d in manager["Displays"]}
    cloud = displays["rviz_default_plugins/PointCloud2"]
    assert cloud["Topic"]["Value"] == f"/bdc_occ/{OUTPUT_TOPICS['points']}"
    assert (cloud["Style"], cloud["Size (m)"], cloud["Color Transformer"]) == ("Boxes", 0.4, "RGB8")
    assert displays["rviz_default_plugins/Map"]["Topic"]["Value"] == f"/bdc_occ/{OUTPUT_TOPICS['grid']}"
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == f"/bdc_occ/{OUTPUT_TOPICS['markers']}"
    assert displays["rviz_default_plugins/Image"]["Topic"]["Value"].startswith("/CAM_FRONT/")


def test_launch_files_parse_as_python():
    for path in Path(REPO_ROOT / "launch").glob("*.launch.py"):
        ast.parse(path.read_text(), str(path))
