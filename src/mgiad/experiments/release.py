"""Shipping trained weights with the package: ``python -m mgiad.experiments.release``.

::

    python -m mgiad.experiments.release add RUN_DIR [RUN_DIR ...] [--tag TAG | --name NAME]
                                          [--data-dir DIR] [--weights-dir DIR] [--replace]
    python -m mgiad.experiments.release list
    python -m mgiad.experiments.release remove NAME

``add`` takes the run's final model (``last.pt``; ``config.json`` and ``summary.json`` must be
there, and ``last.pt`` must be at the last epoch: unfinished runs are refused), measures its test
accuracy on the CPU in float32 (refused if it is more than :data:`MAX_RUN_DIFFERENCE` points from
the run's own figure: wrong data?), writes ``<name>.safetensors``, loads it back as
``create_model(name, pretrained=True)`` does and checks identical outputs, then records the entry
in the manifest (names and files: :mod:`mgiad.models._pretrained`). Commit ``src/mgiad/weights/``
afterwards. (``python -m mgiad.pretrained`` is the same command under its earlier name.)
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..data.info import resolve_data_dir
from ..models._naming import RUNTIME_ARGS, architecture_name, check_name, default_tag, plain
from ..models._pretrained import *  # noqa: F401,F403  (the loading side, for `mgiad.pretrained`)
from ..models._pretrained import (ENV_VAR, MANIFEST_NAME, _entry, build, read_manifest, weights_dir,
                                  write_manifest)
from ..utils.checkpoint import CheckpointError, atomic_write, load_checkpoint
from ..utils.limits import finite

__all__ = ["add_run", "remove", "main", "MAX_RUN_DIFFERENCE", "SLICE"]

# a measured test accuracy further than this (percentage points) from the run's is refused
MAX_RUN_DIFFERENCE = 0.5
# the accuracy on the first SLICE test images is recorded too, for quick checks (tests)
SLICE = 500


# ------------------------------------------------------------------------------------- add
def _relative(path: Path) -> str:
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def _finished_run(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(last.pt's state, summary.json) of a finished run; ``ValueError`` saying what is missing."""
    if not run.is_dir():
        raise ValueError(f"{run} is not a run directory")
    for name in ("config.json", "last.pt"):
        if not (run / name).is_file():
            raise ValueError(f"{run} is not a run directory of mgiad train: no {name}")
    if not (run / "summary.json").is_file():
        raise ValueError(f"{run} is unfinished (no summary.json): finish it with "
                         f"`mgiad train --resume {run}` before shipping it")
    state = load_checkpoint(run / "last.pt")
    try:
        summary = json.loads((run / "summary.json").read_text())
    except ValueError as exc:
        raise ValueError(f"{run}/summary.json is not JSON ({exc})") from None
    config = state["config"]
    if not isinstance(summary, dict) or not isinstance(config, dict) \
            or not isinstance(config.get("train"), dict):
        raise ValueError(f"{run}: summary.json or last.pt's config is not an object of the fields "
                         "mgiad train writes (damaged, or not a run of mgiad train)")
    for key in ("final_test_acc", "best_test_acc", "train_acc", "wall_seconds"):
        if key in summary and (key == "final_test_acc" or summary[key] is not None):
            finite(summary[key], f"{run}/summary.json: {key}")
    if "final_test_acc" not in summary:
        raise ValueError(f"{run}/summary.json records no final_test_acc")
    epochs = config["train"].get("epochs")
    if state.get("epoch") != epochs or state.get("batch", 0) != 0 or summary.get("epochs") != epochs:
        raise ValueError(f"{run} is unfinished: last.pt is at epoch {state.get('epoch')} "
                         f"(batch {state.get('batch', 0)}) of {epochs}, summary.json says "
                         f"{summary.get('epochs')} epochs; finish it with `mgiad train --resume {run}`")
    history = state.get("history") or []
    last = history[-1] if isinstance(history, list) and history else {}
    if history and not (isinstance(last, dict) and isinstance(last.get("test_acc"), (int, float))):
        raise ValueError(f"{run}: last.pt's history is malformed (damaged checkpoint)")
    if history and abs(last["test_acc"] - summary["final_test_acc"]) > 1e-9:
        raise ValueError(f"{run}: summary.json's final_test_acc does not belong to last.pt "
                         "(a run extended after its summary?)")
    return state, summary


