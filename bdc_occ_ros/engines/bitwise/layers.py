"""Packed counterparts of the binarized units: same math as ``bdc_occ_ros.model.units``, run with bit kernels.

A :class:`PackedUnit` replaces one BiSR-Conv / BDC-V1/V2/V3 unit. Its only sign-binarized activation (the
unit input after the ReDistribution affine) is packed once into uint32/uint64 words and consumed packed by the
XNOR-popcount 3x3 conv, whose epilogue applies alpha, the folded BatchNorm, RPReLU and (BiSR) the residual.
The binary-weight 1x1 convs see real-valued inputs (W1A32); each runs as one numba pass that adds tabulated
signed sums of 4 input channels (one multiply-add per 4 channels instead of 4), with the affine + RPReLU and the
channel sums fused in (:func:`kernels.binary_pointwise`), then the weight branch on the channel means
(:class:`ChannelGate`), then one pass ``main * gate + shortcut`` into which the block around the unit fuses
its own next step (:class:`BlockOps`, used by ``blocks.py``).

Binarized weights are stored only as bits (int32/int64 buffers holding uint32/uint64 words, 32-bit words
for up to 32 channels; safetensors and ``state_dict`` carry them as they are) plus the per-output-channel
alpha; the float latent weights are gone.
The stride-2 shortcut's 2x2 pooling is a numba kernel too; the shortcut's BN stays torch.

Maps between units are contiguous NCHW torch tensors sharing memory with the kernels' numpy arrays, so no
transposes are needed from one unit to the next (channels_last inputs from torch layers are packed as they are).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from bdc_occ_ros.engines.bitwise import kernels
from bdc_occ_ros.model.binary import BinaryConv2d, RPReLU
from bdc_occ_ros.model.units import BDCUnitV1, BiSRConv, ChannelReweight

_MASKS = {dtype: kernels.bit_masks(dtype) for dtype in (np.uint32, np.uint64)}
_EMPTY1 = np.empty(0, np.float32)
_EMPTY3 = np.empty((0, 0, 0), np.float32)
_EMPTY4 = np.empty((0, 0, 0, 0), np.float32)

#: Smallest map (pixels) on which a unit runs its 3x3 and first 1x1 conv as one kernel: a task per
#: kernels.FUSED_SPAN_PIXELS, so a 100x100 map gets ten to share out between the threads.
FUSED_MIN_PIXELS = 10_000


def _as_words(t: torch.Tensor) -> np.ndarray:
    """int32/int64 buffer -> the same bits as uint32/uint64 words (no copy)."""
    return t.numpy().view(f"u{t.element_size()}")


def _word_buffer(shape: tuple[int, ...], channels: int) -> torch.Tensor:
    """Zeroed signed-int buffer of the packing word's width (torch and safetensors store signed ints)."""
    dtype = torch.int32 if kernels.word_dtype(channels) is np.uint32 else torch.int64
    return torch.zeros(shape, dtype=dtype)


def signed_words(words: np.ndarray) -> torch.Tensor:
    """uint32/uint64 words -> int32/int64 tensor with the same bits (how buffers and files store them)."""
    return torch.from_numpy(words.view(f"i{words.itemsize}"))


def empty32(*shape: int) -> np.ndarray:
    """Uninitialised float32 array in torch's 64-byte aligned memory: numpy's 16-byte aligned buffers made the
    torch GEMMs that read the maps downstream up to 20 % slower (measured)."""
    return torch.empty(shape).numpy()


def _np32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().reshape(-1).to(torch.float32).numpy())


