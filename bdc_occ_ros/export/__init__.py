"""Deployment exports: the network as ONNX (plain ops or the ``bdc_occ::BinaryConv2d`` custom op), TensorRT
engines and their cache, and the packing layout shared with the CUDA plugin (``cuda/``).

Nothing here imports TensorRT at module level; see :mod:`bdc_occ_ros.export.tensorrt_build`.
"""
