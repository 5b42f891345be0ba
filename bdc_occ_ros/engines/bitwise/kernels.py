"""Bit-packed binary convolution kernels (numba, XNOR-popcount on uint32/uint64 words).

Layouts (all C-contiguous numpy arrays); words are uint32 for up to 32 channels, else uint64 (w bits):

- packed activations ``(B, K, plane_words(H, W))`` words, ``K = ceil(C / w)``: one flat plane per word of channels,
  holding the image with a zero border (the conv's padding) at a row pitch of ``W + 1`` words: a zero top row, then
  per image row one zero word and the row's W pixels (the zero word is also the previous row's right padding), a
  zero bottom row and :data:`LANES` + 1 zero words of slack. So every output pixel reads its 9 taps at fixed offsets
  from its flat index, and a stride-1 conv runs along the flat plane in whole vectors over many rows at once,
  computing one wasted pixel per row (rounding each row up to whole vectors wasted 22-45 % on rows of 22-50 pixels).
  Channel ``c`` is bit ``c % w`` of plane ``c // w``; bit = 1 for a value >= 0 (the project's sign convention,
  sign(0) = +1); padding bits of the last word are 0. :func:`padded_grid` shows a plane as its rows.
- phase planes, the input of a stride-2 conv: each word plane split into four sub-planes of
  :func:`phase_plane_words` / 4 words, the padded image's (even row, even column), (even, odd), (odd, even) and
  (odd, odd) pixels, each at a row pitch of ``Wo + 1`` (:func:`phase_pitch`; Ho, Wo the conv's output size) with
  Ho + 1 rows, zeros where the padded image has none, and the same slack. A stride-2 output pixel (y, x) then reads
  its 9 taps at flat index ``y * pitch + x`` (+ 1, + pitch, + pitch + 1) of the sub-planes: like stride 1, the conv
  runs along whole spans of output rows in full vectors. :func:`phased_grid` shows them as natural rows.
- packed 3x3 weights ``(9, K, Cout)`` words as stored (tap ``ky*3+kx`` major); the conv kernel takes them as
  ``(Cout, K, 9)`` (:func:`conv_weights`) so one output channel's 9 words are hoisted into registers.
- real-valued maps ``(B, C, H, W)`` float32 (NCHW, what torch produces by default), the conv output included.

A 3x3 binary conv with zero padding, as torch computes it on ``sign(x)``: padded pixels are 0 and add nothing,
so the sum is ``sum over in-image taps of (Cin - 2*popcount(x XOR w))``. The kernel counts all 9 taps (border
words are 0, so a padded tap adds ``Cin - 2*popcount(w)``) and removes the padded taps' share afterwards, per
border row/column, from a per-(output channel, tap) table. Results are integers, exact in float32 up to 2**24.
"""

from __future__ import annotations

import os
import types as pyfunctypes
from functools import partial

import numba
import numba.np.ufunc.parallel
import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import intrinsic

from bdc_occ_ros.openmp import torch_uses_system_openmp

#: Calls whose work array (:class:`DualKernel`'s ``work_arg``) has fewer elements run serially even with several
#: numba threads. Low enough for the 64x25x25 convs (40,000 outputs): with one OpenMP runtime their parallel build
#: took 0.023-0.032 ms against 0.042 serial (bench harness, 2 threads, 2026-12-07).
PARALLEL_MIN_ELEMENTS = 1 << 15

#: Output pixels a stride-1 conv computes per inner loop: a whole vector of 32-bit lanes, so a span of any length
#: runs as full vectors without a scalar tail (the packed planes end in slack to match, :func:`plane_words`).
LANES = 16

#: Output pixels per span of :func:`binary_conv3x3` (whole output rows, at least one): the two channels' int32 sums
#: (16 KiB) stay in L1 across the input's word planes.
CONV_SPAN_PIXELS = 2048

#: Output pixels per task of :func:`binary_conv3x3_pointwise` (whole rows, at least one): the conv's output tile,
#: all its channels (256 KiB at 64), stays in L2 for the 1x1 conv that reads it.
FUSED_SPAN_PIXELS = 1024

#: Pixels packed per chunk: the chunk's 32-bit words (8 KiB, 16 KiB for 64-bit words) stay in L1 across channels.
PACK_CHUNK_PIXELS = 2048

#: Pixels per chunk of :func:`binary_pointwise`: four (8, chunk) tables and the (Cout, chunk) accumulators stay
#: in L1/L2, and every inner loop is long enough to vectorise (runtime alias checks amortised).
POINTWISE_CHUNK = 128

#: Most pixels per parallel task of :func:`binary_pointwise` (whole chunks; each task has its own tables and sums).
POINTWISE_SLAB = 16 * POINTWISE_CHUNK

# Threading layer, unless NUMBA_THREADING_LAYER says otherwise. OpenMP first when torch runs on the runtime numba's
# ``omp`` layer links (``bdc_occ_ros.openmp``): one pool, whose worker spinning after a torch op starts the next kernel
# at once. Never OpenMP beside torch's bundled runtime: the two pools stall each other (measured: a 0.3 ms pack took
# 8 ms). Then TBB (the pip package ``tbb``, x86-64): the calling thread takes part in the work and the workers spin for
# a moment before they sleep; workqueue, the fallback, wakes its sleeping pool threads on every call (40-80 us here,
# as long as a small layer takes). Kernels are called from one thread at a time.
if not os.environ.get("NUMBA_THREADING_LAYER"):
    numba.config.THREADING_LAYER_PRIORITY = (
        ["omp", "tbb", "workqueue"] if torch_uses_system_openmp() else ["tbb", "workqueue", "omp"]
    )
    numba.config.THREADING_LAYER = "default"


#: The feature that turns LLVM's 256-bit preference off (:func:`full_width_features`).
_FULL_WIDTH = ",-prefer-256-bit"


def full_width_features(host_features: str) -> str | None:
    """numba's CPU feature string with LLVM's ``prefer-256-bit`` tuning turned off, for a CPU with AVX-512;
    None for one without (nothing to widen).

    LLVM tunes Intel AVX-512 cores (Skylake-SP and later, Rocket Lake, Sapphire Rapids) to vectorise loops at 256
    bits, so numba's kernels there ran half-width ``vpopcntd ymm``. At 512 bits every 3x3 layer of the edge model
    got faster on such a Xeon: conv alone 1.08-1.25x, layer speedups 4.0-6.1x -> 4.1-7.2x (three processes each,
    2 threads, 2026-12-07). AMD's AVX-512 tunings (znver4/5) already vectorise at 512 bits; the flag changes nothing
    there."""
    if "+avx512f" not in host_features.split(","):
        return None
    return host_features + _FULL_WIDTH


def full_width_vectors() -> bool:
    """Whether numba's CPU features turn LLVM's 256-bit preference off (:func:`full_width_features`, or a
    NUMBA_CPU_FEATURES that does the same)."""
    return (numba.config.CPU_FEATURES or "").endswith(_FULL_WIDTH)


def _use_full_vector_width() -> None:
    """Apply :func:`full_width_features` before the first compilation, unless NUMBA_CPU_FEATURES sets them."""
    if numba.config.CPU_FEATURES is None:
        import llvmlite.binding as llvm

        numba.config.CPU_FEATURES = full_width_features(llvm.get_host_cpu_features().flatten())


