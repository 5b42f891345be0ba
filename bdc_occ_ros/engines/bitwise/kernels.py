"""Bit-packed binary convolution kernels (numba, XNOR-popcount on uint32/uint64 words).

Layouts (all C-contiguous numpy arrays); words are uint32 for up to 32 channels, else uint64 (w bits):

- packed activations ``(B, H, W, K)`` words, ``K = ceil(C / w)``: channel-last so that the words of one
  pixel are contiguous; channel ``c`` is bit ``c % w`` of word ``c // w``; bit = 1 for a value >= 0
  (the project's sign convention, sign(0) = +1); padding bits of the last word are 0.
- packed 3x3 weights ``(9, K, Cout)`` words (tap ``ky*3+kx`` major, output channel minor) so the innermost
  loop runs over output channels: one activation word is broadcast against ``Cout`` contiguous weight words
  and LLVM turns that loop into ``vpxorq``/``vpopcntq``/``vpaddq`` on AVX-512 machines. Padding bits are 0,
  so ``x XOR w`` is 0 there and padded channels never reach the count.
- real-valued maps ``(B, H, W, C)`` float32 (channel-last; a ``torch`` channels_last NCHW tensor has this
  memory layout, so the torch side sees them without copies).

A 3x3 binary conv with zero padding, as torch computes it on ``sign(x)``: padded pixels are 0 and add nothing,
so for an output pixel with ``n`` in-image taps ``sum = n*Cin - 2*popcount(x XOR w)`` summed over those taps.
Results are integers, exact in float32 up to 2**24.
"""

from __future__ import annotations

import os
import types as pyfunctypes

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

#: Inputs (first kernel argument) smaller than this run serially even with several numba threads.
PARALLEL_MIN_ELEMENTS = 1 << 16

# numba's default OpenMP layer and torch's bundled OpenMP runtime stall each other (measured: a 0.3 ms pack
# took 8 ms once torch was imported); the workqueue layer has no such interaction. An explicit
# NUMBA_THREADING_LAYER in the environment still wins. Kernels are called from one thread at a time.
if not os.environ.get("NUMBA_THREADING_LAYER"):
    numba.config.THREADING_LAYER = "workqueue"


class DualKernel:
    """A kernel compiled twice: parallel (numba's thread pool) and serial (in the caller's thread).

    The serial build is used with one numba thread and for small inputs: a parallel launch hands the work
    to pool threads that must be woken and scheduled, which costs milliseconds per call on a loaded machine
    (measured here under load 13: a 0.3 ms pack took 8 ms), more than small layers take to compute.
    """

    def __init__(self, fn) -> None:
        # A renamed copy of the function gets its own on-disk cache entry (numba keys caches by qualname).
        serial = pyfunctypes.FunctionType(fn.__code__, fn.__globals__, f"{fn.__name__}_serial", fn.__defaults__)
        serial.__qualname__ = f"{fn.__qualname__}_serial"
        self.parallel = njit(parallel=True, cache=True, nogil=True)(fn)
        self.serial = njit(cache=True, nogil=True)(serial)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __call__(self, *args):
        big = args[0].size >= PARALLEL_MIN_ELEMENTS
        kernel = self.parallel if big and numba.get_num_threads() > 1 else self.serial
        return kernel(*args)


@intrinsic
def popcount(typingctx, x):
    """llvm.ctpop at the word's own width (numba does not support ``np.bitwise_count`` in nopython mode)."""
    if not isinstance(x, types.Integer):
        return None
    sig = x(x)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


def word_dtype(channels: int) -> type[np.unsignedinteger]:
    """Packing word for ``channels``: uint32 up to 32 channels (no half-empty words: half the storage of
    uint64 for the many 32-channel BEV layers; measured speed unchanged), uint64 above."""
    return np.uint32 if channels <= 32 else np.uint64


def num_words(channels: int) -> int:
    """Number of packing words (:func:`word_dtype`) holding ``channels`` bits."""
    bits = np.dtype(word_dtype(channels)).itemsize * 8
    return (channels + bits - 1) // bits


def conv_out_size(size: int, stride: int) -> int:
    """Output size of a 3x3 conv with padding 1."""
    return (size - 1) // stride + 1


