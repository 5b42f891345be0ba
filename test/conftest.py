"""Session-wide test setup: network isolation check and the ROS fixtures of ros_harness.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ros_harness

from bdc_occ_ros.openmp import load_system_openmp

_MODE_KEY = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    load_system_openmp()  # before any test imports torch: the OpenMP runtime the entry points give torch
    # Before any test imports rclpy: set the loopback defaults, refuse to run when DDS could leave the machine.
    try:
        mode = ros_harness.configure_session_environment()
    except RuntimeError as err:
        pytest.exit(str(err), returncode=3)
    config.stash[_MODE_KEY] = mode


def pytest_report_header(config: pytest.Config) -> str:
    return f"ROS network isolation: {config.stash.get(_MODE_KEY, 'unknown')}"


@pytest.fixture
def ros_domain_id() -> Iterator[int]:
    """A ROS_DOMAIN_ID leased for this test only (machine-wide lock)."""
    lease = ros_harness.lease_domain_id()
    try:
        yield lease.domain_id
    finally:
        lease.release()


@pytest.fixture
def ros_log_dir(tmp_path: Path) -> Path:
    """Where child processes' stdout/stderr and ROS logs go (kept by pytest's tmp_path retention)."""
    path = tmp_path / "ros_logs"
    path.mkdir()
    return path


@pytest.fixture
def ros_processes(ros_domain_id: int, ros_log_dir: Path) -> Iterator[ros_harness.RosLauncher]:
    """Start ROS child processes on the test's domain id; all are stopped (SIGINT, then SIGKILL) at teardown."""
    launcher = ros_harness.RosLauncher(ros_domain_id, ros_log_dir)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture
def ros_node(ros_domain_id: int, request: pytest.FixtureRequest) -> Iterator[ros_harness.TestNode]:
    """The test process's own rclpy Context + Node + executor on the test's domain id."""
    name = "test_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    yield from ros_harness.iter_test_node(ros_domain_id, name)