_use_full_vector_width()


def _launch_thread_pool() -> None:
    """Start numba's thread pool now, keeping torch's thread count: the launch sets the OpenMP runtime's thread
    count to numba's (measured: torch at 1 thread read 2 afterwards), and with one runtime that count is torch's."""
    torch_threads = torch.get_num_threads()
    numba.get_num_threads()
    torch.set_num_threads(torch_threads)


_launch_thread_pool()

#: The calling thread's numba thread count. numba.get_num_threads() takes two locks per call (0.9-1.4 us, measured:
#: 5 % of a 32x50x50 layer, which calls two kernels); with the pool running, its C getter answers alone.
calling_thread_kernel_threads = getattr(numba.np.ufunc.parallel, "_get_num_threads", None) or numba.get_num_threads


class DualKernel:
    """A kernel compiled twice: parallel (numba's thread pool) and serial (in the caller's thread).

    The serial build is used with one numba thread and for small inputs: a parallel launch hands the work
    to pool threads that must be woken and scheduled, which costs milliseconds per call on a loaded machine
    (measured here under load 13: a 0.3 ms pack took 8 ms), more than small layers take to compute.
    ``work_arg``: the argument whose size measures a call's work (the first, a float map, unless given; the conv
    gives its output, since its packed input holds 32 or 64 channels per word).
    """

    def __init__(self, fn, fastmath: frozenset[str] = frozenset(), work_arg: int = 0) -> None:
        # A renamed copy of the function gets its own on-disk cache entry (numba keys caches by qualname).
        serial = pyfunctypes.FunctionType(fn.__code__, fn.__globals__, f"{fn.__name__}_serial", fn.__defaults__)
        serial.__qualname__ = f"{fn.__qualname__}_serial"
        options = {"cache": True, "nogil": True, "fastmath": set(fastmath)}
        self.parallel = njit(parallel=True, **options)(fn)
        self.serial = njit(**options)(serial)
        self.work_arg = work_arg
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def build_for(self, *args):
        """The build a call with these arguments runs: parallel with several numba threads and enough work."""
        big = args[self.work_arg].size >= PARALLEL_MIN_ELEMENTS
        return self.parallel if big and calling_thread_kernel_threads() > 1 else self.serial

    def __call__(self, *args):
        return self.build_for(*args)(*args)


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


_WORD_BITS = {np.uint32: 32, np.uint64: 64}  # a lookup, not np.dtype(...) on every call of a layer


def num_words(channels: int) -> int:
    """Number of packing words (:func:`word_dtype`) holding ``channels`` bits."""
    bits = _WORD_BITS[word_dtype(channels)]
    return (channels + bits - 1) // bits


