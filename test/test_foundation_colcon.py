"""A colcon build of this repository into a throwaway workspace, with the venv's tooling as the ROS underlay.

The source copy holds what a fresh clone holds (git-tracked plus untracked, non-ignored files), so
a missing install rule or an untracked-but-needed directory fails here as it would for a user.
The import check runs in a fresh bash after `source install/setup.bash` and proves that both the
generated messages and our modules (and the shared libraries) come from the install space, not
from the repository or the developer venv (ros_package_layout.md §6.11).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
PKG = "bdc_occ_ros"
# Not part of a clone (or generated): never copied into the workspace.
SKIP_TOP = {".git", ".venv", "build", "install", "log", "data", "demo_output", "runs", "out"}


def _source_files() -> list[Path]:
    """Repository files a fresh clone would have (+ untracked, non-ignored ones), relative to REPO."""
    try:
        listed = (
            subprocess.run(
                ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                check=True,
                capture_output=True,
            )
            .stdout.decode()
            .split("\0")
        )
        files = [Path(p) for p in listed if p]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. a source tarball)
        files = [p.relative_to(REPO) for p in REPO.rglob("*") if p.is_file() or p.is_symlink()]
    return [f for f in files if f.parts[0] not in SKIP_TOP and "__pycache__" not in f.parts and (REPO / f).is_file()]


@pytest.fixture(scope="module")
def colcon_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("colcon_ws")
    src = ws / "src" / PKG
    for rel in _source_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    env = dict(os.environ)
    env.update(
        PATH=f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        CMAKE_PREFIX_PATH=str(VENV),
        AMENT_PREFIX_PATH=str(VENV),
    )
    env.pop("PYTHONPATH", None)
    cmd = [
        "nice",
        "-n",
        "10",
        str(VENV / "bin" / "colcon"),
        "--log-base",
        "log",
        "build",
        "--base-paths",
        "src",
        "--build-base",
        "build",
        "--install-base",
        "install",
        "--event-handlers",
        "console_direct-",
        "console_cohesion+",
        "--cmake-args",
        f"-DPython3_EXECUTABLE={VENV / 'bin' / 'python'}",
        "-DBUILD_TESTING=OFF",
    ]
    result = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    (ws / "colcon_build.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"colcon build failed ({ws}):\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    return ws


@pytest.mark.slow
def test_install_space_has_node_launch_config_models(colcon_ws: Path):
    prefix = colcon_ws / "install" / PKG
    node = prefix / "lib" / PKG / "bdc_occ_node"
    assert node.is_file() and os.access(node, os.X_OK), node
    assert node.read_text().splitlines()[0] == f"#!{VENV / 'bin' / 'python'}"
    share = prefix / "share" / PKG
    assert (share / "package.xml").is_file()
    assert (share / "msg" / "SemanticVoxelGrid.msg").read_text() == (REPO / "msg" / "SemanticVoxelGrid.msg").read_text()
    assert (share / "config" / "fastdds_shm.xml").is_file()
    src_share = colcon_ws / "src" / PKG
    # Every shipped launch/config/model file of the clone is installed (launch files and models come later).
    for sub in ("launch", "config", "models"):
        shipped = sorted(p.relative_to(src_share) for p in (src_share / sub).rglob("*") if p.is_file())
        missing = [str(p) for p in shipped if not (share / p).is_file()]
        assert not missing, f"not installed: {missing}"


_PROBE = r"""
import json, os, sys
import bdc_occ_ros, bdc_occ_ros.geometry
from bdc_occ_ros.msg import SemanticVoxelGrid
from bdc_occ_ros.msgdefs import project_msg_dir
from rclpy.serialization import serialize_message
from ament_index_python.packages import get_package_share_directory, get_package_prefix
msg = SemanticVoxelGrid(); msg.labels = bytes(8)
serialize_message(msg)  # loads the type support libraries
# by file name: a checkout in a folder named bdc_occ_ros puts that name in every venv library's path
paths = {line.split()[-1] for line in open("/proc/self/maps")}
libs = sorted(p for p in paths if os.path.basename(p).startswith("libbdc_occ_ros__") and ".so" in p)
print(json.dumps({
    "init": bdc_occ_ros.__file__, "geometry": bdc_occ_ros.geometry.__file__,
    "msg": sys.modules["bdc_occ_ros.msg"].__file__, "msg_dir": str(project_msg_dir()), "libs": libs,
    "share": get_package_share_directory("bdc_occ_ros"), "prefix": get_package_prefix("bdc_occ_ros"),
    "version": bdc_occ_ros.__version__,
}))
"""


@pytest.mark.slow
def test_fresh_shell_imports_messages_and_modules_from_the_install_space(colcon_ws: Path, tmp_path: Path):
    install = colcon_ws / "install"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH")}
    # The venv's bootstrapper re-execs python with LD_LIBRARY_PATH rebuilt from a set (random order), which
    # can put the venv's own libbdc_occ_ros__*.so first. Keeping _ROS_WHEELS_BOOTSTRAP_COMPLETE=1 and the
    # already bootstrapped LD_LIBRARY_PATH makes setup.bash's prepended install/lib win deterministically.
    assert env.get("_ROS_WHEELS_BOOTSTRAP_COMPLETE") == "1"
    script = f'source "{install}/setup.bash" && exec "{VENV / "bin" / "python"}" -c "$PROBE"'
    env["PROBE"] = _PROBE
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    prefix = install / PKG
    for key in ("init", "geometry", "msg", "msg_dir", "share", "prefix"):
        assert Path(info[key]).is_relative_to(prefix), f"{key} = {info[key]} is not from {prefix}"
    assert info["libs"] and all(Path(lib).is_relative_to(prefix) for lib in info["libs"]), info["libs"]
    assert info["version"]
