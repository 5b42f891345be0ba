"""Bit-packed kernels against torch float convs on +-1 tensors (integer results must be bit-exact)."""

from __future__ import annotations

import os

import numba
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bdc_occ_ros.engines.bitwise import kernels
from bdc_occ_ros.engines.bitwise.layers import pack_activation


def llvm_host_features() -> list[str]:
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_features().flatten().split(",")


_E1 = np.empty(0, np.float32)
_E4 = np.empty((0, 0, 0, 0), np.float32)


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0)


def _packed_conv(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """Raw integer conv sum via the packed kernels, returned as NCHW float."""
    c = x.shape[1]
    xp = pack_activation(x, np.ones(c, np.float32), np.zeros(c, np.float32), phased=stride == 2)
    wq, pad_share = kernels.conv_weights(kernels.pack_weights3x3((w >= 0).numpy()), c)
    b, _, h, wd = x.shape
    out = np.empty((b, w.shape[0], kernels.conv_out_size(h, stride), kernels.conv_out_size(wd, stride)), np.float32)
    ones = np.ones(w.shape[0], np.float32)
    zeros = np.zeros_like(ones)
    kernels.binary_conv3x3(xp, h, wd, wq, pad_share, c, stride, ones, zeros, _E1, _E1, _E1, False, _E4, out)
    return torch.from_numpy(out)


@pytest.mark.parametrize(
    ("cin", "cout", "h", "w", "stride"),
    [
        (3, 5, 7, 6, 1), (32, 32, 6, 5, 2), (33, 4, 4, 4, 1), (63, 8, 5, 9, 1),
        (65, 70, 8, 8, 2), (130, 33, 9, 7, 2), (64, 64, 1, 1, 1), (128, 16, 2, 3, 2),
        (5, 3, 1, 2, 1), (5, 3, 2, 1, 2), (5, 3, 3, 3, 2), (32, 32, 1, 1, 2),
        (8, 4, 3, 70, 1), (33, 5, 4, 66, 1), (3, 2, 2, 63, 1),  # long rows: full vectors and a remainder
        (32, 6, 3, 16, 1), (40, 6, 3, 17, 1), (9, 3, 2, 33, 2), (64, 4, 2, 32, 2),  # rows at a LANES boundary
    ],
)
def test_binary_conv3x3_bit_exact(cin: int, cout: int, h: int, w: int, stride: int) -> None:
    g = torch.Generator().manual_seed(cin * 100 + h)
    x = torch.randn(2, cin, h, w, generator=g)
    x[0, :, 0, 0] = 0.0  # sign(0) = +1 on both sides
    wt = torch.randn(cout, cin, 3, 3, generator=g)
    ref = F.conv2d(_sign(x), _sign(wt), stride=stride, padding=1)  # zero padding: border taps add 0
    got = _packed_conv(x, wt, stride)
    assert got.shape == ref.shape
    assert torch.equal(got, ref)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
@pytest.mark.parametrize("stride", [1, 2])
def test_binary_conv3x3_parallel_build_by_output_size(stride: int) -> None:
    """A 32-channel 150x150 map packs into 25k words, below PARALLEL_MIN_ELEMENTS, but the conv writes 180k (stride
    2) or 720k outputs: with 2 numba threads the parallel build runs, and its sums are exact."""
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(stride)
        x, wt = torch.randn(1, 32, 150, 150, generator=g), torch.randn(32, 32, 3, 3, generator=g)
        xp = pack_activation(x, np.ones(32, np.float32), np.zeros(32, np.float32), phased=stride == 2)
        wq, pad_share = kernels.conv_weights(kernels.pack_weights3x3((wt >= 0).numpy()), 32)
        ho = kernels.conv_out_size(150, stride)
        out, ones = np.empty((1, 32, ho, ho), np.float32), np.ones(32, np.float32)
        args = (xp, 150, 150, wq, pad_share, 32, stride, ones, ones * 0, _E1, _E1, _E1, False, _E4, out)
        assert xp.size < kernels.PARALLEL_MIN_ELEMENTS <= out.size
        assert kernels.binary_conv3x3.build_for(*args) is kernels.binary_conv3x3.parallel
        kernels.binary_conv3x3(*args)
    finally:
        numba.set_num_threads(previous)
    assert torch.equal(torch.from_numpy(out), F.conv2d(_sign(x), _sign(wt), stride=stride, padding=1))


def test_binary_conv3x3_rejects_planes_shorter_than_plane_words() -> None:
    x, w = torch.randn(1, 8, 4, 20), torch.randn(3, 8, 3, 3)
    wq, pad_share = kernels.conv_weights(kernels.pack_weights3x3((w >= 0).numpy()), 8)
    short = pack_activation(x, np.ones(8, np.float32), np.zeros(8, np.float32))[..., :6 * 21]  # no slack
    out, ones = np.empty((1, 3, 4, 20), np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="plane_words"):
        kernels.binary_conv3x3(np.ascontiguousarray(short), 4, 20, wq, pad_share, 8, 1, ones, ones, _E1, _E1, _E1,
                               False, _E4, out)  # fmt: skip


def test_binary_conv3x3_stride2_rejects_planes_not_phase_plane_words() -> None:
    x, w = torch.randn(1, 8, 5, 6), torch.randn(3, 8, 3, 3)
    wq, pad_share = kernels.conv_weights(kernels.pack_weights3x3((w >= 0).numpy()), 8)
    natural = pack_activation(x, np.ones(8, np.float32), np.zeros(8, np.float32))  # not phased
    out, ones = np.empty((1, 3, 3, 3), np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="phase_plane_words"):
        kernels.binary_conv3x3(natural, 5, 6, wq, pad_share, 8, 2, ones, ones, _E1, _E1, _E1, False, _E4, out)


def test_conv_epilogue_alpha_rprelu_residual() -> None:
    g = torch.Generator().manual_seed(1)
    cin, cout = 65, 7
    x, wt = torch.randn(1, cin, 6, 5, generator=g), torch.randn(cout, cin, 3, 3, generator=g)
    mul, add = torch.rand(cout, generator=g), torch.randn(cout, generator=g)
    gamma, slope, zeta = (torch.randn(cout, generator=g) for _ in range(3))
    res = torch.randn(1, cout, 6, 5, generator=g)
    s = F.conv2d(_sign(x), _sign(wt), padding=1)
    y = s * mul[:, None, None] + add[:, None, None] + gamma[:, None, None]
    y = torch.where(y < 0, y * slope[:, None, None], y) + zeta[:, None, None] + res[0]
    xp = pack_activation(x, np.ones(cin, np.float32), np.zeros(cin, np.float32))
    out = np.empty((1, cout, 6, 5), np.float32)
    wq, pad_share = kernels.conv_weights(kernels.pack_weights3x3((wt >= 0).numpy()), cin)
    kernels.binary_conv3x3(xp, 6, 5, wq, pad_share, cin, 1, mul.numpy(), add.numpy(),
                           gamma.numpy(), slope.numpy(), zeta.numpy(), True, res.numpy(), out)  # fmt: skip
    torch.testing.assert_close(torch.from_numpy(out)[0], y[0], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 31, 32, 63, 64, 65, 130])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pack_signs_matches_torch(channels: int, channels_last: bool) -> None:
    _check_pack(channels, 3, 4, channels_last)


