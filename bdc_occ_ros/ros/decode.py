"""Image message payloads to RGB arrays, without ROS: what the node's worker does with each camera frame.

``sensor_msgs/CompressedImage`` (``format`` containing jpeg/jpg or png, e.g. ``"jpeg"`` or
``"bgr8; jpeg compressed bgr8"``) is decoded with OpenCV; ``sensor_msgs/Image`` in rgb8/bgr8/mono8 is
viewed with ``np.frombuffer`` (no per-element copies), honouring ``step`` padding. Anything else raises
:class:`DecodeError` with a message naming the problem, which the node counts and reports.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Encodings of sensor_msgs/Image the node accepts.
RAW_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "mono8")
#: Compression formats of sensor_msgs/CompressedImage the node accepts (matched inside ``format``).
COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "jpg", "png")


class DecodeError(ValueError):
    """An image payload could not be turned into an RGB array (corrupt data, unsupported encoding)."""


#: OpenCV flags that decode a JPEG directly at 1/1, 1/2, 1/4 or 1/8 size (DCT scaling: much cheaper).
_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}


def auto_reduction(width: int, height: int, in_w: int, in_h: int) -> int:
    """The largest JPEG reduction (1, 2, 4, 8) whose decoded image still covers the network input after the
    test-time resize (scale max(in_w / width, in_h / height)), so no detail the network sees is lost:
    1600x900 -> 352x128 (edge model): 4; -> 704x256 (R50): 2."""
    scale = max(in_w / width, in_h / height)
    return max(n for n in _REDUCED_FLAGS if n * scale <= 1.0) if scale <= 1.0 else 1


def jpeg_size(data) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header (SOFn segment), without decoding; None if not found."""
    buf = memoryview(np.frombuffer(data, dtype=np.uint8))
    i, n = 2, len(buf)
    if n < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return None
    while i + 9 < n:
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOF0..SOF15 (not DHT/JPG/DAC)
            return (buf[i + 7] << 8) | buf[i + 8], (buf[i + 5] << 8) | buf[i + 6]
        i += 2 + ((buf[i + 2] << 8) | buf[i + 3])
    return None


def decode_for_input(fmt: str, data, input_size: tuple[int, int], reduction: int = 0) -> np.ndarray:
    """RGB of a CompressedImage payload as the node decodes it for a network of ``input_size`` (H, W):
    ``reduction`` 1/2/4/8, or 0 = :func:`auto_reduction` from the JPEG's own size (PNG: full size).
    The node, ``bdc-occ infer`` and ``bdc-occ replay`` all decode through here, so they agree."""
    if reduction == 0:
        size = jpeg_size(data) if "png" not in fmt.lower() else None
        reduction = auto_reduction(size[0], size[1], input_size[1], input_size[0]) if size else 1
    return decode_compressed(fmt, data, reduction)


def decode_compressed(fmt: str, data, reduction: int = 1) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a CompressedImage payload; ``data`` is bytes, array.array or a numpy array.
    ``reduction`` 2/4/8 decodes a JPEG at that fraction of the size, several times cheaper (see
    :func:`auto_reduction`); the pipeline rescales the intrinsics to the decoded size."""
    kind = fmt.lower()
    if not any(f in kind for f in COMPRESSED_FORMATS):
        raise DecodeError(f"unsupported CompressedImage format {fmt!r}; supported: {', '.join(COMPRESSED_FORMATS)}")
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise DecodeError("empty CompressedImage payload")
    if reduction not in _REDUCED_FLAGS:
        raise ValueError(f"reduction must be one of {sorted(_REDUCED_FLAGS)}, got {reduction}")
    img = cv2.imdecode(buf, _REDUCED_FLAGS[reduction])  # BGR, 3 channels even for grey sources
    if img is None:
        raise DecodeError(f"corrupt {fmt} image ({buf.size} bytes could not be decoded)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_raw(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an Image payload in rgb8, bgr8 or mono8."""
    enc = encoding.lower()
    if enc not in RAW_ENCODINGS:
        raise DecodeError(f"unsupported Image encoding {encoding!r}; supported: {', '.join(RAW_ENCODINGS)}")
    channels = 1 if enc == "mono8" else 3
    if height <= 0 or width <= 0 or step < width * channels:
        raise DecodeError(f"invalid Image geometry {width}x{height}, step {step} for {encoding}")
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < step * height:
        raise DecodeError(f"Image data has {buf.size} bytes, expected {step * height} ({height} rows of {step})")
    rows = buf[: step * height].reshape(height, step)[:, : width * channels]
    if enc == "mono8":
        return np.repeat(rows[:, :, None], 3, axis=2)
    img = rows.reshape(height, width, 3)
    return np.ascontiguousarray(img[:, :, ::-1]) if enc == "bgr8" else img
