"""Test harness for real ROS 2 processes (rclpy + Fast DDS), shared by every test that uses DDS.

Isolation rule: no DDS packet may leave the machine. `make test` (scripts/run_tests.sh) runs the
whole pytest session inside `unshare -n` (only `lo`). Where that is not permitted, the session must
run with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and the loopback-only Fast DDS profile
(config/fastdds_shm.xml); conftest.py calls :func:`configure_session_environment` which sets these
defaults and aborts the session when neither protection holds. Each test gets its own ROS_DOMAIN_ID,
leased machine-wide with a lock file, so concurrent pytest sessions (also in other namespaces: the
shared-memory transport crosses them) never see each other's topics.

Fixtures (registered in conftest.py)
------------------------------------
``ros_domain_id`` -> int
    The test's leased domain id (released at teardown).
``ros_processes`` -> :class:`RosLauncher`
    Starts child processes with :func:`ros_env` (same domain id); stops them all at teardown
    (SIGINT to the process group, SIGKILL after a grace period).
``ros_node`` -> :class:`TestNode`
    An rclpy Context + Node + SingleThreadedExecutor of the test process on the same domain id;
    init/shutdown per test.

Helpers
-------
``wait_for_subscribers(publisher, n=1, timeout=10.0)``, ``wait_for_publishers(node, topic, n=1,
timeout=10.0)``, ``spin_until(node_or_executor, predicate, timeout=10.0, what=...)``: poll for
discovery/matching or a condition; raise ``TimeoutError`` naming what was awaited. Never sleep a
fixed time for discovery (it takes 0.1 s to 3.5 s).

``RosProcess``: ``wait_for_line(regex, timeout)`` (fails early if the child exits),
``terminate()``, ``wait(timeout)``, ``returncode``, ``output()``, ``stdout_path``/``stderr_path``.

Example
-------
::

    from ros_harness import spin_until, wait_for_subscribers
    from std_msgs.msg import String

    def test_echo(ros_processes, ros_node):
        child = ros_processes.python_module("my_pkg.listener", "--count", "3", name="listener")
        child.wait_for_line(r"listening on /chatter", timeout=20)
        pub = ros_node.node.create_publisher(String, "/chatter", 10)
        wait_for_subscribers(pub, 1, timeout=15)
        pub.publish(String(data="hi"))
        child.wait_for_line(r"got: hi", timeout=15)
        assert child.wait(timeout=15) == 0

    def test_receive(ros_processes, ros_node):
        got = []
        ros_node.node.create_subscription(String, "/out", got.append, 10)
        ros_processes.python_script(Path(__file__).parent / "helpers" / "talker.py", name="talker")
        spin_until(ros_node.executor, lambda: len(got) >= 3, timeout=20, what="3 messages on /out")

Children run the venv's python (``sys.executable``) and inherit the bootstrapped environment
(LD_LIBRARY_PATH + _ROS_WHEELS_BOOTSTRAP_COMPLETE, see ros2_from_pypi.md §0); pass
``foreign_venv=True`` when a child is the python of *another* venv so it bootstraps itself.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
FASTDDS_PROFILE = REPO_ROOT / "config" / "fastdds_shm.xml"
PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
# Domain ids 1..101 keep Fast DDS's UDP ports below Linux's ephemeral range; 0 is left to humans.
DOMAIN_ID_RANGE = range(1, 102)
DOMAIN_LOCK_DIR = Path(os.environ.get("BDC_OCC_DOMAIN_LOCK_DIR", "/tmp/bdc_occ_ros_test_domains"))
POLL_S = 0.05
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


# --------------------------------------------------------------------------- network isolation


def network_isolated() -> bool:
    """True when the only network interface of this process's namespace is the loopback `lo`."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def _profile_is_loopback_only(path: str) -> bool:
    """True when the Fast DDS profile at `path` limits UDP to 127.0.0.1 (our config/fastdds_shm.xml)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return False
    return (
        "<useBuiltinTransports>false</useBuiltinTransports>" in text
        and re.search(r"<interfaceWhiteList>\s*<address>127\.0\.0\.1</address>\s*</interfaceWhiteList>", text)
        is not None
    )


def loopback_fallback_problems(env: Mapping[str, str]) -> list[str]:
    """What is missing in `env` for the no-namespace fallback (empty list: the fallback is complete)."""
    problems = []
    if env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST":
        problems.append(
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={env.get('ROS_AUTOMATIC_DISCOVERY_RANGE')!r} (need 'LOCALHOST')"
        )
    profiles = [env[v] for v in PROFILE_VARS if env.get(v)]
    if not profiles:
        problems.append(f"none of {', '.join(PROFILE_VARS)} is set")
    for path in profiles:
        if not _profile_is_loopback_only(path):
            problems.append(f"Fast DDS profile {path} is missing or does not restrict UDP to 127.0.0.1")
    if env.get("ROS_STATIC_PEERS"):
        problems.append(f"ROS_STATIC_PEERS={env['ROS_STATIC_PEERS']!r} would contact other hosts")
    return problems


def configure_session_environment(environ: dict[str, str] | os._Environ = os.environ) -> str:
    """Set the loopback defaults in `environ` (normally os.environ, before rclpy.init) and check safety.

    Returns "netns" or "loopback-fallback". Raises RuntimeError when the session is not inside an
    isolated network namespace AND the loopback fallback is incomplete (e.g. a caller exported
    ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET), so no test can send DDS traffic off the machine.
    """
    environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if not any(environ.get(v) for v in PROFILE_VARS):
        environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    environ.setdefault("AMENT_PREFIX_PATH", str(Path(sys.prefix)))
    if network_isolated():
        return "netns"
    problems = loopback_fallback_problems(environ)
    if problems:
        raise RuntimeError(
            "refusing to run ROS tests: not inside an isolated network namespace (interfaces: "
            f"{[n for _, n in socket.if_nameindex()]}) and the loopback fallback is incomplete: "
            + "; ".join(problems)
            + ". Run the tests with `bash scripts/run_tests.sh` (or `make test`)."
        )
    return "loopback-fallback"


# --------------------------------------------------------------------------- domain ids


class DomainLease:
    """A ROS_DOMAIN_ID held exclusively (machine-wide, via flock on a lock file) until release()."""

    def __init__(self, domain_id: int, lock_file: Any) -> None:
        self.domain_id = domain_id
        self._lock_file = lock_file

    def release(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None


def lease_domain_id(timeout: float = 60.0) -> DomainLease:
    """Lease a free domain id from DOMAIN_ID_RANGE; waits up to `timeout` s when all are taken."""
    DOMAIN_LOCK_DIR.mkdir(parents=True, exist_ok=True)
    ids = list(DOMAIN_ID_RANGE)
    start = random.randrange(len(ids))  # spread concurrent sessions over the range
    deadline = time.monotonic() + timeout
    while True:
        for domain_id in ids[start:] + ids[:start]:
            lock_file = open(DOMAIN_LOCK_DIR / f"{domain_id}.lock", "a+")  # held open by the lease
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock_file.close()
                continue
            return DomainLease(domain_id, lock_file)
        if time.monotonic() > deadline:
            raise TimeoutError(f"all ROS domain ids {ids[0]}..{ids[-1]} are leased (lock dir {DOMAIN_LOCK_DIR})")
        time.sleep(0.2)


# --------------------------------------------------------------------------- child processes


def ros_env(
    domain_id: int,
    log_dir: Path | None = None,
    extra: Mapping[str, str] | None = None,
    foreign_venv: bool = False,
) -> dict[str, str]:
    """Environment for a ROS child process: this process's env + domain id + loopback settings.

    `foreign_venv=True` drops LD_LIBRARY_PATH and _ROS_WHEELS_BOOTSTRAP_COMPLETE so a python of
    another venv re-bootstraps with its own libraries (a child of the same venv keeps them).
    `extra` is applied last.
    """
    env = dict(os.environ)
    configure_session_environment(env)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        PYTHONUNBUFFERED="1",
        RCUTILS_COLORIZED_OUTPUT="0",
        RCUTILS_LOGGING_BUFFERED_STREAM="0",
    )
    if log_dir is not None:
        env["ROS_LOG_DIR"] = str(log_dir / "ros_log")
    if foreign_venv:
        env.pop("LD_LIBRARY_PATH", None)
        env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    if extra:
        env.update(extra)
    return env


def _die_with_parent() -> None:
    """In the forked child: get SIGKILL when the test process dies (no orphaned DDS participants), and
    default SIGINT handling: a session started in the background (nohup, CI runners) ignores SIGINT and
    children inherit that, which would turn every clean shutdown into a SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class RosProcess:
    """A child process (own process group) whose stdout/stderr go to files under `log_dir`."""

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        env: Mapping[str, str],
        log_dir: Path,
        name: str,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.stdout.log"
        self.stderr_path = log_dir / f"{name}.stderr.log"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                self.argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # own process group: terminate() reaches grandchildren too
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit code (negative: killed by that signal), None while running."""
        return self.popen.poll()

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        """stdout followed by stderr, as text."""
        return self.stdout() + self.stderr()

    def describe(self, tail_lines: int = 40) -> str:
        """Command, state and the last lines of both streams, for assertion messages."""

        def tail(text: str) -> str:
            return "\n".join(text.splitlines()[-tail_lines:])

        return (
            f"[{self.name}] pid {self.pid} argv {self.argv} returncode {self.returncode}\n"
            f"--- stdout ({self.stdout_path}):\n{tail(self.stdout())}\n"
            f"--- stderr ({self.stderr_path}):\n{tail(self.stderr())}"
        )

    def wait_for_line(
        self, pattern: str | re.Pattern[str], timeout: float = 30.0, stream: str = "any"
    ) -> re.Match[str]:
        """Wait until a line of stdout/stderr (`stream`: "any", "stdout", "stderr") matches `pattern`.

        Returns the match. Raises TimeoutError after `timeout` s, RuntimeError as soon as the child
        has exited without printing it; both messages carry the child's output.
        """
        regex = re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern
        readers = {"any": self.output, "stdout": self.stdout, "stderr": self.stderr}[stream]
        deadline = time.monotonic() + timeout
        while True:
            exited = self.returncode is not None  # read the files after the exit check: nothing is missed
            match = regex.search(readers())
            if match:
                return match
            if exited:
                raise RuntimeError(f"{self.name} exited before printing {regex.pattern!r}\n{self.describe()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no line matching {regex.pattern!r} in {timeout} s\n{self.describe()}")
            time.sleep(POLL_S)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the child to exit by itself; TimeoutError (with its output) if it does not."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} still running after {timeout} s\n{self.describe()}") from None

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the child's whole process group (no-op once it has exited)."""
        if self.returncode is None:
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self, grace: float = 10.0) -> int:
        """SIGINT to the process group (rclpy's clean shutdown), SIGKILL after `grace` s. Returns the exit code."""
        self.send_signal(signal.SIGINT)
        try:
            return self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            return self.popen.wait(timeout=10.0)
        finally:
            # Grandchildren that outlived the leader still share its process group id.
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class RosLauncher:
    """Starts RosProcess children on one domain id and log dir; stop_all() at teardown."""

    def __init__(self, domain_id: int, log_dir: Path) -> None:
        self.domain_id = domain_id
        self.log_dir = log_dir
        self.processes: list[RosProcess] = []

    def env(self, extra: Mapping[str, str] | None = None, foreign_venv: bool = False) -> dict[str, str]:
        """The environment children get (see ros_env)."""
        return ros_env(self.domain_id, self.log_dir, extra, foreign_venv)

    def start(
        self,
        argv: Sequence[str | os.PathLike[str]],
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        foreign_venv: bool = False,
    ) -> RosProcess:
        """Start any command; `env` entries are added to ros_env()."""
        name = name or f"{Path(str(argv[0])).name}-{len(self.processes)}"
        if any(p.name == name for p in self.processes):
            name = f"{name}-{len(self.processes)}"
        proc = RosProcess(argv, self.env(env, foreign_venv), self.log_dir, name, cwd)
        self.processes.append(proc)
        return proc

    def python_module(self, module: str, *args: str, name: str | None = None, **kwargs: Any) -> RosProcess:
        """`<venv python> -m module args...`, e.g. python_module("bdc_occ_ros.ros.node", "--ros-args", ...)."""
        return self.start([sys.executable, "-m", module, *args], name=name or module.rsplit(".", 1)[-1], **kwargs)

    def python_script(self, script: Path | str, *args: str, name: str | None = None, **kwargs: Any) -> RosProcess:
        """`<venv python> script args...`."""
        return self.start([sys.executable, str(script), *args], name=name or Path(script).stem, **kwargs)

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            proc.terminate()


