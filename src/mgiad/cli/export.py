"""``mgiad export``: a trained model to ONNX, TorchScript or torch.export, BatchNorm folded.

``--checkpoint``: a run directory, best.pt / last.pt of ``mgiad train``, or a ``save_pretrained``
directory. Heavy imports happen inside the command (``mgiad --help`` stays fast).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

_SUFFIX_FORMATS = {".onnx": "onnx", ".pt2": "pt2", ".ts": "torchscript", ".torchscript": "torchscript",
                   ".pt": "torchscript", ".pth": "torchscript"}


_CHECK_NAMES = {"onnx": "onnxruntime", "torchscript": "torch.jit.load", "pt2": "torch.export.load"}


HELP = "export a trained model to ONNX, TorchScript or torch.export (pt2)"
DESCRIPTION = """\
Fold BatchNorm into the convolutions, export the model with a dynamic batch dimension, load the
file back (ONNX: with onnxruntime), run it and the PyTorch model on the same random inputs and
print the max abs difference. The file is written only if it is within --atol."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="run directory (its best.pt, else last.pt), best.pt / last.pt, or a "
                   "save_pretrained directory")
    p.add_argument("--format", default=None, choices=["onnx", "torchscript", "pt2"],
                   help="onnx (torch.onnx, needs onnx + onnxscript; checked with onnxruntime), "
                   "torchscript (torch.jit.trace) or pt2 (torch.export); default: from --out's "
                   "suffix (.onnx, .pt2, .ts/.pt)")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--input-size", type=int, default=None,
                   help="image side of the example input (default: the checkpoint's training size)")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="largest accepted abs difference to PyTorch (default: %(default)g)")
    p.add_argument("--no-check", action="store_true", help="do not load the file back and compare")
    p.add_argument("--no-fuse", action="store_true", help="keep BatchNorm layers as they are")
    p.add_argument("--keep-shared", action="store_true",
                   help="do not copy a smoother B shared by several smoothing steps to fold each "
                   "step's BatchNorm into it (fewer stored weights, more operations)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    fmt = args.format or _SUFFIX_FORMATS.get(Path(args.out).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the format from --out {args.out}; pass --format "
                         "onnx, torchscript or pt2")
    if not args.atol > 0:
        raise ValueError(f"--atol must be positive, got {args.atol}")
    _refuse_overwriting_the_source(Path(args.checkpoint), Path(args.out))
    from ..deploy.export import export_model
    model = load(args.checkpoint)
    recorded = getattr(model, "preprocessing", {}) or {}
    size = input_size(model, recorded, args.input_size)
    result = export_model(model, args.out, fmt, input_size=size, fuse=not args.no_fuse,
                          fold_shared=not args.keep_shared, check=not args.no_check, atol=args.atol)
    info = result.as_dict()
    info.update(checkpoint=str(args.checkpoint), model=model.config.get("model"),
                dataset=recorded.get("dataset"))
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    shape = "x".join(map(str, result.input_shape[1:]))
    print(f"model     {info['model']} from {args.checkpoint}"
          + (f" (trained on {info['dataset']})" if info["dataset"] else "")
          + f", input N x {shape}")
    if args.no_fuse:
        print("BatchNorm not folded (--no-fuse)")
    else:
        left = result.batchnorms - result.batchnorms_folded
        print(f"BatchNorm folded {result.batchnorms_folded} of {result.batchnorms} into convolutions"
              + (f" ({left} left: those acting on f - A(u)"
                 + (", or after a shared smoother B" if args.keep_shared else "") + ")" if left else "")
              + f"; weights {result.weights:,} -> {result.exported_weights:,}; "
              f"max abs difference of the folded model {result.fuse_max_abs_diff:.3g}")
    print(f"wrote     {result.path} ({fmt}, {result.bytes / 1e3:,.1f} kB, dynamic batch size)")
    if result.checked:
        sizes = " and ".join(map(str, result.check_batch_sizes))
        print(f"checked   {_CHECK_NAMES[fmt]} vs PyTorch on random batches of {sizes} images: "
              f"max abs difference {result.max_abs_diff:.3g} (tolerance {result.atol:.1e})")
    else:
        print("not checked (--no-check)")
    return 0


def load(checkpoint: str, device: str = "cpu"):
    from ..models import load_model
    return load_model(checkpoint, map_location=device)


def input_size(model, recorded: dict, given: int | None) -> int:
    from ..utils.limits import MAX_IMAGE_SIZE, check_size
    if given is not None:
        return check_size("--input-size", given, MAX_IMAGE_SIZE)
    if recorded.get("image_size"):
        return check_size("the recorded image_size", recorded["image_size"], MAX_IMAGE_SIZE)
    return 224 if (getattr(model, "config", None) or {}).get("stem") == "imagenet" else 32


def _refuse_overwriting_the_source(source: "Path", out: "Path") -> None:
    """``--out`` must not be the checkpoint (or a file of the run directory) being exported."""
    protected = {source.resolve()}
    if source.is_dir():
        protected |= {p.resolve() for p in source.iterdir()}
    if out.resolve() in protected or out.resolve() == source.resolve():
        raise ValueError(f"--out {out} would overwrite the model being exported ({source}); "
                         "choose another file")