@pytest.mark.parametrize(("h", "w"), [(70, 64), (3, kernels.PACK_CHUNK_PIXELS + 5)])
def test_pack_signs_over_several_chunks(h: int, w: int) -> None:
    _check_pack(40, h, w, channels_last=False)  # chunks of whole rows, and of single rows wider than a chunk


def test_pack_chunks_give_every_thread_as_many_tasks() -> None:
    assert kernels.pack_chunks(1, 1, 100, 100, 1) == 5 and kernels.pack_chunks(1, 1, 100, 100, 2) == 6
    assert kernels.pack_chunks(1, 1, 200, 200, 2) == 20 and kernels.pack_chunks(1, 2, 25, 25, 2) == 1
    assert kernels.pack_chunks(1, 1, 3, 8, 4) == 3  # never more chunks than rows
    for chunks in (1, 2, 6, 7):  # chunk counts the threads may ask for: rows shared out unevenly by one
        packed = np.empty((1, 1, kernels.plane_words(7, 9)), np.uint32)
        x = torch.randn(1, 20, 7, 9, generator=torch.Generator().manual_seed(chunks))
        kernels.pack_signs_nchw(x.numpy(), np.ones(20, np.float32), np.zeros(20, np.float32),
                                kernels.bit_masks(np.uint32), False, chunks, packed)  # fmt: skip
        assert np.array_equal(packed, pack_activation(x, np.ones(20, np.float32), np.zeros(20, np.float32)))