def _measure(model: nn.Module, dataset: str, data_dir: str | None, batch_size: int) -> dict[str, Any]:
    from ..data import build_loaders
    from ..training import Runtime, evaluate
    _, test = build_loaders(dataset, data_dir, batch_size=batch_size, device="cpu")
    result = evaluate(model, test, Runtime(torch.device("cpu")))
    correct = seen = 0  # the first SLICE images (the test set is never shuffled): a quick check
    with torch.no_grad():
        for x, y in test:
            take = min(SLICE - seen, len(y))
            correct += (model(x[:take]).argmax(1) == y[:take]).sum().item()
            seen += take
            if seen == SLICE:
                break
    return {"test_acc": result["acc"], "test_loss": result["loss"], "test_images": test.dataset_size,
            f"test_acc_first{SLICE}": 100.0 * correct / max(seen, 1)}


def _paper(experiment: dict[str, Any] | None) -> dict[str, Any] | None:
    row = (experiment or {}).get("paper_row")
    if not row:
        return None
    from .paper import PAPER_ROWS
    for r in PAPER_ROWS:
        if r.table == row.get("table") and r.label == row.get("label") and r.dataset == experiment.get("dataset"):
            return {"table": r.table, "label": r.label, "test_acc": r.test, "test_std": r.test_std,
                    "train_acc": r.train}
    return None


def _recipe(train: dict[str, Any], device: str | None) -> dict[str, Any]:
    """The run's recipe and numerics (:class:`~mgiad.training.TrainConfig`'s fields of those
    kinds) as it trained."""
    from ..training.config import fields_of
    recipe = {k: train[k] for k in fields_of("recipe", "numerics") if k in train}
    for key in ("amp", "channels_last"):  # None: on for CUDA (see TrainConfig); say what it was
        if key in recipe and recipe[key] is None:
            recipe[key] = device == "cuda"
    return recipe


def _preprocessing(run: Path, model: nn.Module) -> dict[str, Any]:
    """What the run recorded about its inputs, with class names and a description in words."""
    from ..deploy.predict import Preprocessing, class_names
    from ..models._hub import read_preprocessing
    preprocessing = read_preprocessing(run / "last.pt")
    if not preprocessing.get("dataset"):
        raise ValueError(f"{run} does not record its dataset")
    names = class_names(preprocessing, model.num_classes)
    if names:
        preprocessing["class_names"] = names
    preprocessing["description"] = Preprocessing.resolve(preprocessing, model.in_chans).describe()
    return preprocessing


