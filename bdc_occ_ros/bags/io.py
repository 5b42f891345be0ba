"""Writing and reading rosbag2 bags with ``rosbags`` (no ROS install needed).

A bag written here is ONE storage file at the path the user names (``X.mcap`` or ``X.db3``) with the
standard rosbag2 ``metadata.yaml`` beside it, so the file opens on its own (Foxglove, ``ros2 bag play
X.mcap``, rosbags) and its directory is a regular rosbag2 bag directory (``ros2 bag info DIR``).
Message definitions are written into the bag from the typestore (``ros2msg``, ROS 2 syntax), so
readers need no local copy of our custom messages.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

#: Storage plugin name (as ``ros2 bag record -s``) -> file suffix.
STORAGE_SUFFIXES: dict[str, str] = {"mcap": ".mcap", "sqlite3": ".db3"}
#: rosbag2 metadata version written: 8 is what Jazzy writes and Kilted reads.
BAG_VERSION = 8
METADATA_FILE = "metadata.yaml"

_NO_TIME = QosTime(0, 0)
_DEFAULT_TIME = QosTime(0x7FFFFFFF, 0xFFFFFFFF)  # rmw "infinite" as rosbag2 records it


def offered_qos(transient_local: bool = False, depth: int = 10) -> Qos:
    """The QoS profile recorded as ``offered_qos_profiles``: reliable, keep-last ``depth``; transient-local
    for latched topics (``/tf_static``) so ``ros2 bag play`` re-offers it to late subscribers (rosbag2#1049)."""
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        deadline=_DEFAULT_TIME,
        lifespan=_DEFAULT_TIME,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=_DEFAULT_TIME,
        avoid_ros_namespace_conventions=False,
    )


def storage_of(path: str | Path) -> str:
    """Storage plugin of a bag file path from its suffix (``.mcap`` -> mcap, ``.db3`` -> sqlite3)."""
    suffix = Path(path).suffix
    for name, suf in STORAGE_SUFFIXES.items():
        if suf == suffix:
            return name
    raise ValueError(f"bag path {path}: unknown suffix {suffix!r}; use one of {sorted(STORAGE_SUFFIXES.values())}")


def bag_file_for(out: str | Path, storage: str) -> Path:
    """The storage file path for ``--out OUT --storage S``: OUT if its suffix matches S, else OUT + suffix."""
    if storage not in STORAGE_SUFFIXES:
        raise ValueError(f"storage must be one of {sorted(STORAGE_SUFFIXES)}, got {storage!r}")
    out = Path(out)
    return out if out.suffix == STORAGE_SUFFIXES[storage] else out.with_name(out.name + STORAGE_SUFFIXES[storage])


class BagWriter:
    """Context manager writing typed ``rosbags`` messages to one bag file plus its ``metadata.yaml``.

    ``write(topic, msg, t_ns)`` adds the connection on first use (type from ``msg.__msgtype__``).
    rosbags creates a bag directory; it is written in a temporary directory beside ``path`` and its two
    files are moved into place on a clean exit (on an exception nothing is left behind).
    """

    def __init__(self, path: str | Path, typestore, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.storage = storage_of(self.path)
        self.typestore = typestore
        self.overwrite = overwrite
        self._tmp: Path | None = None
        self._writer: Writer | None = None
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        self._check_target()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.stem}.", dir=self.path.parent))
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._tmp / self.path.stem, version=BAG_VERSION, storage_plugin=plugin)
        self._writer.open()
        return self

    def _check_target(self) -> None:
        meta = self.path.parent / METADATA_FILE
        if meta.is_file():
            files = (yaml.safe_load(meta.read_text()) or {}).get("rosbag2_bagfile_information", {}).get(
                "relative_file_paths", [])
            if files and files != [self.path.name]:
                raise FileExistsError(f"{meta} describes another bag {files}; write {self.path.name} into an "
                                      "empty directory (one rosbag2 bag per directory)")
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(f"{self.path} exists; remove it or choose another --out")

    def write(self, topic: str, msg, t_ns: int, qos: Qos | None = None) -> None:
        """Serialize ``msg`` (a typestore class instance) as CDR at log time ``t_ns`` on ``topic``."""
        msgtype = msg.__msgtype__
        self.write_raw(topic, msgtype, self.typestore.serialize_cdr(msg, msgtype), t_ns, qos)

    def write_raw(self, topic: str, msgtype: str, raw: bytes | memoryview, t_ns: int, qos: Qos | None = None) -> None:
        """Write already CDR-serialized bytes of ``msgtype`` (copying messages between bags unchanged)."""
        assert self._writer is not None, "BagWriter used outside its with-block"
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore,
                                               offered_qos_profiles=[qos or offered_qos()])
            self._connections[topic] = conn
            self.counts[topic] = 0
        elif conn.msgtype != msgtype:
            raise ValueError(f"topic {topic}: has type {conn.msgtype}, cannot also write {msgtype}")
        self._writer.write(conn, int(t_ns), raw)
        self.counts[topic] += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._writer is not None and self._tmp is not None
        try:
            self._writer.close()
            if exc_type is None:
                inner = self._tmp / self.path.stem
                if self.overwrite and self.path.exists():
                    self.path.unlink()
                (inner / (self.path.stem + STORAGE_SUFFIXES[self.storage])).rename(self.path)
                (inner / METADATA_FILE).replace(self.path.parent / METADATA_FILE)
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)


@dataclass
class BagMessage:
    """One message: topic, ROS type name, log (receive) time in ns, its CDR bytes and the deserialized object."""

    topic: str
    msgtype: str
    log_time_ns: int
    raw: bytes
    msg: object


def _reader(path: str | Path, typestore) -> AnyReader:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    return AnyReader([path], default_typestore=typestore)


def read_messages(path: str | Path, topics: Iterable[str] | None = None, typestore=None) -> Iterator[BagMessage]:
    """Messages of a bag (a ``.mcap``/``.db3`` file or a rosbag2 directory) in log-time order, deserialized
    with the definitions stored in the bag (``typestore`` only for bags that store none)."""
    wanted = None if topics is None else set(topics)
    with _reader(path, typestore) as reader:
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not conns:  # rosbags reads every connection when given none
            return
        for conn, t_ns, raw in reader.messages(connections=conns):
            yield BagMessage(conn.topic, conn.msgtype, t_ns, raw, reader.deserialize(raw, conn.msgtype))


def bag_topics(path: str | Path, typestore=None) -> dict[str, tuple[str, int]]:
    """Topic -> (message type, message count) of a bag."""
    with _reader(path, typestore) as reader:
        out: dict[str, tuple[str, int]] = {}
        for conn in reader.connections:
            _, count = out.get(conn.topic, (conn.msgtype, 0))
            out[conn.topic] = (conn.msgtype, count + conn.msgcount)
        return out