@njit(inline="always")
def whole_blocks(pixels):
    """``pixels`` rounded up to whole :data:`LANES` blocks (what a stride-1 conv span computes)."""
    return -(-pixels // LANES) * LANES


@njit
def row_pitch(width):
    """Words from one packed row to the next for an image ``width`` pixels wide: the left padding word and the
    row's pixels (the next row's padding word is this row's right padding)."""
    return width + 1


@njit
def plane_words(height, width):
    """Words per packed plane of an image ``height`` x ``width``: the padded rows at :func:`row_pitch`, then the
    slack that the last whole block of a stride-1 span reads (:data:`LANES` words past the bottom row, plus the
    word that is the bottom row's right padding)."""
    return (height + 2) * row_pitch(width) + LANES + 1


def padded_grid(packed: np.ndarray, height: int, width: int) -> np.ndarray:
    """(B, K, :func:`plane_words`) packed planes -> their (B, K, H + 2, W + 1) padded rows (a view): column 0 is
    the zero padding word, columns 1..W the image, rows 0 and H + 1 the zero border."""
    b, k, _ = packed.shape
    pitch = row_pitch(width)
    return packed[:, :, : (height + 2) * pitch].reshape(b, k, height + 2, pitch)


@njit
def phase_pitch(width):
    """Words from one row of a phase sub-plane to the next, for an input ``width`` pixels wide: the stride-2
    output's width plus one (the padding column of the even columns, or a slack word)."""
    return (width - 1) // 2 + 2


@njit
def phase_plane_words(height, width):
    """Words per word plane of phase planes (four sub-planes of Ho + 1 rows at :func:`phase_pitch`, each followed by
    the :data:`LANES` + 1 words of slack the last whole block of a span reads) for an input ``height`` x
    ``width``."""
    return 4 * (((height - 1) // 2 + 2) * phase_pitch(width) + LANES + 1)


def phased_grid(phased: np.ndarray, height: int, width: int) -> np.ndarray:
    """Phase planes -> the padded rows they hold in natural order, as :func:`padded_grid` shows planes packed
    without phases (a copy)."""
    b, k, words = phased.shape
    pitch, rows = phase_pitch(width), (height - 1) // 2 + 2
    sub = phased.reshape(b, k, 4, words // 4)[..., : rows * pitch].reshape(b, k, 2, 2, rows, pitch)
    padded = np.empty((b, k, 2 * rows, 2 * pitch), phased.dtype)
    for row_phase in range(2):
        for col_phase in range(2):
            padded[:, :, row_phase::2, col_phase::2] = sub[:, :, row_phase, col_phase]
    return padded[:, :, : height + 2, : row_pitch(width)]


def conv_out_size(size: int, stride: int) -> int:
    """Output size of a 3x3 conv with padding 1."""
    return (size - 1) // stride + 1


def bit_masks(dtype: type[np.unsignedinteger]) -> np.ndarray:
    """``1 << j`` for every bit j of a packing word, as that word type (the pack kernels OR these in: a
    select between a mask and 0 vectorises at the word's own width, unlike a shift of a widened compare)."""
    bits = np.dtype(dtype).itemsize * 8
    return np.left_shift(np.ones(bits, dtype), np.arange(bits, dtype=dtype))


def pack_chunks(batch: int, words: int, height: int, width: int, threads: int) -> int:
    """Row chunks per word plane for :func:`pack_signs_nchw`: about :data:`PACK_CHUNK_PIXELS` each, and as many
    tasks in all for every one of ``threads`` threads where the rows allow (a 32-channel 100x100 map: 6 chunks of
    16-17 rows, not 5 of 20, of which one thread took 3)."""
    chunks = -(-height // max(1, PACK_CHUNK_PIXELS // width))
    while (batch * words * chunks) % threads and chunks < height:
        chunks += 1
    return chunks


@DualKernel
def pack_signs_nchw(x, scale, shift, masks, phased, nchunk, out):
    """Pack ``sign(scale[c]*x + shift[c])`` into bits (the ReDistribution affine + sign of a binary unit).

    x: (B, C, H, W) float32 C-contiguous; scale, shift: (C,) float32 (ones/zeros for a plain sign); masks:
    :func:`bit_masks` of uint32 (also for uint64 words); phased: write phase planes (for a stride-2 conv); nchunk:
    chunks of rows per word plane, at most H (:func:`pack_chunks`); out: (B, K, :func:`plane_words` (H, W), or
    :func:`phase_plane_words` when phased) uint32/uint64 words, written completely (padding and slack 0). The
    multiply and the add are rounded separately, as torch does, so the bits equal torch's sign exactly.

    Each channel is one loop over a chunk of whole image rows (long and vectorised even for 8x22 maps) OR-ing
    into 32-bit planes that stay in L1 (:data:`PACK_CHUNK_PIXELS`); a 64-bit word is assembled from two of them
    at the end (a 64-bit select per float compare vectorised 2-4x worse, measured). One task per (image, word
    plane, chunk), so 32- and 64-channel maps (one plane) are packed on every thread too (32x200x200 with the
    stride-2 conv: 0.18-0.20 instead of 0.23-0.24 ms, 2 threads, 2026-12-07).
    """
    nb, nc, nh, nw = x.shape
    nk = out.shape[1]
    word_bits = out.itemsize * 8
    rows_per_chunk = -(-nh // nchunk)  # the tallest chunk: they differ by one row at most
    zero = masks[0] ^ masks[0]
    for task in prange(nb * nk * nchunk):
        b = task // (nk * nchunk)
        k = task // nchunk % nk
        chunk = task % nchunk
        h0 = chunk * nh // nchunk
        h1 = (chunk + 1) * nh // nchunk
        c0 = k * word_bits
        halves = np.empty((word_bits // 32, rows_per_chunk * nw), np.uint32)
        plane = x[b].reshape(nc, nh * nw)
        dst = out[b, k]
        _zero_borders(dst, nh, nw, h0 == 0, h1 == nh, phased)
        p0, npix = h0 * nw, (h1 - h0) * nw
        halves[:, :npix] = 0
        for j in range(min(word_bits, nc - c0)):
            sc = scale[c0 + j]
            sh = shift[c0 + j]
            m = masks[j % 32]
            half = halves[j // 32]
            src = plane[c0 + j, p0:p0 + npix]
            for p in range(npix):
                v = src[p] * sc
                v = v + sh
                half[p] |= m if v >= 0 else zero
        for h in range(h0, h1):
            row = (h - h0) * nw
            low = halves[0, row:row + nw]  # views: indexing halves at row + w made these loops gathers
            high = halves[word_bits // 64, row:row + nw]  # the second half of 64-bit words (unused for 32-bit ones)
            _place_row(dst, h, nw, low, high, word_bits, phased)


@njit(inline="always")
def _zero_borders(dst, nh, nw, top, bottom, phased):
    """Zero the padding rows and the slack of one word plane ``dst`` that no image row writes: the top border when
    ``top``, the bottom border and the slack when ``bottom`` (natural rows, or phase planes when ``phased``)."""
    if not phased:
        pitch = row_pitch(nw)
        if top:
            dst[:pitch] = 0
        if bottom:
            dst[(nh + 1) * pitch:] = 0
        return
    pitch = phase_pitch(nw)
    sub = dst.size // 4
    last = (nh - 1) // 2 + 1  # the last row of each sub-plane (Ho)
    if top:  # padded row 0: row 0 of the even-row sub-planes
        dst[:pitch] = 0
        dst[sub:sub + pitch] = 0
    if bottom:
        for phase in range(4):
            # The first row past the image: padded row 2r > H in the even-row sub-planes, 2r + 1 > H in the others.
            first = nh // 2 + 1 if phase < 2 else last
            dst[phase * sub + first * pitch:(phase + 1) * sub] = 0


@njit(inline="always")
def _place_row(dst, h, nw, low, high, word_bits, phased):
    """Image row h's words (:func:`_place_words` from ``low``/``high``) into one word plane ``dst`` with the zero
    padding words around them: natural rows, or for ``phased`` the row's halves in two phase sub-planes (pixel w
    is padded column w + 1: the odd pixels go to the even-column sub-plane after its padding word, the even ones to
    the odd-column sub-plane, whose last word is slack)."""
    if not phased:
        pitch = row_pitch(nw)
        start = (h + 1) * pitch
        dst[start] = 0
        _place_words(dst[start + 1:start + pitch], 0, low, high, 0, nw, word_bits)
        return
    pitch = phase_pitch(nw)
    sub = dst.size // 4
    start = 2 * ((h + 1) % 2) * sub + (h + 1) // 2 * pitch
    even = dst[start:start + pitch]
    odd = dst[start + sub:start + sub + pitch]
    pairs = nw // 2
    even[0] = 0
    # One loop for both parities: LLVM loads each pair of pixels as an interleaved group (a loop per parity with
    # stride-2 loads made the phased pack 0.0065-0.0195 ms slower than the natural one on 200x200 maps, now
    # 0.0001-0.0068; 1-2 threads, AMD EPYC, 2026-12-08).
    if word_bits == 64:
        for i in range(pairs):
            odd[i] = low[2 * i] | (np.uint64(high[2 * i]) << np.uint64(32))
            even[1 + i] = low[2 * i + 1] | (np.uint64(high[2 * i + 1]) << np.uint64(32))
    else:
        for i in range(pairs):
            odd[i] = low[2 * i]
            even[1 + i] = low[2 * i + 1]
    even[1 + pairs:] = 0  # the right padding column (odd widths)
    _place_words(odd, pairs, low, high, 2 * pairs, nw - 2 * pairs, word_bits)  # an odd width's last pixel
    odd[nw - pairs:] = 0


@njit(inline="always")
def _place_words(line, at, low, high, first, n, word_bits):
    """line[at + i] = the word of pixel ``first + i`` for i < n; a 64-bit word joins its halves from ``low`` and
    ``high``."""
    if word_bits == 64:
        for i in range(n):
            line[at + i] = low[first + i] | (np.uint64(high[first + i]) << np.uint64(32))
    else:
        for i in range(n):
            line[at + i] = low[first + i]


@DualKernel
def pack_signs_nhwc(x, scale, shift, masks, phased, out):
    """Same as :func:`pack_signs_nchw` for channel-last input x: (B, H, W, C) float32 C-contiguous.

    Each image row is first transposed (with the affine applied) into a (C, W) scratch tile so the bit
    loop runs along W like the NCHW kernel: 10x faster than building each word from C contiguous floats.
    """
    nb, nh, nw, nc = x.shape
    nk = out.shape[1]
    word_bits = masks.size
    zero = masks[0] ^ masks[0]
    for b in range(nb):
        for k in range(nk):
            _zero_borders(out[b, k], nh, nw, True, True, phased)
    for bh in prange(nb * nh):
        b = bh // nh
        h = bh % nh
        tile = np.empty((nc, nw), np.float32)
        for w in range(nw):
            for c in range(nc):
                v = x[b, h, w, c] * scale[c]
                tile[c, w] = v + shift[c]
        row = np.empty(nw, masks.dtype)
        for k in range(nk):
            row[:] = zero
            c0 = k * word_bits
            for j in range(min(word_bits, nc - c0)):
                m = masks[j]
                for w in range(nw):
                    row[w] |= m if tile[c0 + j, w] >= 0 else zero
            _place_row(out[b, k], h, nw, row, row, 32, phased)  # 32: whole words from row, whatever their width


@njit(inline="always")
def _tap_words(w):
    """A weight row's 9 words as a tuple: loaded once, before the pixel loop."""
    return w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]


@njit(inline="always")
def _xnor_taps(plane, q, pitch, wa, wb):
    """popcount(x XOR w) summed over the 9 taps of the output pixel whose top-left tap is word q of a packed
    ``plane`` (row pitch ``pitch``; both uint64: an unsigned index skips numba's negative-index wraparound, whose
    selects would turn the loads into gathers), for two output channels (weights ``wa``/``wb``: tuples of 9 words,
    held in registers) sharing every input load."""
    one, two = np.uint64(1), np.uint64(2)
    q1 = q + pitch
    q2 = q1 + pitch
    x0, x1, x2 = plane[q], plane[q + one], plane[q + two]
    x3, x4, x5 = plane[q1], plane[q1 + one], plane[q1 + two]
    x6, x7, x8 = plane[q2], plane[q2 + one], plane[q2 + two]
    return _xnor_counts((x0, x1, x2, x3, x4, x5, x6, x7, x8), wa, wb)


@njit(inline="always")
def _xnor_counts(x, wa, wb):
    """popcount(x XOR w) summed over 9 tap words x, for the weight words wa and wb (tuples of 9 each)."""
    count_a = (
        popcount(x[0] ^ wa[0]) + popcount(x[1] ^ wa[1]) + popcount(x[2] ^ wa[2]) + popcount(x[3] ^ wa[3])
        + popcount(x[4] ^ wa[4]) + popcount(x[5] ^ wa[5]) + popcount(x[6] ^ wa[6]) + popcount(x[7] ^ wa[7])
        + popcount(x[8] ^ wa[8])
    )  # fmt: skip
    count_b = (
        popcount(x[0] ^ wb[0]) + popcount(x[1] ^ wb[1]) + popcount(x[2] ^ wb[2]) + popcount(x[3] ^ wb[3])
        + popcount(x[4] ^ wb[4]) + popcount(x[5] ^ wb[5]) + popcount(x[6] ^ wb[6]) + popcount(x[7] ^ wb[7])
        + popcount(x[8] ^ wb[8])
    )  # fmt: skip
    return np.int32(count_a), np.int32(count_b)


@njit(inline="always")
def _xnor_span_stride1(plane, q0, pitch, wa, wb, acc_a, acc_b, n):
    """Add :func:`_xnor_taps` to ``acc_a``/``acc_b`` for the stride-1 output pixels whose top-left taps are words
    q0, q0 + 1, ... of ``plane`` (a span of whole output rows, one wasted pixel per row), in blocks of :data:`LANES`
    (a constant trip count: whole vectors, no scalar tail; the pixels past the span's end read the plane's slack and
    are never stored). q0, pitch: uint64; wa/wb: 9 words each; n: whole blocks, at most the length of acc_a/acc_b."""
    wa, wb = _tap_words(wa), _tap_words(wb)
    for block in range(n // LANES):
        for lane in range(LANES):
            i = block * LANES + lane
            count_a, count_b = _xnor_taps(plane, q0 + np.uint64(i), pitch, wa, wb)
            acc_a[i] += count_a
            acc_b[i] += count_b


@njit(inline="always")
def _xnor_span_stride2(plane, q0, pitch, wa, wb, acc_a, acc_b, n):
    """:func:`_xnor_span_stride1` for a stride-2 conv on phase planes (``plane``: one word plane's four sub-planes):
    output pixel i of the span reads its taps at sub-plane word ``q0 + i`` (+ 1, + pitch, + pitch + 1), row by row
    from the (even, even), (even, odd) and (even, even) sub-planes, then (odd, even), (odd, odd), (odd, even), then
    the even ones again one row down."""
    wa, wb = _tap_words(wa), _tap_words(wb)
    one = np.uint64(1)
    sub = np.uint64(plane.size // 4)
    ee, eo, oe, oo = np.uint64(0), sub, sub + sub, sub + sub + sub
    for block in range(n // LANES):
        for lane in range(LANES):
            i = block * LANES + lane
            q = q0 + np.uint64(i)
            down = q + pitch
            taps = (plane[ee + q], plane[eo + q], plane[ee + q + one],
                    plane[oe + q], plane[oo + q], plane[oe + q + one],
                    plane[ee + down], plane[eo + down], plane[ee + down + one])  # fmt: skip
            count_a, count_b = _xnor_counts(taps, wa, wb)
            acc_a[i] += count_a
            acc_b[i] += count_b


@njit(inline="always")
def _rprelu(v, g, slope, z):
    """RPReLU ``prelu(v + g, slope) + z`` as max + slope*min: branch-free and exact."""
    v = v + g
    return max(v, np.float32(0.0)) + slope * min(v, np.float32(0.0)) + z


@njit(inline="always")
def _epilogue(base, count, m, a, g, slope, z, use_rprelu):
    """``m * s + a`` for the conv sum ``s = base - 2 * count``, then ``prelu(. + g, slope) + z`` when use_rprelu
    (:func:`_rprelu`). base: float32; count: the int32 popcount. s is formed in float32, exact
    below 2**24, so the loop stays in 32-bit lanes (an int64 difference was converted at half the vector width:
    14 % slower on 200x200 maps, measured)."""
    v = m * (base - np.float32(2.0) * np.float32(count)) + a
    return _rprelu(v, g, slope, z) if use_rprelu else v


@njit(inline="always")
def _row_base(pad_share, o, cin, top, bottom, right_padded, base):
    """base[ox] = 9*Cin less the share of output channel o's taps that fall on padding, for a row of pixels ox."""
    wo = base.size
    full = 9 * cin
    if top:
        full -= pad_share[o, 0] + pad_share[o, 1] + pad_share[o, 2]
    if bottom:
        full -= pad_share[o, 6] + pad_share[o, 7] + pad_share[o, 8]
    left = pad_share[o, 3] + (0 if top else pad_share[o, 0]) + (0 if bottom else pad_share[o, 6])
    right = 0
    if right_padded:
        right = pad_share[o, 5] + (0 if top else pad_share[o, 2]) + (0 if bottom else pad_share[o, 8])
    base[:] = np.float32(full)
    base[wo - 1] = np.float32(full - right)
    base[0] = np.float32(full - left - (right if wo == 1 else 0))


#: The conv epilogue's floating-point flags: multiply-adds contracted into FMAs (one rounding instead of two; nothing
#: reordered). 7-14 % off the conv (32x50x50 to 32x200x200, serial, AMD EPYC, 2026-12-08), where the epilogue had
#: been as long as the XNOR-popcount loop itself.
CONV_FASTMATH = frozenset({"contract"})


@partial(DualKernel, fastmath=CONV_FASTMATH, work_arg=-1)
def binary_conv3x3(
    xp, nh, nw, wq, pad_share, cin, stride, mul, add, rp_gamma, rp_slope, rp_zeta, use_rprelu, residual, out
):
    """3x3 XNOR-popcount conv, padding 1, with a fused per-channel epilogue.

    xp: (B, K, :func:`plane_words` (H, W)) packed signs, or phase planes (:func:`phase_plane_words`) for stride 2;
    nh, nw: the image's H and W; wq: (Cout, K, 9) packed weight signs (same word type); pad_share: (Cout, 9) int32,
    ``Cin - 2*popcount(w[o, :, t])``, what a padded tap adds; cin: real input channels; stride: 1 or 2. Epilogue
    per output channel o on the exact integer sum s: ``y = mul[o]*s + add[o]`` (weight scale alpha, folded
    BatchNorm), then if ``use_rprelu`` ``y = prelu(y + rp_gamma[o], rp_slope[o]) + rp_zeta[o]``, then
    ``y += residual`` when residual is non-empty (shape (B, Cout, Ho, Wo)). out: (B, Cout, Ho, Wo) float32.

    One (image, pair of output channels) per task: both channels' weight words in registers and every input word
    loaded once for the two (measured 5-40 % faster than one channel per task). The output rows go in spans of
    :data:`CONV_SPAN_PIXELS`; a span is one loop along the flat plane (the phase sub-planes at stride 2) in whole
    blocks of :data:`LANES` pixels, then one vectorised epilogue pass per row and channel (plus the residual's).
    The padded taps' share comes from a per-pixel base vector of the row kind (:func:`_row_base`), so the border
    pixels need no second pass (redoing the first and last pixel of every row cost 20-25 % of a 32x50x50 conv,
    measured). At stride 2 the span loop on phase planes took 0.122 instead of 0.139 ms (1 thread) and 0.062
    instead of 0.067 ms (2 threads) on the 32x200x200 layer, against a loop per output row on column-phased rows
    (AMD EPYC, 2026-12-08).
    """
    nb, nk, words = xp.shape
    _, nco, ho, wo = out.shape
    if stride == 1 and words < plane_words(nh, nw):  # the spans' last blocks would read past the plane
        raise ValueError("binary_conv3x3: packed planes shorter than plane_words(nh, nw)")
    if stride == 2 and words != phase_plane_words(nh, nw):  # the sub-planes are found by the plane's size
        raise ValueError("binary_conv3x3: phase planes of another size than phase_plane_words(nh, nw)")
    pitch = row_pitch(nw) if stride == 1 else phase_pitch(nw)  # also from one output row's sums to the next
    has_res = residual.shape[0] > 0
    right_padded = (wo - 1) * stride + 2 > nw
    span_rows = max(1, CONV_SPAN_PIXELS // pitch)
    npair = (nco + 1) // 2
    for bp in prange(nb * npair):
        b = bp // npair
        o0 = 2 * (bp % npair)
        o1 = min(o0 + 1, nco - 1)  # an odd last channel is computed twice (same values)
        acc0 = np.empty(whole_blocks(span_rows * pitch), np.int32)
        acc1 = np.empty_like(acc0)
        # Per output pixel of a row, the sum's base 9*Cin less what its padded taps add (pad_share): one vector per
        # channel, refilled only when the kind of row (top, bottom, inner) changes.
        base0 = np.empty(wo, np.float32)
        base1 = np.empty(wo, np.float32)
        filled = -1
        for oy0 in range(0, ho, span_rows):
            nrows = min(span_rows, ho - oy0)
            span = whole_blocks(nrows * pitch)
            acc0[:span] = 0
            acc1[:span] = 0
            for k in range(nk):  # contiguous loads (vectorised, no gathers)
                q0 = np.uint64(oy0 * pitch)
                if stride == 1:
                    _xnor_span_stride1(xp[b, k], q0, np.uint64(pitch), wq[o0, k], wq[o1, k], acc0, acc1, span)
                else:
                    _xnor_span_stride2(xp[b, k], q0, np.uint64(pitch), wq[o0, k], wq[o1, k], acc0, acc1, span)
            for r in range(nrows):
                oy = oy0 + r
                r0 = oy * stride
                top = r0 == 0
                bottom = r0 + 2 > nh
                kind = (1 if top else 0) + (2 if bottom else 0)
                if kind != filled:
                    filled = kind
                    _row_base(pad_share, o0, cin, top, bottom, right_padded, base0)
                    _row_base(pad_share, o1, cin, top, bottom, right_padded, base1)
                for pair in range(2):
                    o = o0 if pair == 0 else o1
                    acc = (acc0 if pair == 0 else acc1)[r * pitch:r * pitch + wo]
                    base = base0 if pair == 0 else base1
                    m = mul[o]
                    a = add[o]
                    g = rp_gamma[o] if use_rprelu else np.float32(0.0)
                    sl = rp_slope[o] if use_rprelu else np.float32(0.0)
                    z = rp_zeta[o] if use_rprelu else np.float32(0.0)
                    for ox in range(wo):
                        out[b, o, oy, ox] = _epilogue(base[ox], acc[ox], m, a, g, sl, z, use_rprelu)
                    if has_res:
                        for ox in range(wo):
                            out[b, o, oy, ox] += residual[b, o, oy, ox]


@njit(fastmath=set(CONV_FASTMATH))  # not inlined: compiled with binary_conv3x3's flags, not the fused kernel's
def _conv_rows_stride1(xp, b, oy0, nrows, nh, wq, pad_share, cin, conv_epilogue, o0, o1, acc0, acc1, base0, base1,
                       tile):  # fmt: skip
    """Stride-1 output rows oy0 .. oy0 + nrows - 1 of channels o0 and o1 of image b, with the RPReLU epilogue
    conv_epilogue = (mul, add, rp_gamma, rp_slope, rp_zeta), into ``tile[o, r]`` (:func:`binary_conv3x3`'s math;
    acc0/acc1, base0/base1: its sums and base vectors). :func:`binary_conv3x3` keeps this loop in its own body: a
    shared helper made its serial build 3-18 % slower on the edge model's shapes (measured in one process,
    2026-12-07), which cost a layer its 4x at one thread."""
    mul, add, gamma, slope, zeta = conv_epilogue
    wo = tile.shape[2]
    pitch = row_pitch(wo)
    span = whole_blocks(nrows * pitch)
    acc0[:span] = 0
    acc1[:span] = 0
    for k in range(xp.shape[1]):
        _xnor_span_stride1(xp[b, k], np.uint64(oy0 * pitch), np.uint64(pitch), wq[o0, k], wq[o1, k], acc0, acc1, span)
    filled = -1
    for r in range(nrows):
        top = oy0 + r == 0
        bottom = oy0 + r + 2 > nh
        kind = (1 if top else 0) + (2 if bottom else 0)
        if kind != filled:  # at stride 1 the last column's right taps are always padding
            filled = kind
            _row_base(pad_share, o0, cin, top, bottom, True, base0)
            _row_base(pad_share, o1, cin, top, bottom, True, base1)
        for pair in range(2):
            o = o0 if pair == 0 else o1
            acc = (acc0 if pair == 0 else acc1)[r * pitch:r * pitch + wo]
            base = base0 if pair == 0 else base1
            line = tile[o, r]
            for ox in range(wo):
                line[ox] = _epilogue(base[ox], acc[ox], mul[o], add[o], gamma[o], slope[o], zeta[o], True)


def signed_sum_tables(sign_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weights of a binary 1x1 conv as :func:`binary_pointwise` reads them.

    sign_pos: (Cout, Cin) bool, True where the weight is +1. Input channels are taken in groups of 4 (the last
    groups padded with zero channels to whole quads of groups); for output o and group g the weights' four signs
    pick one of the 16 signed sums of the group's channels. The 8 sums in which the group's last channel is +1
    are tabulated, the other 8 are their negatives. Returns ``entry`` (Cout, G) int32, the tabulated sum (bit j
    set: channel j of the group is +1, j < 3) and ``sign`` (Cout, G) float32, +-1 (-1: the negated sum), with
    G = 4 * ceil(Cin / 16).
    """
    cout, cin = sign_pos.shape
    groups = 4 * -(-cin // 16)
    signs = np.ones((cout, 4 * groups), np.float32)
    signs[:, :cin] = np.where(sign_pos, np.float32(1.0), np.float32(-1.0))
    signs = signs.reshape(cout, groups, 4)
    sign = signs[:, :, 3]
    first3 = signs[:, :, :3] * sign[:, :, None]  # the tabulated sum has channel 3 positive
    entry = (first3 > 0) @ np.array([1, 2, 4])
    return np.ascontiguousarray(entry, np.int32), np.ascontiguousarray(sign)


@njit(inline="always")
def _channel_or_zero(y, b, c, p, nci):
    return y[b, c, p] if c < nci else np.float32(0.0)


@njit(inline="always")
def _signed_sums(y, b, c, p0, n, table):
    """table[e, l] = the signed sum of channels c..c+3 at pixel p0 + l (entry bits: channels c..c+2 positive,
    channel c+3 always positive) for l < n; channels past the map's last one count as 0. p0: uint64 (an unsigned
    index skips numba's negative-index wraparound, whose selects turned the loads into gathers)."""
    nci = y.shape[1]
    if c + 3 < nci:
        for lane in range(n):
            p = p0 + np.uint64(lane)
            x0, x1, x2, x3 = y[b, c, p], y[b, c + 1, p], y[b, c + 2, p], y[b, c + 3, p]
            _tabulate(x0, x1, x2, x3, table, lane)
    else:
        for lane in range(n):
            p = p0 + np.uint64(lane)
            x0, x1 = _channel_or_zero(y, b, c, p, nci), _channel_or_zero(y, b, c + 1, p, nci)
            _tabulate(x0, x1, _channel_or_zero(y, b, c + 2, p, nci), np.float32(0.0), table, lane)


@njit(inline="always")
def _tabulate(x0, x1, x2, x3, table, lane):
    plus, minus = x3 + x2, x3 - x2
    both, diff = x0 + x1, x0 - x1
    table[0, lane] = minus - both
    table[1, lane] = minus + diff
    table[2, lane] = minus - diff
    table[3, lane] = minus + both
    table[4, lane] = plus - both
    table[5, lane] = plus + diff
    table[6, lane] = plus - diff
    table[7, lane] = plus + both


@njit(inline="always")
def _pointwise_chunk(y, yb, yp0, entry, sign, epilogue, out, ob, op0, n, tables, acc, sums, slab):
    """:func:`binary_pointwise` on n <= POINTWISE_CHUNK pixels: from pixel yp0 of image yb of y to pixel op0 of image
    ob of out (uint64 offsets); epilogue: (mul, add, rp_gamma, rp_slope, rp_zeta). Adds the outputs to
    sums[ob, slab]."""
    mul, add, rp_gamma, rp_slope, rp_zeta = epilogue
    nco = out.shape[1]
    for quad in range(entry.shape[1] // 4):
        g = 4 * quad
        for i in range(4):
            _signed_sums(y, yb, 4 * (g + i), yp0, n, tables[i])
        t0, t1, t2, t3 = tables[0], tables[1], tables[2], tables[3]
        for o in range(nco):
            e0, e1, e2, e3 = entry[o, g], entry[o, g + 1], entry[o, g + 2], entry[o, g + 3]
            s0, s1, s2, s3 = sign[o, g], sign[o, g + 1], sign[o, g + 2], sign[o, g + 3]
            row = acc[o]
            if quad == 0:
                for lane in range(n):
                    row[lane] = s0 * t0[e0, lane] + s1 * t1[e1, lane] + s2 * t2[e2, lane] + s3 * t3[e3, lane]
            else:
                for lane in range(n):
                    row[lane] += s0 * t0[e0, lane] + s1 * t1[e1, lane] + s2 * t2[e2, lane] + s3 * t3[e3, lane]
    for o in range(nco):
        m, a, g, s, z = mul[o], add[o], rp_gamma[o], rp_slope[o], rp_zeta[o]
        row = acc[o]
        total = np.float32(0.0)
        for lane in range(n):
            v = _rprelu(m * row[lane] + a, g, s, z)
            out[ob, o, op0 + np.uint64(lane)] = v
            total += v
        sums[ob, slab, o] += total


def pointwise_slabs(pixels: int, threads: int = 1) -> int:
    """Parallel tasks per image of :func:`binary_pointwise` (the second axis of its ``sums``) for ``threads`` numba
    threads: slabs of at most :data:`POINTWISE_SLAB` pixels, at least one per thread while there are chunks to
    share, and as many per thread (a 100x100 map: 6 slabs of 13-14 chunks rather than 4 full ones and a short one,
    3 against 2 per thread; a 25x25 map, which had one slab, gets 3 and 2 chunks)."""
    chunks = -(-pixels // POINTWISE_CHUNK)
    slabs = max(-(-pixels // POINTWISE_SLAB), min(threads, chunks))
    return max(1, min(-(-slabs // threads) * threads, chunks))


@partial(DualKernel, fastmath=frozenset({"reassoc"}))
def binary_pointwise(y, entry, sign, mul, add, rp_gamma, rp_slope, rp_zeta, out, sums):
    """Binary-weight 1x1 conv on a real-valued map (W1A32) with its epilogue: ``out = rprelu(mul * (W @ y) + add)``
    per output channel, W the +-1 weights.

    y: (B, Cin, P) float32; entry, sign: :func:`signed_sum_tables` of W; mul, add, rp_*: (Cout,) float32 (alpha and
    a BatchNorm folded into mul/add; ``prelu(. + rp_gamma, rp_slope) + rp_zeta``); out: (B, Cout, P) float32;
    sums: (B, S, Cout) float32, S = :func:`pointwise_slabs` (P, threads): per-task channel sums of out (the weight
    branch's global average pool, without another pass over the map); task s takes chunks ``s * C // S`` to
    ``(s + 1) * C // S - 1`` of the C chunks of :data:`POINTWISE_CHUNK` pixels.

    Per chunk of pixels, the 8 signed sums of every 4 input channels are tabulated once (12 adds per pixel and
    group), then each output channel adds one tabulated sum times its sign per 4 input channels, four groups per
    pass over its accumulator: a quarter of a GEMM's multiply-adds, with the tables in L1. (Tabulating all 16
    sums, so that no multiply by the sign is left, measured 1.05-1.36x slower: twice the table stores.)
    ``reassoc`` lets LLVM vectorise the channel sums (and reorder additions: results differ from torch's by float
    rounding, as a GEMM's do).
    """
    nb, _, npix = y.shape
    nco = out.shape[1]
    nslab = sums.shape[1]
    nchunk = -(-npix // POINTWISE_CHUNK)
    epilogue = (mul, add, rp_gamma, rp_slope, rp_zeta)
    for task in prange(nb * nslab):
        b = task // nslab
        slab = task % nslab
        tables = np.empty((4, 8, POINTWISE_CHUNK), np.float32)
        acc = np.empty((nco, POINTWISE_CHUNK), np.float32)
        sums[b, slab] = 0
        for chunk in range(slab * nchunk // nslab, (slab + 1) * nchunk // nslab):
            p0 = chunk * POINTWISE_CHUNK
            q0 = np.uint64(p0)
            if p0 + POINTWISE_CHUNK <= npix:  # a constant trip count: whole vectors
                _pointwise_chunk(y, b, q0, entry, sign, epilogue, out, b, q0, POINTWISE_CHUNK, tables, acc, sums, slab)
            else:
                _pointwise_chunk(y, b, q0, entry, sign, epilogue, out, b, q0, npix - p0, tables, acc, sums, slab)


@njit
def fused_span_rows(width):
    """Output rows per task of :func:`binary_conv3x3_pointwise` for maps ``width`` pixels wide."""
    return max(1, FUSED_SPAN_PIXELS // width)


def fused_spans(height: int, width: int) -> int:
    """Tasks per image of :func:`binary_conv3x3_pointwise` (the second axis of its ``sums``)."""
    return -(-height // fused_span_rows(width))


@partial(DualKernel, fastmath=frozenset({"reassoc"}), work_arg=-2)
def binary_conv3x3_pointwise(
    xp, nh, nw, wq, pad_share, cin, conv_mul, conv_add, conv_gamma, conv_slope, conv_zeta,
    entry, sign, mul, add, rp_gamma, rp_slope, rp_zeta, out, sums,
):  # fmt: skip
    """A stride-1 :func:`binary_conv3x3` with its RPReLU epilogue (conv_*), then :func:`binary_pointwise` on its
    output, one span of :data:`FUSED_SPAN_PIXELS` output pixels (whole rows) per task: the conv writes every channel
    of its span into a tile that stays in cache and the 1x1 conv reads it there, instead of a (B, C, H, W) map
    written to memory and read back (with the write's read-for-ownership, three passes over the map).

    Arguments as those two kernels take them; out: (B, Cout, H*W) float32; sums: (B, :func:`fused_spans` (H, W),
    Cout) float32, per-task channel sums of out. out equals the two kernels' output bit for bit; the sums are added
    over other pixel ranges, so they differ by float rounding.
    """
    nb, _, words = xp.shape
    nmid = wq.shape[0]
    if words < plane_words(nh, nw):
        raise ValueError("binary_conv3x3_pointwise: packed planes shorter than plane_words(nh, nw)")
    span_rows = fused_span_rows(nw)
    nspan = sums.shape[1]
    conv_epilogue = (conv_mul, conv_add, conv_gamma, conv_slope, conv_zeta)
    epilogue = (mul, add, rp_gamma, rp_slope, rp_zeta)
    for task in prange(nb * nspan):
        b = task // nspan
        span = task % nspan
        oy0 = span * span_rows
        nrows = min(span_rows, nh - oy0)
        tile = np.empty((nmid, span_rows, nw), np.float32)
        acc0 = np.empty(whole_blocks(span_rows * row_pitch(nw)), np.int32)
        acc1 = np.empty_like(acc0)
        base0 = np.empty(nw, np.float32)
        base1 = np.empty(nw, np.float32)
        for pair in range((nmid + 1) // 2):
            o0 = 2 * pair
            _conv_rows_stride1(xp, b, oy0, nrows, nh, wq, pad_share, cin, conv_epilogue, o0, min(o0 + 1, nmid - 1),
                               acc0, acc1, base0, base1, tile)  # fmt: skip
        y = tile.reshape(1, nmid, span_rows * nw)
        tables = np.empty((4, 8, POINTWISE_CHUNK), np.float32)
        acc = np.empty((out.shape[1], POINTWISE_CHUNK), np.float32)
        sums[b, span] = 0
        npix = nrows * nw
        for p0 in range(0, npix, POINTWISE_CHUNK):
            q0, q = np.uint64(p0), np.uint64(oy0 * nw + p0)
            if p0 + POINTWISE_CHUNK <= npix:  # a constant trip count: whole vectors
                _pointwise_chunk(y, 0, q0, entry, sign, epilogue, out, b, q, POINTWISE_CHUNK, tables, acc, sums, span)
            else:
                _pointwise_chunk(y, 0, q0, entry, sign, epilogue, out, b, q, npix - p0, tables, acc, sums, span)


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def channel_gate(partial, pixels, sign1, alpha1, gamma, slope, zeta, sign2, alpha2, gate):
    """The BDC-V3 weight branch, ``sigmoid(a2 * (S2 @ rprelu(a1 * (S1 @ mean))))`` per image, from the per-task
    channel sums of the unit's main path.

    partial: (B, T, C) float32, what :func:`binary_pointwise` / :func:`binary_conv3x3_pointwise` leave in ``sums``;
    pixels: the map's pixel count (the means are the sums over T divided by it); sign1, sign2: (C, C) float32 +-1
    weights; alpha1, alpha2: their (C,) scales; gamma, slope, zeta: the RPReLU between them; gate: (B, C) float32
    out. One call instead of a dozen small numpy operations (26 against 10 us per unit under cProfile). ``reassoc``
    vectorises the dot products: sums in another order than BLAS's, as different as two BLAS builds."""
    nb, nt, nc = partial.shape
    mean = np.empty(nc, np.float32)
    hidden = np.empty(nc, np.float32)
    count = np.float32(pixels)
    one = np.float32(1.0)
    for b in range(nb):
        for c in range(nc):
            total = np.float32(0.0)
            for t in range(nt):
                total += partial[b, t, c]
            mean[c] = total / count
        for o in range(nc):
            h = np.float32(0.0)
            for c in range(nc):
                h += sign1[o, c] * mean[c]
            hidden[o] = _rprelu(h * alpha1[o], gamma[o], slope[o], zeta[o])
        for o in range(nc):
            h = np.float32(0.0)
            for c in range(nc):
                h += sign2[o, c] * hidden[c]
            gate[b, o] = one / (one + np.exp(-(h * alpha2[o])))  # exp overflows to inf for h << 0: gate 0


@DualKernel
def unit_output(y, gate, identity, extra, scale, rp_gamma, rp_slope, rp_zeta, out):
    """A unit's last pass, with what the block around it does next fused in:
    ``out = act((y * gate + identity + extra) * scale)``.

    y, out: (B, C, P) float32; gate: (B, C) (the BDC weight branch; ones without it); identity, extra: (B, C, P)
    or empty (skipped): the unit's residual, then a map the block adds (the other half of a FusionDecrease, a
    basic block's shortcut); scale: the block's factor (0.5 in FusionDecrease, else 1);
    act: the block's RPReLU with rp_* (C,), or none when they are empty. Operations in torch's order.
    """
    nb, nc, npix = y.shape
    has_identity = identity.shape[0] > 0
    has_extra = extra.shape[0] > 0
    has_act = rp_gamma.shape[0] > 0
    scaled = scale != 1
    zero = np.float32(0.0)
    for bc in prange(nb * nc):
        b = bc // nc
        c = bc % nc
        g = gate[b, c]
        rg, rs, rz = (rp_gamma[c], rp_slope[c], rp_zeta[c]) if has_act else (zero, zero, zero)
        for p in range(npix):  # one pass; the flags are loop-invariant, so LLVM unswitches the loop
            v = y[b, c, p] * g
            if has_identity:
                v = v + identity[b, c, p]
            if has_extra:
                v = (v + extra[b, c, p]) * scale
            elif scaled:
                v = v * scale
            if has_act:
                v = _rprelu(v, rg, rs, rz)
            out[b, c, p] = v


@DualKernel
def upsample2x_bilinear(x, out):
    """Bilinear x2 upsampling as ``F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)``:
    x (B, C, H, W) float32 -> out (B, C, 2H, 2W). With a factor of 2 every source coordinate is
    ``i -+ 0.25`` (clamped at the border), so the weights are the exact constants 0.25/0.75 (or 1/0); each
    image row is interpolated along W once, then pairs of those rows are blended.

    Along W, each pair of neighbours gives the two outputs between them in one loop: LLVM vectorises the pair of
    stores as one interleaved group (2.1-2.2x faster than a loop per parity, whose stride-2 stores it did not
    vectorise: 64x100x100 0.34 -> 0.15 ms, 2 threads, AMD EPYC, 2026-12-08)."""
    nb, nc, h, w = x.shape
    q1 = np.float32(0.25)
    q3 = np.float32(0.75)
    for bc in prange(nb * nc):
        b = bc // nc
        c = bc % nc
        rows = np.empty((h, 2 * w), np.float32)
        for i in range(h):
            src = x[b, c, i]
            row = rows[i]
            row[0] = src[0]
            for j in range(w - 1):
                left = src[j]
                right = src[j + 1]
                row[2 * j + 1] = q3 * left + q1 * right
                row[2 * j + 2] = q1 * left + q3 * right
            row[2 * w - 1] = q3 * src[w - 1] + q1 * src[w - 1]
        out[b, c, 0, :] = rows[0]
        for i in range(1, h):
            for j in range(2 * w):
                out[b, c, 2 * i, j] = q1 * rows[i - 1, j] + q3 * rows[i, j]
        for i in range(h - 1):
            for j in range(2 * w):
                out[b, c, 2 * i + 1, j] = q3 * rows[i, j] + q1 * rows[i + 1, j]
        for j in range(2 * w):
            out[b, c, 2 * h - 1, j] = q3 * rows[h - 1, j] + q1 * rows[h - 1, j]


@DualKernel
def avg_pool2x2(x, out):
    """2x2 average pooling, stride 2, floor mode (the stride-2 shortcut): x (B, C, H, W) float32,
    out (B, C, H // 2, W // 2). Sums in torch's order and divides by 4, so results equal ``avg_pool2d``'s."""
    nb, nc, _, _ = x.shape
    _, _, ho, wo = out.shape
    for bc in prange(nb * nc):
        b = bc // nc
        c = bc % nc
        for i in range(ho):
            for j in range(wo):
                s = x[b, c, 2 * i, 2 * j] + x[b, c, 2 * i, 2 * j + 1]
                s = s + x[b, c, 2 * i + 1, 2 * j]
                s = s + x[b, c, 2 * i + 1, 2 * j + 1]
                out[b, c, i, j] = s / np.float32(4.0)


#: Cells per parallel task of :func:`argmax_classes`.
ARGMAX_CELLS = 64


@DualKernel
def argmax_classes(logits, out):
    """The class of the largest logit at every (cell, height), as ``torch.argmax`` picks it: the first maximum, and
    a NaN counts as larger than any number (the first NaN wins).

    logits: (N, Z, K) float32 C-contiguous; out: (N, Z) uint8 (K <= 256). Each cell's (Z, K) block is transposed
    into a (K, Z) tile in L1, then one compare-and-select pass per class runs along Z, vectorised and branch-free:
    the time does not depend on the values. torch's argmax over the last dimension does (occupancy logits of the
    edge model, 200x200x16x18: 5.7 ms on the random-init FP twin's, 10.0 ms on the trained model's; this kernel
    5.6 ms on both, 2 threads, AMD EPYC, 2026-12-08)."""
    ncell, nz, nk = logits.shape
    for task in prange(-(-ncell // ARGMAX_CELLS)):
        tile = np.empty((nk, nz), np.float32)
        best = np.empty(nz, np.float32)
        index = np.empty(nz, np.int32)
        for cell in range(task * ARGMAX_CELLS, min(ncell, (task + 1) * ARGMAX_CELLS)):
            block = logits[cell]
            for z in range(nz):
                for k in range(nk):
                    tile[k, z] = block[z, k]
            best[:] = tile[0]
            index[:] = 0
            for k in range(1, nk):
                row = tile[k]
                for z in range(nz):
                    v = row[z]
                    b = best[z]
                    larger = (v > b) | ((v != v) & (b == b))
                    best[z] = v if larger else b
                    index[z] = k if larger else index[z]
            labels = out[cell]
            for z in range(nz):
                labels[z] = index[z]


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


@DualKernel
def stream_peak(x, out, repeats):
    """Streaming passes ``out = 1.5 * x + r`` (r the pass number) over per-thread buffers: the memory bandwidth that
    a kernel's pass over a map sees at that buffer size.

    x, out: (T, N) float32 with T = number of threads, each thread streaming its own row; each pass reads 4 and
    writes 4 bytes per element.
    """
    nt, n = x.shape
    for t in prange(nt):
        src = x[t]
        dst = out[t]
        for r in range(repeats):
            shift = np.float32(r)
            for i in range(n):
                dst[i] = src[i] * np.float32(1.5) + shift


def pack_weights3x3(sign_pos: np.ndarray) -> np.ndarray:
    """Pack 3x3 weight signs.

    sign_pos: (Cout, Cin, 3, 3) bool, True where the weight's sign is +1. Returns (9, K, Cout) words.
    """
    cout, cin, kh, kw = sign_pos.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"pack_weights3x3: expected 3x3 weights, got {kh}x{kw}")
    per_tap = sign_pos.transpose(2, 3, 1, 0).reshape(9, cin, cout)  # (tap, Cin, Cout)
    return np.ascontiguousarray(pack_bits_axis1(per_tap).transpose(0, 2, 1))  # (9, K, Cout)


def conv_weights(packed: np.ndarray, cin: int) -> tuple[np.ndarray, np.ndarray]:
    """Stored (9, K, Cout) weight words -> the conv kernel's ``wq`` (Cout, K, 9) and ``pad_share`` (Cout, 9)
    int32 = ``Cin - 2*popcount(w)`` summed over the words of each tap (what a tap on zero padding adds)."""
    wq = np.ascontiguousarray(packed.transpose(2, 1, 0))
    ones = np.unpackbits(wq.astype(wq.dtype.newbyteorder("<"), copy=False).view(np.uint8).reshape(*wq.shape, -1),
                         axis=-1).sum(axis=(1, 3))  # fmt: skip
    return wq, np.ascontiguousarray((cin - 2 * ones).astype(np.int32))


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
