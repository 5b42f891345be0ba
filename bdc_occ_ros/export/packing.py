"""Bit packing shared by the ``bdc_occ::BinaryConv2d`` ONNX op and the CUDA plugin (cuda/binary_conv_common.h).

Layout: int32 words (the bit pattern of uint32), bit ``b`` of word ``k`` is 1 iff the value at channel
``32 k + b`` is >= 0 (sign +1, the project convention), channels beyond C are 0 bits.
  weights     (Cout, Cin, KH, KW) -> (Cout, KH, KW, ceil(Cin / 32))
  activations (N, C, H, W)        -> (N, H, W, ceil(C / 32))   (only the plugin packs these, on the GPU)
int32 rather than uint32/uint64 because TensorRT has no unsigned 32/64-bit tensor type.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 32


def words_for(channels: int) -> int:
    """Number of 32-bit words holding ``channels`` bits."""
    return (channels + WORD_BITS - 1) // WORD_BITS


def pack_channels_last(values: np.ndarray) -> np.ndarray:
    """Sign bits of (..., C) float values -> (..., ceil(C/32)) int32 words (bit = value >= 0)."""
    c = values.shape[-1]
    bits = np.zeros((*values.shape[:-1], words_for(c) * WORD_BITS), dtype=np.uint32)
    bits[..., :c] = values >= 0
    bits = bits.reshape(*values.shape[:-1], -1, WORD_BITS)
    words = (bits << np.arange(WORD_BITS, dtype=np.uint32)).sum(axis=-1, dtype=np.uint32)
    return words.view(np.int32)


def unpack_channels_last(words: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of :func:`pack_channels_last`: (..., K) int32 words -> (..., channels) float32 in {-1, +1}."""
    u = words.view(np.uint32)[..., None] >> np.arange(WORD_BITS, dtype=np.uint32)
    bits = (u & 1).reshape(*words.shape[:-1], -1)[..., :channels]
    return np.where(bits == 1, 1.0, -1.0).astype(np.float32)


def pack_weights(weight: np.ndarray) -> np.ndarray:
    """(Cout, Cin, KH, KW) float (latent or +-1) weights -> (Cout, KH, KW, ceil(Cin/32)) int32 sign words."""
    if weight.ndim != 4:
        raise ValueError(f"pack_weights: expected (Cout, Cin, KH, KW), got shape {weight.shape}")
    return pack_channels_last(np.ascontiguousarray(weight.transpose(0, 2, 3, 1)))


def unpack_weights(packed: np.ndarray, in_channels: int) -> np.ndarray:
    """(Cout, KH, KW, K) int32 words -> (Cout, Cin, KH, KW) float32 in {-1, +1}."""
    return np.ascontiguousarray(unpack_channels_last(packed, in_channels).transpose(0, 3, 1, 2))


def pack_activations(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) float -> (N, H, W, ceil(C/32)) int32 sign words (what the plugin does on the GPU)."""
    return pack_channels_last(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