# --------------------------------------------------------------------------- in-process rclpy


@dataclass
class TestNode:
    """The test process's own rclpy context, node and executor (on the test's domain id)."""

    __test__ = False  # not a pytest test class

    context: Any  # rclpy.context.Context
    node: Any  # rclpy.node.Node
    executor: Any  # rclpy.executors.SingleThreadedExecutor
    domain_id: int

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        spin_until(self.executor, predicate, timeout, what)


def open_test_node(domain_id: int, name: str = "test_harness") -> TestNode:
    """rclpy.init a fresh Context on `domain_id` and create a node + executor in it."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    return TestNode(context, node, executor, domain_id)


def close_test_node(handle: TestNode) -> None:
    """Undo open_test_node (safe to call twice)."""
    handle.executor.shutdown(timeout_sec=1.0)
    handle.node.destroy_node()
    handle.context.try_shutdown()


def iter_test_node(domain_id: int, name: str = "test_harness") -> Iterator[TestNode]:
    handle = open_test_node(domain_id, name)
    try:
        yield handle
    finally:
        close_test_node(handle)


# --------------------------------------------------------------------------- waiting helpers


def _poll(check: Callable[[], bool], timeout: float, message: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(message())
        time.sleep(POLL_S)


def wait_for_subscribers(publisher: Any, n: int = 1, timeout: float = 10.0) -> None:
    """Wait until `publisher` is matched with at least `n` subscriptions (DDS matching, no spin needed)."""
    _poll(
        lambda: publisher.get_subscription_count() >= n,
        timeout,
        lambda: (
            f"publisher on {publisher.topic_name}: {publisher.get_subscription_count()} of {n} "
            f"subscriptions matched after {timeout} s"
        ),
    )


def wait_for_publishers(node: Any, topic: str, n: int = 1, timeout: float = 10.0) -> None:
    """Wait until the ROS graph seen by `node` has at least `n` publishers on `topic` (fully qualified)."""
    _poll(
        lambda: node.count_publishers(topic) >= n,
        timeout,
        lambda: (
            f"{node.count_publishers(topic)} of {n} publishers on {topic} after {timeout} s; graph: "
            f"{node.get_topic_names_and_types()}"
        ),
    )


def spin_until(
    node_or_executor: Any, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Spin an executor (or a node's executor) until `predicate()` is true; TimeoutError naming `what`."""
    from rclpy.executors import Executor, SingleThreadedExecutor

    executor = node_or_executor
    if not isinstance(node_or_executor, Executor):
        executor = node_or_executor.executor
        if executor is None:
            executor = SingleThreadedExecutor(context=node_or_executor.context)
            executor.add_node(node_or_executor)
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{what}: not reached after {timeout} s of spinning")
        executor.spin_once(timeout_sec=min(0.1, remaining))