@pytest.mark.parametrize(("channels", "h", "w"), [(32, 3, 4), (65, 4, 7), (5, 2, 1), (40, 70, 64)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pack_signs_phase_planes(channels: int, h: int, w: int, channels_last: bool) -> None:
    """Phase planes hold the words of natural ones split by the parity of their padded row and column, with zero
    padding and slack: odd and even heights and widths, both pack kernels."""
    _check_pack(channels, h, w, channels_last, phased=True)


def _phase_planes(natural: np.ndarray, h: int, w: int) -> np.ndarray:
    """Phase planes built from natural ones with numpy: the padded image's (even row, even column), (even, odd),
    (odd, even), (odd, odd) pixels, Ho + 1 rows at a pitch of Wo + 1 each, zeros elsewhere."""
    b, k, _ = natural.shape
    padded = np.zeros((b, k, h + 2, w + 2), natural.dtype)
    padded[..., : w + 1] = kernels.padded_grid(natural, h, w)
    rows, pitch = kernels.conv_out_size(h, 2) + 1, kernels.conv_out_size(w, 2) + 1
    sub_words = kernels.phase_plane_words(h, w) // 4
    planes = np.zeros((b, k, 4, sub_words), natural.dtype)
    for phase in range(4):
        pixels = padded[..., phase // 2 :: 2, phase % 2 :: 2][..., :rows, :pitch]
        grid = planes[:, :, phase, : rows * pitch].reshape(b, k, rows, pitch)
        grid[..., : pixels.shape[2], : pixels.shape[3]] = pixels
    return planes.reshape(b, k, 4 * sub_words)


def _check_pack(channels: int, h: int, w: int, channels_last: bool, phased: bool = False) -> None:
    g = torch.Generator().manual_seed(channels)
    x = torch.randn(2, channels, h, w, generator=g)
    x[1, :, min(1, h - 1), min(1, w - 1)] = 0.0
    x[0, :, h - 1, w - 1] = -0.0  # -0.0 >= 0 as well
    scale, shift = torch.rand(channels, generator=g) + 0.5, torch.randn(channels, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    packed = pack_activation(x, scale.numpy(), shift.numpy(), phased)
    if phased:
        natural = pack_activation(x, scale.numpy(), shift.numpy())
        assert packed.shape == (2, kernels.num_words(channels), kernels.phase_plane_words(h, w))
        assert np.array_equal(kernels.phased_grid(packed, h, w), kernels.padded_grid(natural, h, w))
        assert np.array_equal(packed, _phase_planes(natural, h, w))  # every word: the zeros and the slack too
        packed = natural
    dtype = kernels.word_dtype(channels)
    assert packed.shape == (2, kernels.num_words(channels), kernels.plane_words(h, w)) and packed.dtype == dtype
    assert packed.shape[2] == (h + 2) * (w + 1) + kernels.LANES + 1
    ref = (x * scale[:, None, None] + shift[:, None, None]) >= 0
    interior = kernels.padded_grid(packed, h, w)[:, :, 1:-1, 1:].transpose(0, 2, 3, 1)  # (B, H, W, K)
    assert np.array_equal(kernels.unpack_bits(interior, channels), ref.permute(0, 2, 3, 1).numpy())
    border = packed.copy()
    kernels.padded_grid(border, h, w)[:, :, 1:-1, 1:] = 0
    assert np.array_equal(border, np.zeros_like(border))  # the zero border (and the slack after it) is padding
    bits = packed.itemsize * 8
    if channels % bits:  # padding bits of the last word stay 0
        assert not np.any(interior[..., channels // bits] >> dtype(channels % bits))


@pytest.mark.parametrize(("cin", "words", "dtype"), [(20, 1, np.uint32), (70, 2, np.uint64)])
def test_weight_pack_round_trip(cin: int, words: int, dtype: type) -> None:
    bits = np.random.default_rng(0).random((9, cin, 5)) > 0.5  # (taps, Cin, Cout)
    sign_pos = bits.reshape(3, 3, cin, 5).transpose(3, 2, 0, 1)  # (Cout, Cin, 3, 3)
    packed = kernels.pack_weights3x3(sign_pos)
    assert packed.shape == (9, words, 5) and packed.dtype == dtype
    assert np.array_equal(kernels.unpack_bits(packed.transpose(0, 2, 1), cin), bits.transpose(0, 2, 1))


def test_conv_weights_layout_and_padding_share() -> None:
    sign_pos = np.random.default_rng(1).random((6, 70, 3, 3)) > 0.5  # (Cout, Cin, 3, 3)
    wq, pad_share = kernels.conv_weights(kernels.pack_weights3x3(sign_pos), 70)
    assert wq.shape == (6, 2, 9) and pad_share.shape == (6, 9) and pad_share.dtype == np.int32
    # a tap on zero padding (all bits 0 = all -1) adds sum_c (-1) * w[o, c, t] = Cin - 2 * (number of +1 weights)
    expected = -np.where(sign_pos, 1, -1).reshape(6, 70, 9).sum(axis=1)
    assert np.array_equal(pad_share, expected)


def test_signed_sum_tables_select_each_weight_pattern() -> None:
    # the sum a tabulated entry stands for, times its sign, is the weights' signed sum of the group's 4 channels
    pos = np.random.default_rng(2).random((9, 21)) > 0.5  # 21 channels: 6 groups of 4, padded to 8 (two quads)
    entry, sign = kernels.signed_sum_tables(pos)
    assert entry.shape == sign.shape == (9, 8) and entry.dtype == np.int32 and set(np.unique(sign)) <= {-1.0, 1.0}
    weights = np.ones((9, 32))
    weights[:, :21] = np.where(pos, 1.0, -1.0)
    bits = (entry[:, :, None] >> np.arange(3)) & 1  # channels 0..2 of the group: +1 where the bit is set
    tabulated = np.concatenate([np.where(bits, 1.0, -1.0), np.ones((9, 8, 1))], axis=2)  # channel 3 always +1
    assert np.array_equal(sign[:, :, None] * tabulated, weights.reshape(9, 8, 4))


@pytest.mark.parametrize("slab_threads", [1, 2, 3])  # how many slabs the pixels are cut into
@pytest.mark.parametrize(
    ("batch", "cin", "cout", "pixels"),
    [
        (2, 32, 32, 2 * kernels.POINTWISE_SLAB + 300),  # whole slabs, whole chunks and a partial chunk
        (2, 67, 9, 50), (1, 2, 3, 1), (2, 16, 5, kernels.POINTWISE_CHUNK), (1, 130, 128, 3 * 25),
        (1, 64, 16, 625),  # 5 chunks: one slab alone, 3 + 2 chunks for 2 threads
    ],
)  # fmt: skip
def test_binary_pointwise_equals_torch(batch: int, cin: int, cout: int, pixels: int, slab_threads: int) -> None:
    g = torch.Generator().manual_seed(cin * cout + pixels)
    y = torch.randn(batch, cin, pixels, generator=g)
    weight = torch.where(torch.rand(cout, cin, generator=g) > 0.5, 1.0, -1.0)
    mul, add, gamma, slope, zeta = (torch.randn(cout, generator=g) for _ in range(5))
    v = F.conv1d(y, weight[:, :, None]) * mul[:, None] + add[:, None] + gamma[:, None]
    ref = torch.where(v > 0, v, v * slope[:, None]) + zeta[:, None]
    entry, sign = kernels.signed_sum_tables((weight > 0).numpy())
    out = np.full((batch, cout, pixels), np.nan, np.float32)
    sums = np.full((batch, kernels.pointwise_slabs(pixels, slab_threads), cout), np.nan, np.float32)
    vectors = (t.numpy() for t in (mul, add, gamma, slope, zeta))
    kernels.binary_pointwise(y.numpy(), entry, sign, *vectors, out, sums)
    # another summation order than torch's: equal within float rounding of the conv sum's magnitude
    scale = float(y.abs().sum(dim=1).max() * mul.abs().max())
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-5, atol=2e-6 * scale)
    torch.testing.assert_close(torch.from_numpy(sums.sum(axis=1)), ref.sum(dim=2), rtol=1e-5,
                               atol=2e-6 * scale * pixels)  # fmt: skip


def test_pointwise_slabs_share_the_chunks_evenly_between_threads() -> None:
    chunk, slab = kernels.POINTWISE_CHUNK, kernels.POINTWISE_SLAB
    assert kernels.pointwise_slabs(625) == 1 and kernels.pointwise_slabs(625, 2) == 2  # 5 chunks: 3 + 2
    assert kernels.pointwise_slabs(10_000, 1) == 5 and kernels.pointwise_slabs(10_000, 2) == 6  # not 3 + 2 tasks
    assert kernels.pointwise_slabs(2 * slab, 2) == 2 and kernels.pointwise_slabs(chunk, 4) == 1  # one chunk: one task
    assert kernels.pointwise_slabs(3 * chunk, 4) == 3  # never more slabs than chunks


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("batch", "cin", "cmid", "cout", "h", "w"),
    [
        (2, 32, 32, 32, 23, 50),  # whole spans and a partial last one (50 wide: 20 rows per span)
        (1, 70, 40, 9, 7, 130),  # 64-bit words, channels not multiples of 4, a row longer than a chunk
        (1, 3, 5, 6, 1, 1), (1, 8, 16, 8, 3, kernels.FUSED_SPAN_PIXELS + 1),  # one pixel; rows longer than a span
    ],
)  # fmt: skip
def test_conv3x3_pointwise_equals_the_two_kernels(batch, cin, cmid, cout, h, w, threads) -> None:
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs 2 numba threads")
    g = torch.Generator().manual_seed(cin + cmid + h)
    x = torch.randn(batch, cin, h, w, generator=g)
    xp = pack_activation(x, np.ones(cin, np.float32), np.zeros(cin, np.float32))
    wq, pad_share = kernels.conv_weights(kernels.pack_weights3x3((torch.randn(cmid, cin, 3, 3, generator=g) >= 0)
                                                                 .numpy()), cin)  # fmt: skip
    conv_vectors = [torch.randn(cmid, generator=g).numpy() for _ in range(5)]
    entry, sign = kernels.signed_sum_tables((torch.rand(cout, cmid, generator=g) > 0.5).numpy())
    vectors = [torch.randn(cout, generator=g).numpy() for _ in range(5)]
    y = np.empty((batch, cmid, h, w), np.float32)
    kernels.binary_conv3x3(xp, h, w, wq, pad_share, cin, 1, *conv_vectors, True, _E4, y)
    ref = np.empty((batch, cout, h * w), np.float32)
    ref_sums = np.empty((batch, kernels.pointwise_slabs(h * w), cout), np.float32)
    kernels.binary_pointwise(y.reshape(batch, cmid, h * w), entry, sign, *vectors, ref, ref_sums)
    out = np.full((batch, cout, h * w), np.nan, np.float32)
    sums = np.full((batch, kernels.fused_spans(h, w), cout), np.nan, np.float32)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        build = kernels.binary_conv3x3_pointwise.parallel if threads > 1 else kernels.binary_conv3x3_pointwise.serial
        build(xp, h, w, wq, pad_share, cin, *conv_vectors, entry, sign, *vectors, out, sums)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(out, ref)  # the same float operations in the same order, pixel by pixel
    np.testing.assert_allclose(sums.sum(axis=1), ref_sums.sum(axis=1), rtol=1e-5,
                               atol=1e-6 * float(np.abs(ref).sum(axis=2).max()))  # fmt: skip


def test_full_width_features_only_for_avx512() -> None:
    assert kernels.full_width_features("+avx2,+avx512f,+popcnt") == "+avx2,+avx512f,+popcnt,-prefer-256-bit"
    assert kernels.full_width_features("+avx2,-avx512f,+popcnt") is None
    assert kernels.full_width_features("") is None


@pytest.mark.skipif("NUMBA_CPU_FEATURES" in os.environ, reason="NUMBA_CPU_FEATURES set by hand")
def test_full_width_vectors_exactly_on_avx512() -> None:
    assert kernels.full_width_vectors() == ("+avx512f" in llvm_host_features())


@pytest.mark.skipif("+avx512f" not in llvm_host_features(), reason="no AVX-512 on this CPU")
def test_kernels_vectorise_at_512_bits_on_avx512() -> None:
    @numba.njit
    def xor_counts(a, b, w):
        for i in range(a.size):
            b[i] += kernels.popcount(a[i] ^ w)

    a = np.arange(4096, dtype=np.uint32)
    b = np.zeros_like(a)
    xor_counts(a, b, np.uint32(5))
    np.testing.assert_array_equal(b, [bin(int(v) ^ 5).count("1") for v in a])
    (asm,) = xor_counts.inspect_asm().values()
    assert "zmm" in asm  # LLVM's Intel tuning alone would have used ymm registers here (measured)


def test_popcount_peak_runs() -> None:
    words = np.arange(2 * 16, dtype=np.uint64).reshape(2, 16)
    expected = sum(bin(int(w) ^ r).count("1") for w in words.ravel() for r in range(3))
    assert kernels.popcount_peak(words, 3) == expected


@pytest.mark.parametrize("threads", [1, 2])
def test_stream_peak_writes_the_last_pass(threads: int) -> None:
    x = np.random.default_rng(threads).standard_normal((threads, 1000)).astype(np.float32)
    out = np.zeros_like(x)
    kernel = kernels.stream_peak.parallel if threads > 1 else kernels.stream_peak.serial
    kernel(x, out, 3)
    np.testing.assert_array_equal(out, x * np.float32(1.5) + np.float32(2.0))


@pytest.mark.parametrize(("h", "w"), [(8, 6), (7, 9), (2, 2)])
def test_avg_pool2x2_equals_torch(h: int, w: int) -> None:
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    out = np.empty((2, 3, h // 2, w // 2), np.float32)
    kernels.avg_pool2x2(x.numpy(), out)
    assert torch.equal(torch.from_numpy(out), F.avg_pool2d(x, 2, 2))


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 2, 1, 1), (1, 1, 1, 7), (1, 4, 6, 1), (1, 8, 64, 70)])
def test_upsample2x_bilinear_equals_torch(shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    ref = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    out = np.empty(ref.shape, np.float32)
    kernels.upsample2x_bilinear(x.numpy(), out)
    # torch may contract a product and a sum into an FMA: equal up to the last bit
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=2e-7, atol=2e-7 * float(x.abs().max()))


@pytest.mark.parametrize(("identity", "extra", "act"), [(True, False, False), (True, True, True), (False, True, False)])
def test_unit_output_fuses_block_ops(identity: bool, extra: bool, act: bool) -> None:
    g = torch.Generator().manual_seed(9)
    y, res, other = (torch.randn(2, 4, 30, generator=g) for _ in range(3))
    gate = torch.rand(2, 4, generator=g)
    gamma, slope, zeta = (torch.randn(4, generator=g) for _ in range(3))
    ref = y * gate[:, :, None]
    if identity:
        ref = ref + res
    if extra:
        ref = (ref + other) * 0.5
    if act:
        v = ref + gamma[:, None]
        ref = torch.where(v > 0, v, v * slope[:, None]) + zeta[:, None]
    empty1, empty3 = np.empty(0, np.float32), np.empty((0, 0, 0), np.float32)
    out = np.empty(y.shape, np.float32)
    kernels.unit_output(
        y.numpy(), gate.numpy(), res.numpy() if identity else empty3, other.numpy() if extra else empty3,
        np.float32(0.5 if extra else 1.0), *((gamma.numpy(), slope.numpy(), zeta.numpy()) if act else (empty1,) * 3),
        out,
    )  # fmt: skip
    assert torch.equal(torch.from_numpy(out), ref)
