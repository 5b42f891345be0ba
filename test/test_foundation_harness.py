"""The ROS test harness itself: isolation checks, domain leases, child process control, waiting helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import ros_harness
from ros_harness import FASTDDS_PROFILE, REPO_ROOT, loopback_fallback_problems, spin_until, wait_for_publishers

NS = {"dds": "http://www.eprosima.com"}
IMAGE_BYTES = 1600 * 900 * 3


def _fallback_env(**overrides: str) -> dict[str, str]:
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "FASTDDS_DEFAULT_PROFILES_FILE": str(FASTDDS_PROFILE)}
    env.update(overrides)
    return env


def test_shipped_profile_is_a_valid_loopback_only_big_shm_profile():
    root = ET.parse(FASTDDS_PROFILE).getroot()
    descriptors = {
        d.findtext("dds:transport_id", namespaces=NS): d for d in root.iterfind(".//dds:transport_descriptor", NS)
    }
    kinds = {d.findtext("dds:type", namespaces=NS): d for d in descriptors.values()}
    assert set(kinds) == {"SHM", "UDPv4"}
    shm, udp = kinds["SHM"], kinds["UDPv4"]
    segment = int(shm.findtext("dds:segment_size", namespaces=NS))
    max_msg = int(shm.findtext("dds:maxMessageSize", namespaces=NS))
    assert IMAGE_BYTES < max_msg <= segment <= 64 * 2**20  # one image per message; fits Docker's /dev/shm
    assert [a.text for a in udp.iterfind("dds:interfaceWhiteList/dds:address", NS)] == ["127.0.0.1"]
    participant = root.find(".//dds:participant", NS)
    assert participant.get("is_default_profile") == "true"
    assert participant.findtext("dds:rtps/dds:useBuiltinTransports", namespaces=NS) == "false"
    used = [t.text for t in participant.iterfind("dds:rtps/dds:userTransports/dds:transport_id", NS)]
    assert sorted(used) == sorted(descriptors)


def test_fallback_check_accepts_the_default_and_names_each_problem(tmp_path: Path):
    assert loopback_fallback_problems(_fallback_env()) == []
    assert loopback_fallback_problems(_fallback_env(FASTRTPS_DEFAULT_PROFILES_FILE=str(FASTDDS_PROFILE))) == []
    open_profile = tmp_path / "open.xml"
    open_profile.write_text(FASTDDS_PROFILE.read_text().replace("<address>127.0.0.1</address>", ""))
    cases = {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": _fallback_env(ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET"),
        "does not restrict UDP": _fallback_env(FASTDDS_DEFAULT_PROFILES_FILE=str(open_profile)),
        "missing": _fallback_env(FASTDDS_DEFAULT_PROFILES_FILE=str(tmp_path / "nope.xml")),
        "ROS_STATIC_PEERS": _fallback_env(ROS_STATIC_PEERS="192.0.2.7"),
    }
    for needle, env in cases.items():
        problems = loopback_fallback_problems(env)
        assert len(problems) == 1 and needle in problems[0], (needle, problems)
    no_profile = _fallback_env()
    del no_profile["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in loopback_fallback_problems(no_profile)[0]


def test_session_environment_is_safe():
    # conftest ran configure_session_environment(): this session is isolated or fully in fallback mode.
    assert ros_harness.network_isolated() or loopback_fallback_problems(os.environ) == []
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"


def test_configure_refuses_an_unsafe_environment_outside_a_namespace(monkeypatch):
    monkeypatch.setattr(ros_harness, "network_isolated", lambda: False)
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    with pytest.raises(RuntimeError, match=r"refusing to run ROS tests.*SUBNET"):
        ros_harness.configure_session_environment(env)
    env = {}
    assert ros_harness.configure_session_environment(env) == "loopback-fallback"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(FASTDDS_PROFILE)


def test_domain_leases_are_exclusive_until_released():
    first = ros_harness.lease_domain_id()
    second = ros_harness.lease_domain_id()
    try:
        assert first.domain_id != second.domain_id
        assert first.domain_id in ros_harness.DOMAIN_ID_RANGE and second.domain_id in ros_harness.DOMAIN_ID_RANGE
        # Another process cannot take a leased id.
        probe = (
            "import fcntl, sys; f = open(sys.argv[1], 'a+')\n"
            "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
            "except BlockingIOError:\n    print('taken')"
        )
        lock = ros_harness.DOMAIN_LOCK_DIR / f"{first.domain_id}.lock"
        out = subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "taken"
        first.release()
        out = subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "free"
    finally:
        first.release()
        second.release()


def test_child_gets_the_ros_environment(ros_processes, ros_domain_id):
    names = (
        "ROS_DOMAIN_ID",
        "ROS_AUTOMATIC_DISCOVERY_RANGE",
        "FASTDDS_DEFAULT_PROFILES_FILE",
        "PYTHONUNBUFFERED",
        "EXTRA",
    )
    code = f"import os; print(*(f'{{k}}={{os.environ.get(k)}}' for k in {names!r}), sep=chr(10))"
    child = ros_processes.start([sys.executable, "-c", code], name="env_probe", env={"EXTRA": "yes"})
    assert child.wait(timeout=30) == 0
    out = child.stdout()
    assert f"ROS_DOMAIN_ID={ros_domain_id}" in out
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST" in out and "PYTHONUNBUFFERED=1" in out and "EXTRA=yes" in out
    assert f"FASTDDS_DEFAULT_PROFILES_FILE={FASTDDS_PROFILE}" in out
    foreign = ros_processes.env(foreign_venv=True)
    assert "_ROS_WHEELS_BOOTSTRAP_COMPLETE" not in foreign and "LD_LIBRARY_PATH" not in foreign


def test_wait_for_line_terminate_and_exit_codes(ros_processes):
    script = textwrap.dedent(
        """
        import signal, subprocess, sys, time
        grandchild = subprocess.Popen(["sleep", "300"])
        print("grandchild", grandchild.pid, flush=True)
        print("ready to go", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        try:
            time.sleep(300)
        except KeyboardInterrupt:
            sys.exit(7)
        """
    )
    child = ros_processes.start([sys.executable, "-c", script], name="sleeper")
    assert child.wait_for_line(r"^ready (\w+) go$", timeout=30).group(1) == "to"
    child.wait_for_line("to stderr", timeout=30, stream="stderr")
    with pytest.raises(TimeoutError, match="never printed"):
        child.wait_for_line("never printed", timeout=0.3)
    grandchild = int(child.wait_for_line(r"^grandchild (\d+)$").group(1))
    assert child.returncode is None
    # A generous grace: on a loaded 2-core CI machine the interpreter can take seconds to run the handler.
    assert child.terminate(grace=60) == 7  # SIGINT -> KeyboardInterrupt -> exit code 7
    _assert_gone(grandchild)  # the whole process group was stopped


def test_terminate_escalates_to_sigkill(ros_processes):
    code = "import signal as s, time; s.signal(s.SIGINT, s.SIG_IGN); print('stubborn', flush=True); time.sleep(99)"
    child = ros_processes.start([sys.executable, "-c", code], name="stubborn")
    child.wait_for_line("stubborn", timeout=30)
    assert child.terminate(grace=0.5) == -9


def test_wait_for_line_fails_fast_when_the_child_exits(ros_processes):
    child = ros_processes.start([sys.executable, "-c", "import sys; print('bye'); sys.exit(3)"], name="quitter")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"quitter exited before printing 'hello'[\s\S]*returncode 3[\s\S]*bye"):
        child.wait_for_line("hello", timeout=60)
    assert time.monotonic() - start < 30  # did not wait for the timeout


def _assert_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive")


TALKER = """
import rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("harness_talker")
pub = node.create_publisher(String, "/foundation/chatter", 10)
node.create_timer(0.05, lambda: pub.publish(String(data="hello")))
print("talking", flush=True)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
    pass
rclpy.try_shutdown()
"""


@pytest.mark.ros
def test_graph_and_spin_helpers_with_a_child_publisher(ros_processes, ros_node):
    from std_msgs.msg import String

    talker = ros_processes.start([sys.executable, "-c", TALKER], name="talker")
    talker.wait_for_line("talking", timeout=60)
    wait_for_publishers(ros_node.node, "/foundation/chatter", 1, timeout=30)
    got: list[str] = []
    ros_node.node.create_subscription(String, "/foundation/chatter", lambda m: got.append(m.data), 10)
    spin_until(ros_node.node, lambda: len(got) >= 3, timeout=30, what="3 chatter messages")
    assert set(got) == {"hello"}
    with pytest.raises(TimeoutError, match="never true"):
        spin_until(ros_node.executor, lambda: False, timeout=0.3, what="never true")
    with pytest.raises(TimeoutError, match="0 of 1 publishers on /foundation/nobody"):
        wait_for_publishers(ros_node.node, "/foundation/nobody", 1, timeout=0.3)
    assert talker.terminate() == 0


def test_run_tests_script_fails_when_no_test_is_collected():
    result = subprocess.run(
        [
            "bash",
            str(REPO_ROOT / "scripts" / "run_tests.sh"),
            "test/test_foundation_harness.py",
            "-q",
            "-k",
            "no_such_test_anywhere",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "collected no tests" in result.stderr
    assert result.stdout.startswith("run_tests: ")
