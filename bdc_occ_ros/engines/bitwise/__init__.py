"""Bit-packed CPU inference engine (XNOR-popcount with numba) for the binarized BDC modules.

``kernels`` (numba), ``layers`` (packed units), ``convert`` (:func:`pack_model`), ``packed_file``
(packed safetensors files), ``engine`` (:class:`BitwiseEngine`, ``engine: bitwise``).
"""

from bdc_occ_ros.engines.bitwise.engine import BitwiseEngine

__all__ = ["BitwiseEngine"]
