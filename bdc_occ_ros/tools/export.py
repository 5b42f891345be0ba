"""``bdc-occ export onnx|tensorrt``: deployment artefacts.

  bdc-occ export onnx --config FILE --checkpoint FILE --out model.onnx [--binary-op plain|custom]
                      [--calibration calib.yaml]
  bdc-occ export tensorrt --onnx model.onnx --precision fp16|int8 [--out FILE] [--plugin-lib .so]

``--calibration`` also writes ``<out>.ranks.npz`` (ranks_bev/ranks_depth/ranks_feat int32) for runtimes
that feed the graph without Python (trtexec --loadInputs, a C++ node). Without ``--out`` the TensorRT
engine goes beside the ONNX file with the cache name (precision, GPU, TensorRT version) the engine uses.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export the network to ONNX or build a TensorRT engine")
    verbs = parser.add_subparsers(dest="export_verb", required=True, metavar="<onnx|tensorrt>")

    p = verbs.add_parser("onnx", help="config + checkpoint -> ONNX (opset 17)")
    p.add_argument("--config", type=Path, default=None, help="model YAML (default: the checkpoint's embedded config)")
    p.add_argument("--checkpoint", type=Path, default=None, help="safetensors checkpoint (omit: random weights)")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--binary-op", choices=("plain", "custom"), default="plain",
                   help="plain: +-alpha Conv (runs anywhere); custom: TensorRT plugin op")  # fmt: skip
    p.add_argument("--calibration", type=Path, default=None,
                   help="calibration YAML: trace with its ranks and write <out>.ranks.npz")  # fmt: skip
    p.set_defaults(func=run_onnx)

    t = verbs.add_parser("tensorrt", help="ONNX -> TensorRT engine (needs TensorRT and a GPU)")
    t.add_argument("--onnx", type=Path, required=True, help="graph from `bdc-occ export onnx`")
    t.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    t.add_argument("--out", type=Path, default=None, help="engine file (default: cache name beside the ONNX)")
    t.add_argument("--plugin-lib", type=Path, default=None,
                   help="compiled cuda/binary_conv.cu, for graphs exported with --binary-op custom")  # fmt: skip
    t.add_argument("--calibration-npz", type=Path, default=None,
                   help="int8: npz with img (K, N, 3, H, W) and ranks_bev/ranks_depth/ranks_feat")  # fmt: skip
    t.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace limit (MiB)")
    t.add_argument("--verbose", action="store_true", help="TensorRT verbose log")
    t.set_defaults(func=run_tensorrt)


def run_onnx(args: argparse.Namespace) -> int:
    import numpy as np

    from bdc_occ_ros.config import load_model_config
    from bdc_occ_ros.engines.torch_engine import load_weights
    from bdc_occ_ros.export.onnx_export import export_onnx, rank_inputs
    from bdc_occ_ros.geometry import RigCalibration
    from bdc_occ_ros.model.checkpoint import load_checkpoint
    from bdc_occ_ros.model.inputs import geometry_from_calibration
    from bdc_occ_ros.preprocess import test_time_aug

    if args.config is None and args.checkpoint is None:
        raise ValueError("--config or --checkpoint is required (the checkpoint embeds its config)")
    cfg = load_model_config(args.config) if args.config else load_checkpoint(args.checkpoint)[0]
    if args.checkpoint is None:
        print("warning: no --checkpoint: exporting random weights")
    net = load_weights(cfg, args.checkpoint)
    geometry = None
    if args.calibration is not None:
        cams = RigCalibration.load(args.calibration).ordered(list(cfg.cameras))
        in_h, in_w = cfg.input_size
        augs = [test_time_aug(c.width, c.height, in_w, in_h) for c in cams]
        geometry = geometry_from_calibration(cams, augs, in_w, in_h)
    print(f"exporting {cfg.name} ({args.binary_op} binary ops) to {args.out} ...")
    out = export_onnx(net, args.out, args.binary_op, geometry)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    if geometry is not None:
        ranks_path = out.with_suffix(".ranks.npz")
        ranks = rank_inputs(net, geometry)
        np.savez(ranks_path, **ranks)
        print(f"wrote {ranks_path} ({len(ranks['ranks_bev'])} frustum points in the grid)")
    if args.binary_op == "custom":
        print("note: bdc_occ::BinaryConv2d graphs run only in TensorRT with the plugin, not in onnxruntime")
    return 0


def run_tensorrt(args: argparse.Namespace) -> int:
    import numpy as np

    from bdc_occ_ros.engines.errors import EngineUnavailable
    from bdc_occ_ros.export.tensorrt_build import build_engine, current_gpu, engine_cache_path, import_tensorrt

    if not args.onnx.is_file():
        raise FileNotFoundError(f"--onnx {args.onnx} does not exist")
    try:
        trt = import_tensorrt()
        gpu = current_gpu()
        if args.plugin_lib is not None:
            from bdc_occ_ros.export.trt_plugin import register_plugin

            register_plugin(args.plugin_lib)
    except EngineUnavailable as exc:
        print(f"bdc-occ export tensorrt: {exc}")
        return 3
    calibration = None
    if args.calibration_npz is not None:
        data = np.load(args.calibration_npz)
        ranks = {k: data[k] for k in ("ranks_bev", "ranks_depth", "ranks_feat")}
        calibration = [{"img": img, **ranks} for img in data["img"]]
    out = args.out or engine_cache_path(args.onnx, args.precision, gpu, trt.__version__)
    print(f"building {args.precision} engine for {gpu.name} ({gpu.tag}), TensorRT {trt.__version__} ...")
    build_engine(args.onnx, out, args.precision, workspace_bytes=args.workspace_mb << 20,
                 calibration=calibration, verbose=args.verbose)  # fmt: skip
    print(f"wrote {out}")
    return 0
