"""``qriff export``: a training checkpoint to one self-contained ONNX model, with the parity check."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.base.errors import EngineError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export a training checkpoint to ONNX (the runtime model)",
        description="Export the online Q-network of a 'qriff train' checkpoint to one ONNX file (input obs "
                    "float32 [batch, D], output q_values float32 [batch, 38], dynamic batch) with the "
                    "training config and metrics in its metadata. Checks torch against onnxruntime first "
                    "(max |dQ| and identical greedy melodies) and refuses to write a model that differs.",
        epilog="Example: qriff export runs/default/checkpoint.pt --out engine/models/default.onnx")
    p.add_argument("checkpoint", help="checkpoint.pt written by qriff train")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="where to write the .onnx (default: model.onnx beside the checkpoint)")
    p.add_argument("--model-id", default=None, help="model id recorded in the file and in every clip")
    p.add_argument("--no-check", action="store_true", help="skip the torch/onnxruntime parity check")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import torch

        from engine.learn.export import export_model, load_checkpoint_network
    except ImportError as exc:
        raise EngineError(f"export needs torch and onnx (pip install 'qriff[train]'): {exc}") from None
    torch.set_num_threads(1)
    ckpt_path = Path(args.checkpoint)
    net, ckpt = load_checkpoint_network(ckpt_path)
    out = Path(args.out) if args.out else ckpt_path.with_name("model.onnx")
    if out.suffix.lower() != ".onnx":
        raise EngineError(f"--out {str(out)!r} must end in .onnx")
    config = ckpt.get("config", {})
    metrics_file = ckpt_path.with_name("metrics.json")
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    style_terms = ckpt.get("style_terms")
    if not style_terms:
        raise EngineError(f"checkpoint {str(ckpt_path)!r} does not record its style terms: re-train with this qriff")
    model_id = args.model_id or f"qriff-{Path(config.get('out_dir', ckpt_path.parent.name)).name}-s{config.get('seed', 0)}"
    report = export_model(net, out, style_terms, train_config=config, train_metrics=metrics, model_id=model_id,
                          train_command=config.get("command", ""), check=not args.no_check)
    if not args.quiet:
        size = out.stat().st_size
        parity = (f"; parity: max |dQ| {report.max_abs_diff:.1e}, greedy melodies identical "
                  f"({report.n_sequences} checked)" if report else "")
        print(f"wrote {out} ({size / 1e6:.2f} MB, model id {model_id}){parity}")
    return 0
