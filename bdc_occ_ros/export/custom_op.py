"""The ONNX custom op ``bdc_occ::BinaryConv2d`` (for the TensorRT plugin) and the module that emits it.

Semantics (identical to cuda/binary_conv_common.h):
    Y = alpha[o] * conv2d(s(X), sign(W)), stride ``stride``, zero padding ``pad`` (padded taps add 0)
    s(X) = sign(X) (+1 for X >= 0, else -1) when ``binarize_input`` is 1, X itself when 0
Inputs: X (N, Cin, H, W) float/float16; W_packed (Cout, K, K, ceil(Cin/32)) int32 sign words
(:mod:`bdc_occ_ros.export.packing`); alpha (Cout,) float. Output Y (N, Cout, Ho, Wo).
The ``plugin_namespace`` attribute is how TensorRT's ONNX parser maps the node to the plugin
``bdc_occ::BinaryConv2d`` (:mod:`bdc_occ_ros.export.trt_plugin`). onnxruntime has no kernel for it, so
graphs exported with ``--binary-op custom`` are for TensorRT only.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx.defs import OpSchema
from torch import nn
from torch.nn import functional as F

from bdc_occ_ros.export.packing import pack_weights, unpack_weights
from bdc_occ_ros.model.binary import BinaryConv2d, binary_sign

DOMAIN = "bdc_occ"
OP_TYPE = "BinaryConv2d"
DOMAIN_VERSION = 1

_ATTRS: tuple[tuple[str, str], ...] = (
    ("in_channels", "Cin (the packed words round it up to a multiple of 32)"),
    ("kernel_size", "square kernel size K"),
    ("stride", "stride in both directions"),
    ("pad", "zero padding on every side"),
    ("binarize_input", "1: the op applies sign() to X (sign(0) = +1); 0: X is used as is"),
)


def binary_conv2d_schema() -> OpSchema:
    """The OpSchema that lets ``onnx.checker`` validate ``bdc_occ::BinaryConv2d`` nodes."""
    attrs = [OpSchema.Attribute(name, OpSchema.AttrType.INT, doc) for name, doc in _ATTRS]
    attrs.append(
        OpSchema.Attribute("plugin_namespace", OpSchema.AttrType.STRING, "TensorRT plugin namespace", required=False)
    )
    return OpSchema(
        OP_TYPE,
        DOMAIN,
        DOMAIN_VERSION,
        doc=__doc__ or "",
        inputs=[
            OpSchema.FormalParameter("X", "T", "input (N, Cin, H, W)"),
            OpSchema.FormalParameter("W_packed", "tensor(int32)", "sign words (Cout, K, K, ceil(Cin/32))"),
            OpSchema.FormalParameter("alpha", "tensor(float)", "per-output-channel scale (Cout,)"),
        ],
        outputs=[OpSchema.FormalParameter("Y", "T", "output (N, Cout, Ho, Wo)")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "activations")],
        attributes=attrs,
    )


def register_schema() -> None:
    """Make the schema known to onnx (idempotent; onnx keeps it for the process lifetime)."""
    if not onnx.defs.has(OP_TYPE, DOMAIN):
        onnx.defs.register_schema(binary_conv2d_schema())


class _BinaryConv2dOp(torch.autograd.Function):
    """Eager: the reference computation; ONNX (TorchScript exporter): one ``bdc_occ::BinaryConv2d`` node."""

    @staticmethod
    def forward(ctx, x, w_packed, alpha, w_sign, in_channels, kernel_size, stride, pad, binarize_input):
        del ctx, w_packed, in_channels, kernel_size  # carried for the graph; w_sign is the unpacked copy
        inp = binary_sign(x) if binarize_input else x
        return F.conv2d(inp, w_sign * alpha.view(-1, 1, 1, 1), None, stride, pad)

    @staticmethod
    def symbolic(g, x, w_packed, alpha, w_sign, in_channels, kernel_size, stride, pad, binarize_input):
        del w_sign
        out = g.op(
            f"{DOMAIN}::{OP_TYPE}",
            x,
            w_packed,
            alpha,
            in_channels_i=in_channels,
            kernel_size_i=kernel_size,
            stride_i=stride,
            pad_i=pad,
            binarize_input_i=int(binarize_input),
            plugin_namespace_s=DOMAIN,
        )
        # Declare the output type/shape so the exporter's shape inference continues past the custom node.
        sizes, cout = x.type().varyingSizes(), w_packed.type().varyingSizes()
        if sizes is not None and cout is not None and len(sizes) == 4 and None not in sizes[2:]:
            ho, wo = ((s + 2 * pad - kernel_size) // stride + 1 for s in sizes[2:])
            out.setType(x.type().with_sizes([sizes[0], cout[0], ho, wo]))
        return out


class PackedBinaryConv2d(nn.Module):
    """Stand-in for a :class:`BinaryConv2d` at export time: packed sign words + alpha, emits the custom op.

    ``binarize_input`` must say whether the layer's input is already sign-binarized (then the op may
    pack it to bits; sign() of +-1 is the identity, so both readings agree on such inputs).
    """

    def __init__(self, conv: BinaryConv2d, binarize_input: bool) -> None:
        super().__init__()
        kh, kw = conv.kernel_size
        if kh != kw or conv.stride[0] != conv.stride[1] or conv.padding[0] != conv.padding[1] or conv.groups != 1:
            raise ValueError(f"BinaryConv2d export supports square kernels/strides/pads, groups=1; got {conv}")
        if conv.dilation != (1, 1):
            raise ValueError(f"BinaryConv2d export supports dilation 1 only; got {conv.dilation}")
        sign, alpha = conv.binarized_weight()
        packed = pack_weights(sign.cpu().numpy())
        self.register_buffer("w_packed", torch.from_numpy(packed))
        self.register_buffer("alpha", alpha.float().clone())
        self.register_buffer("w_sign", torch.from_numpy(unpack_weights(packed, conv.in_channels)))
        self.in_channels, self.kernel_size = conv.in_channels, kh
        self.stride, self.pad = conv.stride[0], conv.padding[0]
        self.binarize_input = binarize_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BinaryConv2dOp.apply(x, self.w_packed, self.alpha, self.w_sign, self.in_channels, self.kernel_size,
                                     self.stride, self.pad, self.binarize_input)  # fmt: skip


def reference_binary_conv2d(
    x: np.ndarray, w_packed: np.ndarray, alpha: np.ndarray, stride: int, pad: int, binarize_input: bool
) -> np.ndarray:
    """NumPy/torch reference of the op from its packed inputs (what the plugin must reproduce)."""
    w = torch.from_numpy(unpack_weights(w_packed, x.shape[1]))
    t = torch.from_numpy(x)
    inp = binary_sign(t) if binarize_input else t
    return F.conv2d(inp, w * torch.from_numpy(alpha).view(-1, 1, 1, 1), None, stride, pad).numpy()