def _entry_of(name: str, run: Path, model: nn.Module, data: bytes, preprocessing: dict[str, Any],
              measured: dict[str, Any], summary: dict[str, Any], config: dict[str, Any],
              experiment: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest entry of the shipped model (plain JSON data)."""
    from ..training.record import command_line
    train, family = config.get("train", {}), model.config["model"]
    model_args = {k: v for k, v in model.config.items() if k != "model" and k not in RUNTIME_ARGS}
    command = config.get("command")
    entry = {
        "name": name, "model": family, "model_args": plain(model_args), "file": f"{name}.safetensors",
        "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "weights": sum(p.numel() for p in model.parameters()),
        "preprocessing": preprocessing,
        "accuracy": {**measured, "measured_on": "cpu, float32, the final model (last.pt)",
                     "train_acc": summary.get("train_acc"),
                     "run_final_test_acc": summary["final_test_acc"],
                     "run_best_test_acc": summary.get("best_test_acc")},
        "training": {
            "epochs": train.get("epochs"), "seed": train.get("seed"),
            "recipe": _recipe(train, config.get("device")),
            "command": shlex.join(command_line(command)) if command else None,
            "source_run": _relative(run), "budget": (experiment or {}).get("budget"),
            "device": config.get("device"), "world_size": config.get("world_size"),
            "wall_seconds": summary.get("wall_seconds"),
            "mgiad_version": config.get("mgiad_version"), "torch_version": config.get("torch_version"),
        },
    }
    paper = _paper(experiment)
    if paper:
        entry["paper"] = paper
    return plain(entry)


def _write_checked(directory: Path, file: str, data: bytes, entry: dict[str, Any],
                   model: nn.Module) -> None:
    """Write the weights file, replacing nothing until it reloads to the run's outputs."""
    size = entry["preprocessing"]["image_size"]
    directory.mkdir(parents=True, exist_ok=True)
    staged = f".{file}.new"  # checked before it replaces anything
    atomic_write(directory / staged, lambda fh: fh.write(data))
    try:  # load it back exactly as create_model(name, pretrained=True) will
        loaded = build({**copy.deepcopy(entry), "file": staged}, directory, True, {}).eval()
        x = torch.randn(4, model.in_chans, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            same = torch.equal(model(x), loaded(x)) and all(
                torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                   loaded.state_dict().values()))
        if not same:
            raise CheckpointError(f"{directory / file} does not reload to the run's outputs")
        os.chmod(directory / staged, 0o644)  # package data: readable by all (mkstemp: 0600)
        os.replace(directory / staged, directory / file)
    finally:
        (directory / staged).unlink(missing_ok=True)


def add_run(run_dir: str | os.PathLike, name: str | None = None, tag: str | None = None,
            directory: str | os.PathLike | None = None, data_dir: str | None = None,
            replace: bool = False, batch_size: int = 256, log=print) -> dict[str, Any]:
    """Ship the final model of the finished run ``run_dir`` (see the module docstring): write
    ``<name>.safetensors`` to ``directory`` (default :func:`weights_dir`), check that it reloads
    to identical outputs, record the entry in the manifest and return it.

    ``name`` (a full name) or ``tag`` (the part after the dot) override :func:`default_tag`;
    ``data_dir``: where the test set is (default: the run's recorded folder if it exists, else
    ``$MGIAD_DATA_DIR`` or ``./.data``). An existing entry of the same name is only replaced
    with ``replace=True``.
    """
    from ..models._hub import safetensors_bytes
    from ..models._load import model_from_checkpoint

    if name is not None and tag is not None:
        raise ValueError("give a name or a tag, not both")
    run = Path(run_dir)
    state, summary = _finished_run(run)
    config, train = state["config"], state["config"].get("train", {})
    model, _ = model_from_checkpoint(run / "last.pt")
    model.eval()
    family = model.config["model"]
    model_args = {k: v for k, v in model.config.items() if k != "model" and k not in RUNTIME_ARGS}
    preprocessing = _preprocessing(run, model)
    dataset = preprocessing["dataset"]
    experiment = None
    if (run / "experiment.json").is_file():
        experiment = json.loads((run / "experiment.json").read_text())
    architecture = architecture_name(family, model_args)
    if name is None:
        recipe = ((experiment or {}).get("budget") or {}).get("tag")
        tag = tag or default_tag(dataset, train.get("epochs", state["epoch"]), train.get("seed", 0), recipe)
        name = f"{architecture}.{tag}"
    check_name(name, architecture, dataset)

    directory = Path(directory or weights_dir())
    models = read_manifest(directory)
    file = f"{name}.safetensors"
    if (_entry(name, models) is not None or (directory / file).exists()) and not replace:
        raise ValueError(f"{name} is already in {directory} (pass --replace to ship the run again)")

    data_dir = resolve_data_dir(data_dir, train.get("data_dir"))
    log(f"{name}: measuring {run / 'last.pt'} on the {dataset} test set (CPU, float32)")
    measured = _measure(model, dataset, data_dir, batch_size)
    run_acc = summary["final_test_acc"]
    finite(measured["test_acc"], f"{run}: the measured test accuracy")
    if abs(measured["test_acc"] - run_acc) > MAX_RUN_DIFFERENCE:
        raise ValueError(f"{run}: the final model measures {measured['test_acc']:.2f}% on the "
                         f"{dataset} test set here, the run recorded {run_acc:.2f}%: another "
                         f"data folder ({data_dir or 'the default'})? Nothing was written")

    data = safetensors_bytes(model.state_dict(), {"model": family, "pretrained_name": name})
    entry = _entry_of(name, run, model, data, preprocessing, measured, summary, config, experiment)
    _write_checked(directory, f"{name}.safetensors", data, entry, model)
    old = _entry(name, models)
    models = [entry if e is old else e for e in models] if old else models + [entry]
    write_manifest(directory, models)
    log(f"{name}: test accuracy {measured['test_acc']:.2f}% ({measured['test_images']} images; "
        f"the run recorded {run_acc:.2f}%), {len(data) / 1e3:,.1f} kB -> {directory / file}")
    return entry


def remove(name: str, directory: str | os.PathLike | None = None) -> None:
    """Drop ``name`` from the manifest in ``directory`` and delete its weights file."""
    directory = Path(directory or weights_dir())
    models = read_manifest(directory)
    entry = _entry(name, models)
    if entry is None:
        raise ValueError(f"{name!r} is not in {directory / MANIFEST_NAME}")
    write_manifest(directory, [e for e in models if e is not entry])
    (directory / entry["file"]).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mgiad.experiments.release",
        description="The pretrained weights shipped with mgiad: list them, ship a finished run "
        "(add), or drop one (remove). See the module docstring for names and files.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    folder = dict(default=None, help=f"weights folder (default: ${ENV_VAR}, else the package's "
                  "mgiad/weights)")
    p = sub.add_parser("add", help="ship the final model of finished runs (last.pt)")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run directories")
    p.add_argument("--name", default=None, help="the full name (only with one run; default: "
                   "<architecture>.<default tag>)")
    p.add_argument("--tag", default=None, help="the tag after the dot (default: "
                   "<dataset>[_<budget>]_e<epochs>[_s<seed>], e.g. fmnist_paper_e30)")
    p.add_argument("--data-dir", default=None, help="folder holding the test set (default: the "
                   "run's recorded folder if it exists, else $MGIAD_DATA_DIR or ./.data)")
    p.add_argument("--weights-dir", **folder)
    p.add_argument("--replace", action="store_true", help="replace an entry of the same name")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch (default: 256)")
    p = sub.add_parser("list", help="names, accuracy and size of the shipped models")
    p.add_argument("--weights-dir", **folder)
    p.add_argument("--json", action="store_true", help="print the manifest entries as JSON")
    p = sub.add_parser("remove", help="drop a model from the manifest and delete its file")
    p.add_argument("name")
    p.add_argument("--weights-dir", **folder)
    args = parser.parse_args(argv)
    try:
        if args.command == "add":
            if args.name and len(args.runs) > 1:
                raise ValueError("--name names one run; use --tag for several")
            skipped = 0
            for run in args.runs:  # one bad run is skipped with a warning naming it
                try:
                    add_run(run, name=args.name, tag=args.tag, directory=args.weights_dir,
                            data_dir=args.data_dir, replace=args.replace, batch_size=args.batch_size)
                except (ValueError, OSError) as exc:
                    if len(args.runs) == 1:
                        raise
                    skipped += 1
                    print(f"{parser.prog} add: warning: {run} skipped: {exc}", file=sys.stderr)
            if skipped:
                print(f"{parser.prog} add: {skipped} of {len(args.runs)} runs skipped",
                      file=sys.stderr)
                return 1
        elif args.command == "list":
            models = read_manifest(args.weights_dir)
            if args.json:
                print(json.dumps(models, indent=1))
            elif not models:
                print(f"no pretrained models in {Path(args.weights_dir or weights_dir())}")
            for e in [] if args.json else models:
                acc = e["accuracy"]
                train = acc.get("train_acc")
                print(f"{e['name']:<48} test {acc['test_acc']:6.2f}%  train "
                      + (f"{train:6.2f}%" if train is not None else "   n/a ")
                      + f"  {e.get('weights', 0):>9,} weights  {e.get('bytes', 0) / 1e3:8,.1f} kB")
        else:
            remove(args.name, args.weights_dir)
    except (ValueError, OSError) as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

