"""Command line: ``mgiad count | train | eval``. Run ``mgiad <command> --help`` for details."""
from __future__ import annotations

import argparse
import inspect
import os
import json
import sys
from typing import Any, Sequence

from . import paper
from .counting import count_flops, count_parameters
from .registry import _MODELS, create_model, list_models

# one line per create_model argument; every model argument is a flag of the same name
MODEL_ARG_HELP = {
    "num_classes": "number of output classes (default: from --dataset)",
    "in_chans": "input image channels (default: from --dataset)",
    "stem": "'cifar': 3x3 conv stride 1; 'imagenet': 7x7 conv stride 2 + 3x3 max-pool stride 2",
    "widths": "channels per resolution level before --width-mult, e.g. 64 128 256 256",
    "width_mult": "lambda: multiplies every width (paper: 1, 2, 3)",
    "group_size": "g_s: channels per group of the grouped smoothers A-hat, B-hat",
    "coarse_channels": "c_K: channel levels halve while the half stays >= c_K; coarsest is dense",
    "pre_smooth": "eta_pre: pre-smoothing steps per channel level (SiC, algorithm 2)",
    "post_smooth": "eta_post: post-smoothing steps per channel level (SiC, algorithm 2)",
    "prolong_norm": "BatchNorm after the channel prolongation P-hat (paper: Tiny ImageNet, ImageNet)",
    "smoothing_steps": "nu: MgNet smoothing steps per level (one value, or one per level)",
    "share": "MgNet weight sharing: 'AB' (one A and one B per level) or 'A' (new B every step)",
    "blocks": "blocks per resolution level (MGIC: one number)",
    "recompute": "train with less memory by running parts of the forward again in backward "
                 "(MgNet, MGiaD): 'level' (the default of a bare --recompute) stores each "
                 "resolution level's inputs; 'step' stores only each smoothing step's u, f "
                 "(least memory; docs/performance.md has the memory and time of each)",
    "impl": "'fast' (default: channels-last on CPU, memory-lean smoothing steps) or 'reference' "
            "(the readable code); same results (MgNet, MGiaD)",
}


def _is_sequence(annotation: Any) -> bool:
    text = str(annotation)
    return "Sequence" in text or "tuple" in text or "list" in text