def pool2x2(x: torch.Tensor) -> torch.Tensor:
    """AvgPool2d(2, 2) by the numba kernel (same values as torch's avg_pool2d, 18x faster here, measured):
    (B, C, H, W) -> (B, C, H/2, W/2)."""
    b, c, h, w = x.shape
    pooled = empty32(b, c, h // 2, w // 2)
    kernels.avg_pool2x2(nchw(x), pooled)
    return torch.from_numpy(pooled)


class AvgPool2x2(nn.Module):
    """``nn.AvgPool2d(2)`` between packed layers (the detection head's input pooling) on :func:`pool2x2`: the same
    values; 0.13 against 1.10 ms for torch's NCHW kernel on the 32x200x200 BEV map, 2 threads (Intel Xeon,
    2026-12-07)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool2x2(x)


def _flat(x: np.ndarray) -> np.ndarray:
    """(B, C, ...) -> (B, C, P) view (an empty map stays empty)."""
    return x.reshape(x.shape[0], x.shape[1], -1) if x.size else _EMPTY3


def nchw(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) tensor -> C-contiguous float32 array (no copy when it already is one)."""
    if x.dtype == torch.float32 and not x.requires_grad and x.is_contiguous():
        return x.numpy()  # the maps between units: 0.9 instead of 1.9 us per call
    return np.ascontiguousarray(x.detach().to(torch.float32).numpy())


def pack_activation(x: torch.Tensor, scale: np.ndarray, shift: np.ndarray, phased: bool = False) -> np.ndarray:
    """Bits of sign(scale*x + shift) for x (B, C, H, W) in any memory format -> (B, K, ``kernels.plane_words(H, W)``)
    words: flat planes with a zero border (the conv's padding), the layout of :mod:`.kernels`; ``phased``: phase
    planes (``kernels.phase_plane_words(H, W)`` words), the input a stride-2 conv reads."""
    b, c, h, w = x.shape
    dtype, shape, chunks = _pack_layout(b, c, h, w, phased, kernels.calling_thread_kernel_threads())
    out = np.empty(shape, dtype)
    if x.requires_grad:
        x = x.detach()
    if x.dtype != torch.float32:
        x = x.to(torch.float32)
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        kernels.pack_signs_nhwc(x.permute(0, 2, 3, 1).numpy(), scale, shift, _MASKS[dtype], phased, out)
        return out
    kernels.pack_signs_nchw(nchw(x), scale, shift, _MASKS[np.uint32], phased, chunks, out)
    return out


@lru_cache(maxsize=64)
def _pack_layout(
    b: int, c: int, h: int, w: int, phased: bool, threads: int
) -> tuple[type[np.unsignedinteger], tuple[int, ...], int]:
    """(word type, packed shape, :func:`kernels.pack_chunks`) of a (B, C, H, W) map packed (``phased`` or not) on
    ``threads`` threads: derived once per shape (0.65 us less per call, measured)."""
    words = kernels.num_words(c)
    plane = kernels.phase_plane_words(h, w) if phased else kernels.plane_words(h, w)
    return kernels.word_dtype(c), (b, words, plane), kernels.pack_chunks(b, words, h, w, threads)


@dataclass
class Epilogue:
    """Per-channel ``rprelu(mul * s + add)`` (alpha and an eval-mode BatchNorm folded into mul/add).

    rp_gamma/rp_slope/rp_zeta are empty when there is no RPReLU.
    """

    mul: np.ndarray
    add: np.ndarray
    rp_gamma: np.ndarray
    rp_slope: np.ndarray
    rp_zeta: np.ndarray

    @classmethod
    def fold(cls, alpha: torch.Tensor, norm: nn.Module, act: RPReLU | None) -> Epilogue:
        """alpha (C,), norm a BatchNorm2d (eval statistics) or Identity, act an RPReLU or None."""
        alpha = alpha.detach().to(torch.float32)
        if isinstance(norm, nn.BatchNorm2d):
            scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
            mul, add = alpha * scale, norm.bias.detach() - norm.running_mean * scale
        elif isinstance(norm, nn.Identity):
            mul, add = alpha, torch.zeros_like(alpha)
        else:
            raise TypeError(f"unsupported norm in a binarized unit: {type(norm).__name__}")
        if act is None:
            return cls(_np32(mul), _np32(add), _EMPTY1, _EMPTY1, _EMPTY1)
        return cls(_np32(mul), _np32(add), *rprelu_vectors(act))


def rprelu_vectors(act: RPReLU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gamma, slope, zeta) of ``prelu(x + gamma, slope) + zeta``, each (C,) float32."""
    return _np32(act.pr_bias0.bias), _np32(act.pr_prelu.weight), _np32(act.pr_bias1.bias)


@dataclass(frozen=True, eq=False)
class BlockOps:
    """What the block around a unit does to the unit's output, fused into its last pass:
    ``act((unit + extra) * scale)``. extra: (B, Cout, Ho, Wo) or empty; act: :func:`rprelu_vectors` or empties."""

    extra: np.ndarray = field(default_factory=lambda: _EMPTY4)
    scale: float = 1.0
    act: tuple[np.ndarray, np.ndarray, np.ndarray] = (_EMPTY1, _EMPTY1, _EMPTY1)


NO_OPS = BlockOps()


class PackedConv3x3(nn.Module):
    """Binary 3x3 conv (padding 1) on packed activations: buffers ``bits`` (9, K, Cout) and ``alpha`` (Cout,).

    The kernel's layout of the bits (``wq``, ``pad_share``) is derived by :meth:`prepare`.
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride
        self.register_buffer("bits", _word_buffer((9, kernels.num_words(cin), cout), cin))
        self.register_buffer("alpha", torch.zeros(cout))
        self.prepare()

    @classmethod
    def from_conv(cls, conv: BinaryConv2d) -> PackedConv3x3:
        sign, alpha = conv.binarized_weight()
        packed = cls(conv.in_channels, conv.out_channels, conv.stride[0])
        packed.bits.copy_(signed_words(kernels.pack_weights3x3((sign > 0).numpy())))
        packed.alpha.copy_(alpha)
        packed.prepare()
        return packed

    def prepare(self) -> None:
        """Derive the kernel's weight layout from ``bits`` (after construction or load_state_dict)."""
        self.wq, self.pad_share = kernels.conv_weights(_as_words(self.bits), self.cin)

    def run(
        self,
        xp: np.ndarray,
        size: tuple[int, int],
        epi: Epilogue,
        residual: np.ndarray = _EMPTY4,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """xp (B, K, plane words) packed input of an image of ``size`` (H, W) (:func:`pack_activation`, phased for
        stride 2) -> (B, Cout, Ho, Wo) float32 after the epilogue (+ residual), into ``out`` when given
        (C-contiguous), else into a new numpy array (not :func:`empty32`: the units' kernels read it, not torch, and
        numpy allocates in 0.7 us instead of 2-3)."""
        h, w = size
        ho, wo = kernels.conv_out_size(h, self.stride), kernels.conv_out_size(w, self.stride)
        if out is None:
            out = np.empty((xp.shape[0], self.cout, ho, wo), np.float32)
        kernels.binary_conv3x3(
            xp, h, w, self.wq, self.pad_share, self.cin, self.stride, epi.mul, epi.add,
            epi.rp_gamma, epi.rp_slope, epi.rp_zeta, epi.rp_gamma.size > 0, residual, out,
        )  # fmt: skip
        return out


class PackedPointwise(nn.Module):
    """Binary-weight 1x1 conv on real inputs: buffers ``bits`` (Cout, K) and ``alpha`` (Cout,).

    :meth:`prepare` rebuilds from the bits the kernel's tables (``entry``, ``table_sign``) and ``sign``, the
    (Cout, Cin) float32 +-1 matrix (for the weight branch's products on channel means).
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.cin, self.cout = cin, cout
        self.register_buffer("bits", _word_buffer((cout, kernels.num_words(cin)), cin))
        self.register_buffer("alpha", torch.zeros(cout))
        self.register_buffer("sign", torch.zeros(cout, cin), persistent=False)

    @classmethod
    def from_conv(cls, conv: BinaryConv2d) -> PackedPointwise:
        if conv.kernel_size != (1, 1):
            raise ValueError(f"PackedPointwise: expected a 1x1 conv, got {conv.kernel_size}")
        sign, alpha = conv.binarized_weight()
        packed = cls(conv.in_channels, conv.out_channels)
        bits = kernels.pack_bits_axis1((sign[:, :, 0, 0] > 0).numpy()[None, :, :].transpose(0, 2, 1))[0]
        packed.bits.copy_(signed_words(bits))
        packed.alpha.copy_(alpha)
        packed.prepare()
        return packed

    def prepare(self) -> None:
        """Unpack the bits into the kernel's tables and the +-1 matrix (after construction or load_state_dict)."""
        pos = kernels.unpack_bits(_as_words(self.bits), self.cin)  # (Cout, Cin) bool
        self.sign = torch.from_numpy(np.where(pos, np.float32(1.0), np.float32(-1.0)))
        self.entry, self.table_sign = kernels.signed_sum_tables(pos)

    def run(self, x: np.ndarray, epi: Epilogue) -> tuple[np.ndarray, np.ndarray]:
        """x (B, Cin, P) float32 -> (``epi`` applied to the conv: (B, Cout, P) float32, its channel sums over T pixel
        ranges (B, T, Cout)).

        The epilogue must have an RPReLU (every 1x1 conv of the BDC units has one)."""
        if epi.rp_gamma.size != self.cout:  # the kernel reads one RPReLU per output channel, unchecked
            raise ValueError(f"PackedPointwise.run: the epilogue needs an RPReLU of {self.cout} channels")
        b, _, npix = x.shape
        out = empty32(b, self.cout, npix)
        slabs = kernels.pointwise_slabs(npix, kernels.calling_thread_kernel_threads())
        sums = np.empty((b, slabs, self.cout), np.float32)
        kernels.binary_pointwise(x, self.entry, self.table_sign, epi.mul, epi.add, epi.rp_gamma, epi.rp_slope,
                                 epi.rp_zeta, out, sums)  # fmt: skip
        return out, sums

    def run_after(
        self, conv: PackedConv3x3, xp: np.ndarray, size: tuple[int, int], conv_epi: Epilogue, epi: Epilogue
    ) -> tuple[np.ndarray, np.ndarray]:
        """``run(conv.run(xp, size, conv_epi))`` for a stride-1 ``conv`` with an RPReLU, in one kernel that keeps
        the conv's output in cache (:func:`kernels.binary_conv3x3_pointwise`): the same map bit for bit; the channel
        sums over other pixel ranges, whose totals equal up to float rounding."""
        if conv.stride != 1 or conv.cout != self.cin or conv_epi.rp_gamma.size != conv.cout:
            raise ValueError("PackedPointwise.run_after: needs a stride-1 conv into this layer, with an RPReLU")
        if epi.rp_gamma.size != self.cout:
            raise ValueError(f"PackedPointwise.run_after: the epilogue needs an RPReLU of {self.cout} channels")
        (h, w), b = size, xp.shape[0]
        out = empty32(b, self.cout, h * w)
        sums = np.empty((b, kernels.fused_spans(h, w), self.cout), np.float32)
        kernels.binary_conv3x3_pointwise(
            xp, h, w, conv.wq, conv.pad_share, conv.cin, conv_epi.mul, conv_epi.add, conv_epi.rp_gamma,
            conv_epi.rp_slope, conv_epi.rp_zeta, self.entry, self.table_sign, epi.mul, epi.add, epi.rp_gamma,
            epi.rp_slope, epi.rp_zeta, out, sums,
        )  # fmt: skip
        return out, sums


def _pack_reweight(branch: ChannelReweight) -> ChannelReweight:
    # Same module tree (state dict keys), its two 1x1 convs stored as bits; run by ChannelGate.
    fc = branch.fc
    for i, layer in enumerate(fc):
        if isinstance(layer, BinaryConv2d):
            fc[i] = PackedPointwise.from_conv(layer)
    return branch


@dataclass
class ChannelGate:
    """The BDC-V3 weight branch on the channel means, ``sigmoid(a2 * (S2 @ rprelu(a1 * (S1 @ gap))))`` (S: +-1
    matrices, a: alphas), by :func:`kernels.channel_gate`: one kernel call instead of a dozen torch module calls,
    whose Python overhead was most of a small unit's time (measured 80 of 165 us)."""

    sign1: np.ndarray
    alpha1: np.ndarray
    act: tuple[np.ndarray, np.ndarray, np.ndarray]
    sign2: np.ndarray
    alpha2: np.ndarray

    @classmethod
    def from_branch(cls, branch: ChannelReweight) -> ChannelGate:
        first, act, second, _ = branch.fc  # PackedPointwise, RPReLU, PackedPointwise, Sigmoid
        alphas = _np32(first.alpha), _np32(second.alpha)
        return cls(first.sign.numpy(), alphas[0], rprelu_vectors(act), second.sign.numpy(), alphas[1])

    def __call__(self, partial_sums: np.ndarray, pixels: int) -> np.ndarray:
        """partial_sums (B, T, C) float32, channel sums of the main path over T pixel ranges of a map of ``pixels``
        pixels -> gate (B, C) float32."""
        gate = np.empty((partial_sums.shape[0], partial_sums.shape[2]), np.float32)
        kernels.channel_gate(partial_sums, pixels, self.sign1, self.alpha1, *self.act, self.sign2, self.alpha2, gate)
        return gate


class PackedUnit(nn.Module):
    """Drop-in for a BiSRConv / BDCUnitV1/V2/V3: (B, Cin, H, W) -> (B, Cout, H/s, W/s) contiguous tensor.

    Built from a float unit (:meth:`from_unit`); reuses its torch shortcut (pool, concat, ``bn_fp``),
    its ReDistribution (``move0``), norms and RPReLUs as parameters of the epilogues.
    """

    def __init__(self, unit: BiSRConv | BDCUnitV1) -> None:
        super().__init__()
        self.bisr = isinstance(unit, BiSRConv)
        self.in_channels, self.out_channels, self.stride = unit.in_channels, unit.out_channels, unit.stride
        self.bn_fp, self.move0 = unit.bn_fp, unit.move0
        seq = list(unit.binary_conv_relu)
        if len(seq) % 3:
            raise ValueError(f"unexpected binary_conv_relu layout of {type(unit).__name__}: {len(seq)} layers")
        # Triples (conv, norm, RPReLU): the first is the 3x3, the rest 1x1 on real-valued maps.
        self.conv3 = PackedConv3x3.from_conv(seq[0])
        self.norms = nn.ModuleList(seq[1::3])
        self.acts = nn.ModuleList(seq[2::3])
        self.pointwise = nn.ModuleList(PackedPointwise.from_conv(conv) for conv in seq[3::3])
        self.se_block = _pack_reweight(unit.se_block) if getattr(unit, "reweight", False) else None
        self.prepare()

    @classmethod
    def from_unit(cls, unit: nn.Module) -> PackedUnit:
        if not isinstance(unit, BiSRConv | BDCUnitV1):
            raise TypeError(f"not a binarized unit: {type(unit).__name__}")
        return cls(unit)

    def prepare(self) -> None:
        """Fold alpha/BN/RPReLU into epilogue vectors and the redistribution into pack vectors (call after
        changing parameters, e.g. load_state_dict)."""
        self.pack_scale, self.pack_shift = _np32(self.move0.k), _np32(self.move0.b)
        alphas = [self.conv3.alpha] + [pw.alpha for pw in self.pointwise]
        self.epilogues = [Epilogue.fold(a, n, act) for a, n, act in zip(alphas, self.norms, self.acts, strict=True)]
        # Derived once, not on every call (the list and the Identity module's call took 2.6 us per unit, measured):
        self.pointwise_stages = list(zip(self.pointwise, self.epilogues[1:], strict=True))
        self.bn_fp_is_identity = isinstance(self.bn_fp, nn.Identity)
        self.conv3.prepare()
        for pw in self.pointwise:
            pw.prepare()
        self.channel_gate = None
        if self.se_block is not None:
            for layer in self.se_block.fc:
                if isinstance(layer, PackedPointwise):
                    layer.prepare()
            self.channel_gate = ChannelGate.from_branch(self.se_block)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Same as the float unit's shortcut: avgpool2 (stride 2), channel duplication, ``bn_fp``."""
        if self.stride == 2:
            x = pool2x2(x)
        if self.out_channels == 2 * self.in_channels:
            x = torch.cat([x, x], dim=1)
        return x if self.bn_fp_is_identity else self.bn_fp(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(x))

    def run(self, x: torch.Tensor, out: np.ndarray | None = None, post: BlockOps = NO_OPS) -> np.ndarray:
        """x (B, Cin, H, W) -> (B, Cout, Ho, Wo) float32 array, written into ``out`` when given (C-contiguous,
        e.g. a channel slice of the block's output when B = 1), with the block's ``post`` ops fused in."""
        identity = nchw(self.shortcut(x))  # (B, Cout, Ho, Wo)
        if out is None:
            out = empty32(*identity.shape)
        elif not out.flags.c_contiguous:
            raise ValueError("PackedUnit.run: out must be C-contiguous (a channel slice is only for B = 1)")
        xp = pack_activation(x, self.pack_scale, self.pack_shift, phased=self.stride == 2)
        if self.bisr:  # RPReLU(conv3x3) + shortcut, all in the conv epilogue
            if post is NO_OPS:
                return self.conv3.run(xp, x.shape[2:], self.epilogues[0], identity, out)
            y = self.conv3.run(xp, x.shape[2:], self.epilogues[0], identity)
            gate, identity = np.ones(y.shape[:2], np.float32), _EMPTY4  # the residual is in y already
        else:
            b, _, h, w = x.shape
            ho, wo = kernels.conv_out_size(h, self.stride), kernels.conv_out_size(w, self.stride)
            rest = self.pointwise_stages
            if self.fuse_first_pointwise(ho * wo):
                y, sums = rest[0][0].run_after(self.conv3, xp, (ho, wo), self.epilogues[0], rest[0][1])
                rest = rest[1:]
            else:
                y = self.conv3.run(xp, x.shape[2:], self.epilogues[0]).reshape(b, -1, ho * wo)  # (B, Cin, Ho*Wo)
            for pw, epi in rest:
                y, sums = pw.run(y, epi)
            gate = self.gate(sums, ho * wo)
        kernels.unit_output(
            _flat(y), gate, _flat(identity), _flat(post.extra), np.float32(post.scale), *post.act, _flat(out)
        )
        return out

    def fuse_first_pointwise(self, pixels: int) -> bool:
        """Whether the 3x3 conv and the first 1x1 conv run as one kernel (:meth:`PackedPointwise.run_after`): at
        stride 1, on maps of at least :data:`FUSED_MIN_PIXELS` (smaller ones have too few spans to share out)."""
        return self.stride == 1 and len(self.pointwise) > 0 and pixels >= FUSED_MIN_PIXELS

    def gate(self, partial_sums: np.ndarray, pixels: int) -> np.ndarray:
        """The weight branch on the main path's channel sums over T pixel ranges (B, T, C) of a map of ``pixels``
        pixels -> (B, C) per-channel gate (ones without a branch): the branch's global average pool is their
        means, then its two 1x1 convs."""
        if self.channel_gate is None:
            return np.ones((partial_sums.shape[0], partial_sums.shape[2]), np.float32)
        return self.channel_gate(partial_sums, pixels)


def warm_up() -> None:
    """Compile (first run: about 10 s per build on 2 cores) or load from numba's on-disk cache (under a second)
    every kernel signature the packed units and blocks use, so the first real frame is not delayed: the serial
    builds, and with more than one numba thread the parallel builds too. Safe to call repeatedly."""
    import numba

    from bdc_occ_ros.config import UnitVariant
    from bdc_occ_ros.model.units import make_unit

    for channels in (2, 40):  # uint32 and uint64 words
        # 256x256 maps take the parallel builds: every kernel's first argument, the packed words of one plane
        # (258 * 258) included, reaches kernels.PARALLEL_MIN_ELEMENTS. 100x100 maps take the fused 3x3 + 1x1 kernel
        # (FUSED_MIN_PIXELS), whose output has too few elements at 2 channels for the parallel build.
        for size in (4, 100, 256) if numba.get_num_threads() > 1 else (4, 100):
            x = torch.zeros(1, channels, size, size)
            kernels.upsample2x_bilinear(x.numpy(), empty32(1, channels, 2 * size, 2 * size))
            for variant in (UnitVariant.BISR, UnitVariant.BDC_V3):
                for stride in (1, 2):  # stride 2 adds the shortcut's pooling kernel
                    unit = PackedUnit.from_unit(make_unit(variant, channels, channels, stride, with_bn=False).eval())
                    unit(x)
                    unit(x.contiguous(memory_format=torch.channels_last))
