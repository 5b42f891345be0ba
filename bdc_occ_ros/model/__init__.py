"""The BDC-Occ / FlashOcc network in plain PyTorch.

binary (sign, binarized conv, RPReLU), units (BiSR-Conv, BDC V1-V3, FP unit, wrappers), resnet, neck,
view_transformer (LSS lift-splat from cached ranks), bev_encoder, heads, network (``build_model``),
checkpoint (safetensors), official (mmdet3d checkpoint import), inputs (camera geometry).
"""