def _arg_type(name: str, default: Any, annotation: Any):
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float, str)) and not _is_sequence(annotation):
        return type(default)
    if "float" in str(annotation):
        return float
    return int


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per keyword argument of any registered model (same name, dashes)."""
    group = parser.add_argument_group("model arguments (those of create_model; default: the model's)")
    seen: set[str] = set()
    for builder in _MODELS.values():
        for p in inspect.signature(builder).parameters.values():
            if p.name in seen:
                continue
            seen.add(p.name)
            flag = "--" + p.name.replace("_", "-")
            help_text = MODEL_ARG_HELP.get(p.name, p.name.replace("_", " "))
            kind = _arg_type(p.name, p.default, p.annotation)
            if p.name == "recompute":  # False / "level" / "step" (mgiad.recompute)
                group.add_argument(flag, nargs="?", const="level", choices=("level", "step"),
                                   default=None, help=help_text)
                group.add_argument("--no-recompute", dest="recompute", action="store_const",
                                   const=False, help="store every activation (the default)")
            elif kind is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                   help=help_text)
            elif _is_sequence(p.annotation) or isinstance(p.default, (tuple, list)):
                group.add_argument(flag, type=kind, nargs="+", default=None, help=help_text)
            else:
                group.add_argument(flag, type=kind, default=None, help=help_text)


def model_kwargs_from_args(args: argparse.Namespace, dataset: str | None = None) -> dict[str, Any]:
    """The create_model keyword arguments given on the command line, plus the dataset's defaults
    (classes, channels, and the paper's stem / prolong_norm for it) where the model takes them."""
    valid = inspect.signature(_MODELS[args.model]).parameters if args.model in _MODELS else {}
    kwargs: dict[str, Any] = {}
    if dataset is not None:
        setting = paper.DATASET_SETTINGS.get(dataset, {})
        kwargs.update({k: v for k, v in setting.items() if k in valid})
    for name in valid:
        value = getattr(args, name, None)
        if value is not None:
            if isinstance(value, list) and name == "smoothing_steps" and len(value) == 1:
                value = value[0]
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    # flags given for another model are an error, not silently ignored
    given = {n for b in _MODELS.values() for n in inspect.signature(b).parameters
             if getattr(args, n, None) is not None}
    foreign = sorted(given - set(valid))
    if foreign:
        raise ValueError(f"model {args.model!r} does not take "
                         f"{', '.join('--' + n.replace('_', '-') for n in foreign)}; "
                         f"its arguments: {', '.join(valid)}")
    return kwargs


# ----------------------------------------------------------------------------------- count
def _fmt_k(n: float) -> str:
    return f"{n / 1e3:,.1f}k"


def _count_paper(args: argparse.Namespace) -> int:
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


def cmd_count(args: argparse.Namespace) -> int:
    if args.paper:
        return _count_paper(args)
    from .data import dataset_info
    from .train import PRESETS
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


def _add_count(sub) -> None:
    p = sub.add_parser("count", help="weights, multiply-adds and FLOPs of a model, or the paper's tables",
                       description="Print a model's weights, multiply-adds and FLOPs for one image of "
                       "a dataset, or (--paper) every row of the paper's tables beside our count.")
    p.add_argument("--model", default="mgiad", choices=list_models(), help="architecture (default: mgiad)")
    p.add_argument("--dataset", default=None, choices=_dataset_names(),
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
    p.set_defaults(func=cmd_count)


# ------------------------------------------------------------------------------ train / eval
def _dataset_names() -> list[str]:
    from .data import DATASETS
    return list(DATASETS)


def _train_config(args: argparse.Namespace):
    from .train import TrainConfig
    config = TrainConfig(model=args.model, model_args=model_kwargs_from_args(args),
                         dataset=args.dataset, data_dir=args.data_dir, download=args.download,
                         verify_data=not getattr(args, "no_verify_data", False))
    for name in ("epochs", "batch_size", "lr", "schedule", "step_size", "warmup_epochs", "gamma", "momentum",
                 "weight_decay", "label_smoothing", "augment", "seed", "device", "amp", "channels_last",
                 "compile", "workers", "out", "progress", "tensorboard"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    return config


def cmd_train(args: argparse.Namespace) -> int:
    from .train import shutdown_distributed
    try:
        return _train_or_resume(args)
    finally:
        shutdown_distributed()


def _train_or_resume(args: argparse.Namespace) -> int:
    from .train import train
    if args.resume is not None:
        args.resume = args.resume or args.out
        if not args.resume:
            raise ValueError("--resume needs the run to continue: --resume runs/<name>")
        from .train import RESUME_OVERRIDES
        fixed = ("batch_size", "schedule", "step_size", "warmup_epochs", "seed", "label_smoothing",
                 "augment",
                 "amp", "channels_last")
        given = [a for a in fixed if getattr(args, a, None) is not None]
        given += [a for a in model_kwargs_from_args(args) if a not in ("num_classes", "in_chans")]
        if given:
            raise ValueError(f"--resume continues the recorded run; only "
                             f"{', '.join('--' + o.replace('_', '-') for o in RESUME_OVERRIDES)} "
                             f"may change (recorded in its config.json); drop "
                             f"{', '.join('--' + g.replace('_', '-') for g in given)}")
        overrides = {k: getattr(args, k) for k in RESUME_OVERRIDES}
        train(_train_config(args), resume=args.resume, **overrides)
        return 0
    train(_train_config(args))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint, load_model_state
    from .data import build_loaders
    from .pretrained import pretrained_cfg, resolve_data_dir
    from .train import evaluate, setup_runtime
    pretrained = args.model if args.model is not None and args.model not in _MODELS else None
    if args.checkpoint is None and pretrained is None:
        raise ValueError("eval needs --checkpoint (a run directory, best.pt or last.pt) or --model "
                         "NAME, a pretrained model (python -m mgiad.pretrained list)")
    if args.checkpoint is not None and pretrained is not None:
        raise ValueError(f"--model {args.model} is a pretrained model; with --checkpoint, --model "
                         f"is the architecture to expect ({', '.join(list_models())})")
    if pretrained is not None:
        entry = pretrained_cfg(pretrained)
        trained_on = entry["preprocessing"]["dataset"]
        dataset = args.dataset or trained_on
        flags = model_kwargs_from_args(argparse.Namespace(**{**vars(args), "model": entry["model"]}))
        model = create_model(pretrained, pretrained=True, **flags)
        data_dir = args.data_dir
    else:
        state = load_checkpoint(args.checkpoint)
        recorded = state["config"]
        dataset = args.dataset or recorded["dataset"]
        model_args = dict(recorded["model_args"])
        model_name = args.model or recorded["model"]
        if args.model is not None and args.model != recorded["model"]:
            model_args = {k: v for k, v in model_args.items() if k in ("num_classes", "in_chans")}
        args.model = model_name
        model_args.update(model_kwargs_from_args(args))
        model = create_model(model_name, **model_args)
        load_model_state(model, state["model"], f"checkpoint {args.checkpoint}")
        # the run's data location unless told otherwise (then $MGIAD_DATA_DIR or ./.data)
        data_dir = resolve_data_dir(args.data_dir, (recorded.get("train") or {}).get("data_dir"))
    runtime = setup_runtime(args.device)
    model.to(runtime.device)
    _, test_loader = build_loaders(dataset, data_dir, batch_size=args.batch_size,
                                   device=runtime.device, download=args.download,
                                   workers=args.workers, rank=runtime.rank,
                                   world_size=runtime.world_size)
    result = evaluate(model, test_loader, runtime)
    if pretrained is not None:
        stated = entry["accuracy"]["test_acc"] if dataset == trained_on else None
        result = {"model": pretrained, "dataset": dataset, "test_loss": result["loss"],
                  "test_acc": result["acc"], "images": test_loader.dataset_size,
                  "recorded_test_acc": stated,
                  "difference": None if stated is None else result["acc"] - stated}
        if runtime.is_main:
            print(json.dumps(result, indent=1) if args.json else
                  f"{dataset} test: loss {result['test_loss']:.4f}  accuracy "
                  f"{result['test_acc']:.2f}%  ({result['images']} images, {pretrained}); "
                  + (f"recorded {stated:.2f}%, difference {result['difference']:+.2f} points"
                     if stated is not None else f"no recorded accuracy on {dataset} (trained on "
                     f"{trained_on})"))
        return 0
    result = {"checkpoint": str(args.checkpoint), "epoch": state.get("epoch"), "dataset": dataset,
              "test_loss": result["loss"], "test_acc": result["acc"],
              "images": test_loader.dataset_size}
    if runtime.is_main:
        print(json.dumps(result, indent=1) if args.json else
              f"{dataset} test: loss {result['test_loss']:.4f}  accuracy {result['test_acc']:.2f}%  "
              f"({result['images']} images, checkpoint epoch {result['epoch']})")
    return 0


def _add_data_arguments(p: argparse.ArgumentParser, default_dataset: str | None) -> None:
    p.add_argument("--dataset", default=default_dataset, choices=_dataset_names(),
                   help="dataset (default: %(default)s; 'digits' is the bundled 8x8 "
                   "digits, offline)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding the dataset files (default: $MGIAD_DATA_DIR or ./.data)")
    p.add_argument("--download", action="store_true",
                   help="fetch a missing dataset from its official source (checksum-verified)")
    p.add_argument("--workers", type=int, default=None,
                   help="data-loading processes for image-folder datasets (ImageNet)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu', 'cuda'")


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model (default: MGiaD on the bundled digits, offline, < 3 min)",
        description="Train with the paper's recipe (SGD, momentum 0.9, weight decay 1e-4, batch "
        "128, lr 0.05, cosine, 400 epochs; Fashion-MNIST: lr x0.1 every 25 epochs; ImageNet: "
        "batch 512). Writes config.json, metrics.jsonl, last.pt, best.pt and summary.json to the "
        "run directory. Ctrl-C saves and exits; --resume continues. Under torchrun it trains "
        "with DistributedDataParallel.")
    p.add_argument("--model", default="mgiad", choices=list_models(), help="architecture (default: mgiad)")
    _add_data_arguments(p, "digits")
    r = p.add_argument_group("recipe (default: the paper's, per dataset)")
    r.add_argument("--epochs", type=int, default=None, help="epochs (paper: 400)")
    r.add_argument("--batch-size", type=int, default=None, help="global batch per step (paper: 128)")
    r.add_argument("--lr", type=float, default=None, help="initial learning rate (paper: 0.05)")
    r.add_argument("--schedule", default=None, choices=["cosine", "step", "constant"],
                   help="learning-rate schedule (paper: cosine; Fashion-MNIST: step)")
    r.add_argument("--step-size", type=int, default=None, help="'step': epochs between decays (25)")
    r.add_argument("--gamma", type=float, default=None, help="'step': decay factor (0.1)")
    r.add_argument("--warmup-epochs", type=int, default=None,
                   help="linear learning-rate warm-up over the steps of the first N epochs "
                   "(paper: 0; the digits default: 1, so its first epochs do not overshoot)")
    r.add_argument("--momentum", type=float, default=None, help="SGD momentum (0.9)")
    r.add_argument("--weight-decay", type=float, default=None, help="weight decay (1e-4)")
    r.add_argument("--label-smoothing", type=float, default=None, help="label smoothing (0)")
    r.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="augment training batches (default per dataset: none for Fashion-MNIST, as "
                   "the paper; pad-4 random crop for digits; pad-4 random crop + horizontal flip "
                   "for CIFAR-10/100; random-resized crop + flip for Tiny ImageNet and ImageNet)")
    r.add_argument("--seed", type=int, default=None, help="random seed (0); same seed, same run")
    e = p.add_argument_group("execution")
    e.add_argument("--out", default=None, help="run directory (default: runs/<model>-<dataset>-<time>)")
    e.add_argument("--no-verify-data", action="store_true",
                   help="skip the dataset checks (split sizes; Fashion-MNIST's published MD5s), "
                   "e.g. for a deliberate subset; also MGIAD_VERIFY_DATA=0")
    e.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN",
                   help="continue the run in RUN (a run directory or its last.pt; default: --out)")
    e.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on for CUDA, where it is ~2x faster; off on CPU; "
                   "--no-amp on CUDA is strict float32, TF32 off; mgiad reproduce trains in "
                   "float32 as the paper)")
    e.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on for CUDA)")
    e.add_argument("--compile", nargs="?", const=True, default=None, metavar="MODE",
                   help="torch.compile the model; MODE: default, reduce-overhead (with CUDA "
                   "graphs; the default on one GPU), max-autotune, max-autotune-no-cudagraphs, "
                   "or off (eager; the default on the CPU and under torchrun)")
    e.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when the terminal is interactive)")
    e.add_argument("--tensorboard", action="store_true", default=None,
                   help="also log to <run>/tensorboard (needs the tensorboard package)")
    add_model_arguments(p)
    p.set_defaults(func=cmd_train)


