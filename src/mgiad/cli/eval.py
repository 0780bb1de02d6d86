"""``mgiad eval``: test accuracy of a checkpoint or a pretrained model."""
from __future__ import annotations

import argparse
import json

from ..models import create_model, list_models
from ..models._registry import is_registered
from .args import add_data_arguments, add_model_arguments, model_kwargs_from_args

HELP = "test accuracy of a checkpoint or a pretrained model"
DESCRIPTION = """\
Rebuild the model recorded in a checkpoint (--checkpoint) or a pretrained model shipped with
mgiad (--model NAME) and report its test loss and accuracy (on the dataset it was trained on, or
--dataset); for a pretrained model also the accuracy its manifest records."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..models._pretrained import names_for_choices
    shipped = names_for_choices()
    p.add_argument("--checkpoint", default=None,
                   help="best.pt, last.pt or a run directory (its best.pt, else last.pt; give "
                   "RUN/last.pt for the final model) (or give --model NAME instead)")
    add_data_arguments(p, None)
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
                   "pretrained model to evaluate (python -m mgiad.experiments.release list): "
                   + (", ".join(shipped) or "none shipped yet"))
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..utils.checkpoint import CheckpointError, load_checkpoint, load_model_state
    from ..data import build_loaders
    from ..data.info import resolve_data_dir
    from ..models import pretrained_cfg
    from ..training import evaluate, setup_runtime
    pretrained = args.model if args.model is not None and not is_registered(args.model) else None
    if args.checkpoint is None and pretrained is None:
        raise ValueError("eval needs --checkpoint (a run directory, best.pt or last.pt) or --model "
                         "NAME, a pretrained model (python -m mgiad.experiments.release list)")
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
        recorded = state["config"] if isinstance(state["config"], dict) else {}
        if not isinstance(recorded.get("model"), str) or not isinstance(recorded.get("model_args"), dict):
            raise CheckpointError(f"checkpoint {args.checkpoint} does not record its model "
                                  "(config.model and config.model_args); it was not written by "
                                  "mgiad train")
        dataset = args.dataset or recorded.get("dataset")
        if not dataset:
            raise ValueError(f"checkpoint {args.checkpoint} does not record its dataset; pass "
                             "--dataset NAME")
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