@DualKernel
def pack_signs_nchw(x, scale, shift, out):
    """Pack ``sign(scale[c]*x + shift[c])`` into bits (the ReDistribution affine + sign of a binary unit).

    x: (B, C, H, W) float32 C-contiguous; scale, shift: (C,) float32 (ones/zeros for a plain sign);
    out: (B, H, W, K) uint32/uint64 words, written completely. The multiply and the add are rounded separately, as torch
    does, so the bits equal torch's sign exactly. Vectorised along W (a row of words per channel word).
    """
    nb, nc, nh, nw = x.shape
    nk = out.shape[3]
    word_bits = out.itemsize * 8
    for bh in prange(nb * nh):
        b = bh // nh
        h = bh % nh
        row = np.empty(nw, np.uint64)
        for k in range(nk):
            row[:] = 0
            c0 = k * word_bits
            for j in range(min(word_bits, nc - c0)):
                c = c0 + j
                sc = scale[c]
                sh = shift[c]
                bit = np.uint64(j)
                for w in range(nw):
                    v = x[b, c, h, w] * sc
                    v = v + sh
                    row[w] |= np.uint64(v >= 0) << bit
            for w in range(nw):
                out[b, h, w, k] = row[w]


@DualKernel
def pack_signs_nhwc(x, scale, shift, out):
    """Same as :func:`pack_signs_nchw` for channel-last input x: (B, H, W, C) float32 C-contiguous.

    Each image row is first transposed (with the affine applied) into a (C, W) scratch tile so the bit
    loop runs along W like the NCHW kernel: 10x faster than building each word from C contiguous floats.
    """
    nb, nh, nw, nc = x.shape
    nk = out.shape[3]
    word_bits = out.itemsize * 8
    for bh in prange(nb * nh):
        b = bh // nh
        h = bh % nh
        tile = np.empty((nc, nw), np.float32)
        for w in range(nw):
            for c in range(nc):
                v = x[b, h, w, c] * scale[c]
                tile[c, w] = v + shift[c]
        row = np.empty(nw, np.uint64)
        for k in range(nk):
            row[:] = 0
            c0 = k * word_bits
            for j in range(min(word_bits, nc - c0)):
                bit = np.uint64(j)
                for w in range(nw):
                    row[w] |= np.uint64(tile[c0 + j, w] >= 0) << bit
            for w in range(nw):
                out[b, h, w, k] = row[w]


@DualKernel
def binary_conv3x3(xp, wp, cin, stride, mul, add, rp_gamma, rp_slope, rp_zeta, use_rprelu, residual, out):
    """3x3 XNOR-popcount conv, padding 1, with a fused per-channel epilogue.

    xp: (B, H, W, K) packed signs; wp: (9, K, Cout) packed weight signs (same word type); cin: real input channels;
    stride: 1 or 2. Epilogue per output channel o on the exact integer sum s:
    ``y = mul[o]*s + add[o]`` (weight scale alpha, folded BatchNorm), then if ``use_rprelu``
    ``y = prelu(y + rp_gamma[o], rp_slope[o]) + rp_zeta[o]``, then ``y += residual`` when residual is non-empty
    (shape (B, Ho, Wo, Cout)). out: (B, Ho, Wo, Cout) float32.
    """
    nb, nh, nw, nk = xp.shape
    _, ho, wo, nco = out.shape
    has_res = residual.shape[0] > 0
    for bo in prange(nb * ho):
        b = bo // ho
        oy = bo % ho
        acc = np.empty(nco, xp.dtype)  # word-width lanes: popcount sums fit (at most 9 * Cin)
        for ox in range(wo):
            acc[:] = 0
            taps = 0
            for ky in range(3):
                iy = oy * stride + ky - 1
                if iy < 0 or iy >= nh:
                    continue
                for kx in range(3):
                    ix = ox * stride + kx - 1
                    if ix < 0 or ix >= nw:
                        continue
                    taps += 1
                    t = ky * 3 + kx
                    for k in range(nk):
                        xv = xp[b, iy, ix, k]
                        for o in range(nco):
                            acc[o] += popcount(xv ^ wp[t, k, o])
            base = taps * cin
            for o in range(nco):
                y = mul[o] * np.float32(base - 2 * np.int64(acc[o])) + add[o]
                if use_rprelu:
                    y = y + rp_gamma[o]
                    if y < 0:
                        y = y * rp_slope[o]
                    y = y + rp_zeta[o]
                if has_res:
                    y = y + residual[b, oy, ox, o]
                out[b, oy, ox, o] = y


@DualKernel
def binary_weight_conv1x1(x, wpos, mul, out):
    """Binary-weight 1x1 conv on real inputs without float multiplies in the inner loop (W1A32).

    x: (P, Cin) float32 (pixels, channel-last); wpos: (Cin, Cout) bool, True where sign(W[o, c]) = +1;
    out[p, o] = mul[o] * (2 * sum_{c: +1} x[p, c] - sum_c x[p, c]). out: (P, Cout) float32.
    """
    npix, nci = x.shape
    nco = out.shape[1]
    for p in prange(npix):
        acc = np.zeros(nco, np.float32)
        total = np.float32(0.0)
        for c in range(nci):
            v = x[p, c]
            total += v
            for o in range(nco):
                if wpos[c, o]:
                    acc[o] += v
        for o in range(nco):
            out[p, o] = mul[o] * (np.float32(2.0) * acc[o] - total)