def _add_eval(sub) -> None:
    from .pretrained import _names_for_choices
    shipped = _names_for_choices()
    p = sub.add_parser("eval", help="test accuracy of a checkpoint or a pretrained model",
                       description="Rebuild the model recorded in a checkpoint (--checkpoint) or a "
                       "pretrained model shipped with mgiad (--model NAME) and report its test loss "
                       "and accuracy (on the dataset it was trained on, or --dataset); for a "
                       "pretrained model also the accuracy its manifest records.")
    p.add_argument("--checkpoint", default=None,
                   help="best.pt, last.pt or a run directory (or give --model NAME instead)")
    _add_data_arguments(p, None)
    for action in p._actions:  # the defaults depend on the checkpoint / pretrained model
        if action.dest == "dataset":
            action.help = ("dataset (default: the one the checkpoint or pretrained model was "
                           "trained on; 'digits' is the bundled 8x8 digits, offline)")
        elif action.dest == "data_dir":
            action.help = ("folder holding the dataset files (default: the run's recorded "
                           "folder if it exists, else $MGIAD_DATA_DIR or ./.data)")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch (default: 256)")
    p.add_argument("--model", default=None, choices=list_models() + shipped, metavar="MODEL",
                   help="with --checkpoint: the architecture to expect, one of "
                   f"{', '.join(list_models())} (default: the checkpoint's); without: the "
                   "pretrained model to evaluate (python -m mgiad.pretrained list): "
                   + (", ".join(shipped) or "none shipped yet"))
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_arguments(p)
    p.set_defaults(func=cmd_eval)


