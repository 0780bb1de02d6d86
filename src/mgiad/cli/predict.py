"""``mgiad predict``: classify image files with a trained or pretrained model."""
from __future__ import annotations

import argparse
import json
import sys

from .export import load

HELP = "top-5 classes of image files with a trained model"
DESCRIPTION = """\
Classify PNG/JPEG images (files, or folders searched recursively) with the input size, channels
and normalisation the model was trained with; print the most probable classes (names for digits,
fashion-mnist and cifar10; indices otherwise). Unreadable files are reported one by one (exit
status 1); the others are classified."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files and/or folders")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint",
                       help="run directory (its best.pt, else last.pt), best.pt / last.pt, or a "
                       "save_pretrained directory")
    from ..models._pretrained import names_for_choices
    shipped = names_for_choices()
    which.add_argument("--model", metavar="NAME", choices=shipped or None,
                       help="a pretrained model shipped with mgiad (python -m mgiad.experiments.release "
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
    p.add_argument("--no-optimize", dest="optimize", action="store_false",
                   help="run the model as loaded instead of mgiad.optimize_for_inference's version "
                        "(BatchNorm folded, C++ kernels, traced executor; same predictions)")


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise ValueError("--top-k must be a positive integer")
    from ..utils.limits import MAX_BATCH_SIZE, check_size
    check_size("--batch-size", args.batch_size, MAX_BATCH_SIZE)
    import dataclasses
    from ..deploy.predict import (LIGHT_THRESHOLD, Preprocessing, class_names, find_images,
                                  predict_files)
    files = find_images(args.images)
    from ..utils.device import resolve_device
    device = str(resolve_device(args.device))
    if args.model is not None:
        from ..models import create_model
        model = create_model(args.model, pretrained=True).to(device).eval()
    else:
        model = load(args.checkpoint, device)
    recorded = getattr(model, "preprocessing", {}) or {}
    pre = Preprocessing.resolve(recorded, model.in_chans, args.dataset)
    pre = dataclasses.replace(pre, invert=args.invert)
    names = class_names(recorded if args.dataset is None else {"dataset": pre.dataset},
                        model.num_classes)
    if args.optimize:  # BatchNorm folded, kernels' epilogues, the traced executor (checked)
        from ..deploy.optimize import optimize_for_inference
        model = optimize_for_inference(model, input_size=pre.image_size)
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
        print(f"mgiad predict: hint: {light} of {len(files) - failed} images are mostly light "
              f"(a light background: the border averages above {LIGHT_THRESHOLD:g}); Fashion-MNIST "
              "models expect a light garment on a dark background: try --invert", file=sys.stderr)
    if failed:
        print(f"mgiad predict: {failed} of {len(files)} files could not be read", file=sys.stderr)
    return 1 if failed else 0
