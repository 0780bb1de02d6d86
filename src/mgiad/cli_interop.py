"""``mgiad export`` and ``mgiad predict``: deploy and use a trained model from the shell.

Both take ``--checkpoint``: a run directory or best.pt / last.pt of ``mgiad train``, or a
``save_pretrained`` directory; ``predict`` also takes ``--model NAME``, a pretrained model shipped
with mgiad (``mgiad.list_pretrained()``). Heavy imports happen inside the commands (``mgiad --help``
stays fast).
"""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_export", "add_predict", "cmd_export", "cmd_predict"]

_SUFFIX_FORMATS = {".onnx": "onnx", ".pt2": "pt2", ".ts": "torchscript", ".torchscript": "torchscript",
                   ".pt": "torchscript", ".pth": "torchscript"}
_CHECK_NAMES = {"onnx": "onnxruntime", "torchscript": "torch.jit.load", "pt2": "torch.export.load"}


def _load(checkpoint: str, device: str = "cpu"):
    from .hub import from_pretrained
    return from_pretrained(checkpoint, map_location=device)


def _input_size(model, recorded: dict, given: int | None) -> int:
    if given is not None:
        if given < 1:
            raise ValueError(f"--input-size must be a positive integer, got {given}")
        return given
    if recorded.get("image_size"):
        return int(recorded["image_size"])
    return 224 if (getattr(model, "config", None) or {}).get("stem") == "imagenet" else 32


# ---------------------------------------------------------------------------------- export
def _refuse_overwriting_the_source(source: "Path", out: "Path") -> None:
    """``--out`` must not be the checkpoint (or a file of the run directory) being exported."""
    protected = {source.resolve()}
    if source.is_dir():
        protected |= {p.resolve() for p in source.iterdir()}
    if out.resolve() in protected or out.resolve() == source.resolve():
        raise ValueError(f"--out {out} would overwrite the model being exported ({source}); "
                         "choose another file")


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path
    fmt = args.format or _SUFFIX_FORMATS.get(Path(args.out).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the format from --out {args.out}; pass --format "
                         "onnx, torchscript or pt2")
    if not args.atol > 0:
        raise ValueError(f"--atol must be positive, got {args.atol}")
    _refuse_overwriting_the_source(Path(args.checkpoint), Path(args.out))
    from .export import export_model
    model = _load(args.checkpoint)
    recorded = getattr(model, "preprocessing", {}) or {}
    size = _input_size(model, recorded, args.input_size)
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


def add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="export a trained model to ONNX, TorchScript or torch.export (pt2)",
        description="Fold BatchNorm into the convolutions, export the model with a dynamic batch "
        "dimension, load the file back (ONNX: with onnxruntime), run it and the PyTorch model on "
        "the same random inputs and print the max abs difference. The file is written only if it "
        "is within --atol.")
    p.add_argument("--checkpoint", required=True,
                   help="run directory, best.pt / last.pt, or a save_pretrained directory")
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
    p.set_defaults(func=cmd_export)


# --------------------------------------------------------------------------------- predict
def _device(name: str) -> str:
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available")
    return name


def cmd_predict(args: argparse.Namespace) -> int:
    if args.top_k < 1 or args.batch_size < 1:
        raise ValueError("--top-k and --batch-size must be positive integers")
    import dataclasses
    from .predict import LIGHT_THRESHOLD, Preprocessing, class_names, find_images, predict_files
    files = find_images(args.images)
    device = _device(args.device)
    if args.model is not None:
        from .registry import create_model
        model = create_model(args.model, pretrained=True).to(device)
    else:
        model = _load(args.checkpoint, device)
    recorded = getattr(model, "preprocessing", {}) or {}
    pre = Preprocessing.resolve(recorded, model.in_chans, args.dataset)
    pre = dataclasses.replace(pre, invert=args.invert)
    names = class_names(recorded if args.dataset is None else {"dataset": pre.dataset},
                        model.num_classes)
    results, failed, light = [], 0, 0
    for r in predict_files(model, files, pre, top_k=args.top_k, batch_size=args.batch_size,
                           names=names, device=device):
        light += bool(r.get("mostly_light"))
        if "error" in r:
            failed += 1
            print(f"mgiad predict: error: {r['error']}", file=sys.stderr)
        if args.json:
            results.append(r)
        elif "predictions" in r:
            print(r["path"])
            for p in r["predictions"]:
                print(f"  {p['rank']}. {p['label']:<20} {100 * p['probability']:6.2f}%")
            sys.stdout.flush()
    if args.json:
        print(json.dumps(results, indent=1))
    if light:
        print(f"mgiad predict: hint: {light} of {len(files)} images are mostly light (mean pixel "
              f"above {LIGHT_THRESHOLD:g}); Fashion-MNIST models expect a light garment on a dark "
              "background: try --invert", file=sys.stderr)
    if failed:
        print(f"mgiad predict: {failed} of {len(files)} files could not be read", file=sys.stderr)
    return 1 if failed else 0


def add_predict(sub) -> None:
    p = sub.add_parser(
        "predict", help="top-5 classes of image files with a trained model",
        description="Classify PNG/JPEG images (files, or folders searched recursively) with the "
        "input size, channels and normalisation the model was trained with; print the most "
        "probable classes (names for digits, fashion-mnist and cifar10; indices otherwise). "
        "Unreadable files are reported one by one (exit status 1); the others are classified.")
    p.add_argument("images", nargs="+", help="image files and/or folders")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint",
                       help="run directory, best.pt / last.pt, or a save_pretrained directory")
    from .pretrained import _names_for_choices
    shipped = _names_for_choices()
    which.add_argument("--model", metavar="NAME", choices=shipped or None,
                       help="a pretrained model shipped with mgiad (python -m mgiad.pretrained "
                       "list): " + (", ".join(shipped) or "none shipped yet"))
    p.add_argument("--invert", action="store_true",
                   help="invert the images (255 - x) first: for photos of a dark object on a light "
                   "background, the negative of Fashion-MNIST's light garments on black")
    p.add_argument("--top-k", type=int, default=5, help="classes per image (default: %(default)s)")
    p.add_argument("--dataset", default=None,
                   help="use this dataset's input size and normalisation instead of the recorded "
                   "ones (for models saved without them)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA if present; default), 'cpu', 'cuda'")
    p.add_argument("--json", action="store_true", help="print JSON: per file its predictions or error")
    p.set_defaults(func=cmd_predict)