# ------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgiad", description="MGiaD: multigrid in all dimensions. Models of the paper "
        "(mgiad, mgnet, mgic, resnet18, resnet20), their weight and FLOP counts, training and "
        "evaluation.")
    sub = parser.add_subparsers(dest="command", metavar="command")
    _add_count(sub)
    for add in _EXTRA_COMMANDS:
        add(sub)
    return parser


from .cli_experiments import add_report, add_reproduce  # noqa: E402
from .cli_interop import add_export, add_predict  # noqa: E402


def plain_text(doc: str) -> str:
    """A reST docstring as terminal text: roles, literals and emphasis marks removed."""
    import re
    doc = re.sub(r":\w+:`~?([^`<]+?)(?: <[^>]+>)?`", r"\1", doc)
    return doc.replace("``", "").replace("**", "")


def _add_bench(sub) -> None:
    from . import bench
    p = sub.add_parser("bench", help="speed and memory against ResNet18 (train step, folded "
                       "inference, peak memory)", description=plain_text(bench.__doc__),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(p)
    p.set_defaults(func=lambda args: bench.cmd_bench(args))


_EXTRA_COMMANDS: list = [_add_train, _add_eval, add_reproduce, add_report, add_export, add_predict,
                         _add_bench]


def _is_user_error(exc: Exception) -> bool:
    """Bad input, diverged runs and the file system's refusals are reported in one paragraph;
    anything else is a bug: traceback."""
    train = sys.modules.get("mgiad.train")
    return isinstance(exc, (ValueError, OSError)) or (
        train is not None and isinstance(exc, train.TrainingDiverged))


def _describe_error(exc: Exception) -> str:
    """One paragraph for the user; OS errors say which file and what to do."""
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.errno:
        import errno
        where = f" {exc.filename}" if exc.filename else ""
        advice = {errno.ENOSPC: "no space left on the device: free some space and run the same "
                                "command again (files already written are intact: every write "
                                "goes to a temporary file first)",
                  errno.EDQUOT: "disk quota exceeded: free some space and run the command again",
                  errno.EACCES: "permission denied: choose a folder you can write to (--out)",
                  errno.EPERM: "operation not permitted: choose a folder you can write to",
                  errno.EROFS: "the file system is read-only: choose another folder (--out)",
                  errno.EISDIR: "a folder is where a file was expected",
                  errno.ENOTDIR: "a file is where a folder was expected"}.get(exc.errno)
        if advice:
            return f"cannot use{where}: {advice}"
    return str(exc)


_HEAVY_COMMANDS = {"train", "eval", "reproduce", "bench", "predict"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command in _HEAVY_COMMANDS:
        from .fast import tune_malloc
        tune_malloc()  # reuse freed feature maps instead of page-faulting them in every step
    try:
        return args.func(args) or 0
    except BrokenPipeError:  # the reader went away (`mgiad ... | head`): stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 141
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"mgiad {args.command}: error: {_describe_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mgiad {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