@DualKernel
def affine_rprelu_gap(y, mul, add, rp_gamma, rp_slope, rp_zeta, gap):
    """In place ``y = rprelu(mul*y + add)`` per channel, and the per-image channel means into ``gap``.

    y: (B, P, C) float32 (P pixels, channel-last); mul, add, rp_*: (C,); gap: (B, C) float32 output (the
    global average pool the BDC weight branch needs, computed in the same pass to save a read of y).
    Pixels are split into chunks with one partial-sum row each (a shared accumulator would serialise).
    """
    nb, npix, nc = y.shape
    nchunk = min(npix, 64)
    partial = np.zeros((nb, nchunk, nc), np.float32)
    for bc in prange(nb * nchunk):
        b = bc // nchunk
        ch = bc % nchunk
        acc = partial[b, ch]
        for p in range(ch * npix // nchunk, (ch + 1) * npix // nchunk):
            row = y[b, p]
            for c in range(nc):
                v = mul[c] * row[c] + add[c]
                v = v + rp_gamma[c]
                if v < 0:
                    v = v * rp_slope[c]
                v = v + rp_zeta[c]
                row[c] = v
                acc[c] += v
    for b in range(nb):
        for c in range(nc):
            total = np.float32(0.0)
            for ch in range(nchunk):
                total += partial[b, ch, c]
            gap[b, c] = total / npix


@DualKernel
def scale_add(y, gate, identity, out):
    """``out = y * gate + identity`` with a per-image, per-channel gate (the BDC weight branch + residual).

    y, identity, out: (B, P, C) float32; gate: (B, C) float32.
    """
    nb, npix, nc = y.shape
    for bp in prange(nb * npix):
        b = bp // npix
        p = bp % npix
        for c in range(nc):
            out[b, p, c] = y[b, p, c] * gate[b, c] + identity[b, p, c]


@DualKernel
def popcount_peak(words, repeats):
    """Tight XOR-popcount loop over an L1-resident buffer: the CPU's practical popcount limit.

    words: (T, N) uint64 with T = number of threads; returns a checksum (so the loop is not optimised away).
    Each inner iteration is one 64-bit XNOR-popcount = 64 binary multiply-accumulates.
    """
    nt, n = words.shape
    sums = np.zeros(nt, np.uint64)
    for t in prange(nt):
        acc = np.zeros(n, np.uint64)
        row = words[t]
        for r in range(repeats):
            key = np.uint64(r)
            for i in range(n):
                acc[i] += popcount(row[i] ^ key)
        sums[t] = acc.sum()
    return sums.sum()


def pack_weights3x3(sign_pos: np.ndarray) -> np.ndarray:
    """Pack 3x3 weight signs.

    sign_pos: (Cout, Cin, 3, 3) bool, True where the weight's sign is +1. Returns (9, K, Cout) words.
    """
    cout, cin, kh, kw = sign_pos.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"pack_weights3x3: expected 3x3 weights, got {kh}x{kw}")
    per_tap = sign_pos.transpose(2, 3, 1, 0).reshape(9, cin, cout)  # (tap, Cin, Cout)
    return np.ascontiguousarray(pack_bits_axis1(per_tap).transpose(0, 2, 1))  # (9, K, Cout)


def pack_bits_axis1(bits: np.ndarray) -> np.ndarray:
    """Pack a bool array (A, C, M) along axis 1 into (A, M, K) words of :func:`word_dtype` (C)
    (bit c % w of word c // w for w-bit words)."""
    a, c, m = bits.shape
    dtype = np.dtype(word_dtype(c))
    k = num_words(c)
    padded = np.zeros((a, m, k * dtype.itemsize * 8), dtype=bool)
    padded[:, :, :c] = bits.transpose(0, 2, 1)
    packed = np.packbits(padded, axis=2, bitorder="little")  # (A, M, K * bytes) little-endian bit order
    return np.ascontiguousarray(packed).view(dtype.newbyteorder("<")).astype(dtype, copy=False)


def unpack_bits(words: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of the packing along the last axis: (..., K) words -> (..., channels) bool."""
    little = words.dtype.newbyteorder("<")
    as_bytes = np.ascontiguousarray(words).astype(little, copy=False).view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :channels].astype(bool)
