"""``mgiad count``: weights, multiply-adds and FLOPs of a model, or the paper's tables."""
from __future__ import annotations

import argparse
import json

from ..models import create_model, list_models
from ..utils.counting import count_flops, count_parameters
from .args import add_model_arguments, dataset_names, model_kwargs_from_args

HELP = "weights, multiply-adds and FLOPs of a model, or the paper's tables"
DESCRIPTION = """\
Print a model's weights, multiply-adds and FLOPs for one image of a dataset, or (--paper) every
row of the paper's tables beside our count."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mgiad", choices=list_models(), help="architecture (default: mgiad)")
    p.add_argument("--dataset", default=None, choices=dataset_names(),
                   help="sets num_classes, in_chans, input size and the per-dataset options, as "
                   "`mgiad train --dataset` would (default: digits, the model `mgiad train` "
                   "trains by default; with --paper: all of the paper's)")
    p.add_argument("--input-size", type=int, default=None, help="image side (default: the dataset's)")
    p.add_argument("--paper", action="store_true",
                   help="compare every row of the paper's tables with our count, marking known anomalies")
    p.add_argument("--table", default=None, choices=["1", "2", "3", "s4"],
                   help="with --paper: only this table (s4: the CIFAR-10 figures in section 4's text)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_model_arguments(p)


def run(args: argparse.Namespace) -> int:
    if args.paper:
        return _count_paper(args)
    from ..data import dataset_info
    from ..training import PRESETS
    dataset = args.dataset or "digits"  # what `mgiad train` trains by default
    info = dataset_info(dataset)
    # the model `mgiad train --dataset D` builds: the dataset's preset, then the flags given
    kwargs = dict(PRESETS.get(info.name, {}).get("model_args", {}).get(args.model, {}))
    kwargs.update(num_classes=info.num_classes, in_chans=info.in_chans)
    kwargs.update(model_kwargs_from_args(args, dataset))
    model = create_model(args.model, **kwargs)
    size = args.input_size or info.image_size
    weights = count_parameters(model)
    flops = count_flops(model, size)
    result = {"model": args.model, "dataset": dataset, "config": model.config,
              "input_size": [model.in_chans, size, size], "weights": weights,
              "weights_without_classifier": count_parameters(model, exclude_head=True),
              "multiply_adds": flops.macs, "flops": flops.flops}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    shown = {k: v for k, v in kwargs.items() if k not in ("num_classes", "in_chans")}
    print(f"model       {args.model} " + " ".join(f"{k}={v}" for k, v in shown.items()))
    print(f"input       {model.in_chans}x{size}x{size}, {model.num_classes} classes ({dataset})")
    print(f"weights     {weights:,} ({result['weights_without_classifier']:,} without classifier)")
    print(f"mult-adds   {flops.macs / 1e6:,.1f} M")
    print(f"FLOPs       {flops.gflops:.3f} G  (2 x multiply-adds, per image)")
    return 0


def _count_paper(args: argparse.Namespace) -> int:
    from ..experiments import paper
    selected = paper.rows(args.table, args.dataset)
    if not selected:
        raise ValueError(f"no paper rows for table={args.table!r} dataset={args.dataset!r}")
    results = [paper.compare(r) for r in selected]
    if args.json:
        print(json.dumps([{
            "table": r["row"].table, "dataset": r["row"].dataset, "model": r["row"].label,
            "config": r["row"].model_kwargs(), "paper_weights_k": r["row"].weights_k,
            "weights": r["weights"], "rel_diff": r["rel_diff"],
            **{k: r[k] for k in ("gflops", "paper_convention_gflops", "explained_weights")
               if k in r},
            "anomaly": r["row"].anomaly.reason if r["row"].anomaly else None,
        } for r in results], indent=1))
        return 0
    header = f"{'table':5} {'dataset':13} {'model':31} {'paper':>9} {'ours':>10} {'diff':>7}  note"
    print(header)
    print("-" * len(header))
    for r in results:
        row = r["row"]
        ok = abs(r["rel_diff"]) <= 0.01 or round(r["weights"] / 1e3) == row.weights_k
        note = "" if ok else "!"
        if row.anomaly:
            note = "ANOMALY: " + row.anomaly.reason
            if "explained_weights" in r:
                note += f" -> {_fmt_k(r['explained_weights'])} ({r['explained_rel_diff']:+.1%})"
        print(f"{row.table:5} {row.dataset:13} {row.label:31} {row.weights_k:>8,}k "
              f"{_fmt_k(r['weights']):>10} {r['rel_diff']:>+7.1%}  {note}")
        if "gflops" in r:
            print(f"{'':5} {'':13} {'  GFLOPs':31} {row.gflops:>9.2f} "
                  f"{r['paper_convention_gflops']:>10.3f} {r['gflops_rel_diff']:>+7.1%}  "
                  f"counted as the paper does; computed by our model: {r['gflops']:.3f}")
    print("\nWeights in thousands; diff = ours / paper - 1. Table 2 (Fashion-MNIST) excludes the "
          "classifier of MgNet and MGiaD.\nGFLOPs: the paper evaluates A_l(u_l) twice at the start "
          "of each resolution level (eq. 9 and the first smoothing step); our models compute it "
          "once.")
    return 0


def _fmt_k(n: float) -> str:
    return f"{n / 1e3:,.1f}k"
