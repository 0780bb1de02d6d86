"""``mgiad train``: train a model, or continue a run (``--resume``)."""
from __future__ import annotations

import argparse

from ..models import list_models
from .args import add_data_arguments, add_model_arguments, model_kwargs_from_args

HELP = "train a model (default: MGiaD on the bundled digits, offline, ~1.5 min on a CPU)"
DESCRIPTION = """\
Train with the paper's recipe (SGD, momentum 0.9, weight decay 1e-4, batch 128, lr 0.05, cosine,
400 epochs; Fashion-MNIST: lr x0.1 every 25 epochs; ImageNet: batch 512). Writes config.json,
metrics.jsonl, last.pt, best.pt and summary.json to the run directory. Ctrl-C saves and exits;
--resume continues. Under torchrun it trains with DistributedDataParallel."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, choices=list_models(),
                   help="architecture (default: mgiad; with --pretrained / --init-from: theirs)")
    add_data_arguments(p, "digits")
    w = p.add_argument_group("start from trained weights (fine-tuning)")
    w.add_argument("--pretrained", default=None, metavar="NAME",
                   help="shipped weights (mgiad.list_pretrained(), e.g. "
                   "mgiad_16_32_64_ck16_gs8.fmnist_paper_e30): their architecture and weights; "
                   "a new classifier when --dataset has another number of classes")
    w.add_argument("--init-from", default=None, metavar="RUN_OR_FOLDER",
                   help="a run directory (its best.pt), a best.pt / last.pt file or a "
                   "save_pretrained folder: its architecture and weights, as --pretrained")
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
                   help="bf16 autocast (default: on for CUDA, where it is ~2x faster; off on the "
                   "CPU, where --amp autocasts to bf16 too, worth it on CPUs with AVX512-BF16 "
                   "or AMX; "
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


def run(args: argparse.Namespace) -> int:
    from ..training import shutdown_distributed
    try:
        return _train_or_resume(args)
    finally:
        shutdown_distributed()


def _train_or_resume(args: argparse.Namespace) -> int:
    from ..training import train
    if args.resume is not None:
        args.model = args.model or "mgiad"  # only to name the model flags given
        args.resume = args.resume or args.out
        if not args.resume:
            raise ValueError("--resume needs the run to continue: --resume runs/<name>")
        from ..training.config import RESUME_OVERRIDES, fields_of
        fixed = fields_of("recipe", "numerics", resumable=False)
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


def _train_config(args: argparse.Namespace):
    """The TrainConfig of the flags: one flag per field, of the same name (``--no-verify-data``
    for ``verify_data``; the model arguments are the model's own flags). With ``--pretrained``
    or ``--init-from`` the architecture is the source's, and model flags may only add to it."""
    from ..training.config import TrainConfig, fields_of
    source = args.pretrained or args.init_from
    model_args: dict = {}
    if source is not None:
        if args.pretrained and args.init_from:
            raise ValueError("give one of --pretrained and --init-from")
        from ..models import source_architecture
        from ..models._naming import plain
        family, model_args = source_architecture(source)
        if args.model not in (None, family):
            raise ValueError(f"{source} is a {family!r} model; drop --model {args.model}")
        args.model = family
    args.model = args.model or "mgiad"
    flags = model_kwargs_from_args(args)
    changed = [k for k, v in flags.items() if k in model_args and plain(v) != plain(model_args[k])
               and k not in ("impl", "recompute", "drop_rate", "drop_path_rate", "global_pool")]
    if changed:
        raise ValueError(f"{source} has {', '.join(f'{k}={model_args[k]!r}' for k in changed)}; "
                         f"its weights need that architecture: drop "
                         f"{', '.join('--' + k.replace('_', '-') for k in changed)}")
    given = {name: getattr(args, name) for name in fields_of() if name != "model_args"
             and getattr(args, name, None) is not None}
    given["verify_data"] = not getattr(args, "no_verify_data", False)
    return TrainConfig(model_args={**model_args, **flags}, **given)
