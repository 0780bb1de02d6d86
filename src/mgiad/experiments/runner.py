"""Running a plan: idempotent (finished runs skipped, half-done ones resumed, failures recorded
and the others go on), its status and summary."""
from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..models._naming import RUNTIME_ARGS, plain
from ..models._naming import fmt_value as _fmt
from ..training.progress import plural
from ..training.rundir import RunDirectoryBusy, claim, release
from .grid import EXPERIMENT_FILE, RunSpec, paper_recipe

__all__ = ["RUN_OPTIONS", "RunResult", "run_status", "spec_status", "check_recorded", "run_one", "run_grid", "summarize",
           "print_plan"]


# execution options passed through to TrainConfig (not part of a run's identity)
RUN_OPTIONS = ("data_dir", "download", "device", "workers", "amp", "channels_last", "compile",
               "progress")


def run_status(directory: Path) -> str:
    """``done`` (summary.json), ``partial`` (last.pt: it resumes), ``failed`` (error.log), or ``new``."""
    if (directory / "summary.json").is_file():
        return "done"
    if (directory / "last.pt").is_file():
        return "partial"
    if (directory / "error.log").is_file():
        return "failed"
    return "new"


def spec_status(spec: RunSpec, root: str | Path) -> str:
    """:func:`run_status` of the spec's run, or ``shorter`` for a finished prefix run that has
    fewer epochs than the spec asks for (running it extends the run)."""
    directory = spec.directory(root)
    status = run_status(directory)
    if status == "done" and spec.budget.prefix:
        try:
            epochs = json.loads((directory / "summary.json").read_text()).get("epochs")
        except (OSError, ValueError):
            return status
        if isinstance(epochs, int) and epochs < spec.epochs:
            return "shorter"
    return status


def _recorded_config(directory: Path) -> dict[str, Any] | None:
    """The run record of ``directory``: config.json, else last.pt's config; None if neither."""
    if (directory / "config.json").is_file():
        try:
            data = json.loads((directory / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{directory / 'config.json'} cannot be read ({exc}); move the run "
                             "directory away to train this run again") from None
        return data if isinstance(data, dict) else {}
    if (directory / "last.pt").is_file():
        from ..utils.checkpoint import load_checkpoint
        return dict(load_checkpoint(directory / "last.pt")["config"])
    return None


def _describe(model: Any, args: dict[str, Any], train: dict[str, Any], keys) -> str:
    from ..models._naming import architecture_name
    try:
        name = architecture_name(model, {k: v for k, v in args.items() if k not in RUNTIME_ARGS})
    except (ValueError, TypeError):
        name = f"{model} {args}"
    return name + (" with " + ", ".join(f"{k}={_fmt(train.get(k))}" for k in keys) if keys else "")


def check_recorded(spec: RunSpec, root: str | Path) -> None:
    """``ValueError`` naming both configurations when the run directory of ``spec`` records
    another one (model, its arguments, dataset, seed or recipe): resuming or skipping it would
    file another network under this run's name and paper row."""
    directory = spec.directory(root)
    recorded = _recorded_config(directory)
    if recorded is None:
        return
    from ..models import model_arguments
    from ..training import resolve_config
    planned = resolve_config(spec.train_config(root))
    train = recorded.get("train") if isinstance(recorded.get("train"), dict) else {}
    model = recorded.get("model", train.get("model"))
    args = recorded.get("model_args", train.get("model_args"))
    keys = ["dataset", "seed", "batch_size", "lr", "schedule"]
    keys += ["step_size"] if planned.schedule == "step" else []
    keys += [] if spec.budget.prefix else ["epochs"]
    ours = planned.to_json()
    same = model == planned.model and isinstance(args, dict)
    if same:
        defaults = model_arguments(planned.model)
        mine = {**defaults, **planned.model_args}
        theirs = {**defaults, **args}
        same = all(plain(mine.get(k)) == plain(theirs.get(k)) for k in set(mine) | set(theirs)
                   if k not in RUNTIME_ARGS)
    keys = [k for k in keys if plain(train.get(k)) != plain(ours[k])]  # those that differ
    if not same or keys:
        args = args if isinstance(args, dict) else {}
        raise ValueError(f"{directory} holds another run: {_describe(model, args, train, keys)}; "
                         f"the plan's is {_describe(planned.model, planned.model_args, ours, keys)}. "
                         "Move that directory away (or choose another --runs folder)")


@dataclass
class RunResult:
    spec: RunSpec
    directory: Path
    status: str          # skipped | trained | resumed | busy (another process) | failed
    error: str = ""
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


def _tee(path: Path, log: Callable[[str], None]) -> Callable[[str], None]:
    def write(message: str) -> None:
        log(message)
        with open(path, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
    return write


def run_one(spec: RunSpec, root: str | Path, options: dict[str, Any] | None = None,
            log: Callable[[str], None] = print) -> RunResult:
    """Run ``spec`` idempotently: skip it if finished, resume it if half-done, else start it.
    Exceptions propagate (``run_grid`` records them); Ctrl-C leaves a resumable ``last.pt``."""
    from ..utils.checkpoint import write_json_atomic
    from ..training import TrainConfig, train
    directory = spec.directory(root)
    claim(directory)  # RunDirectoryBusy if another process (a second reproduce) trains it
    try:
        status = spec_status(spec, root)  # read under the claim: nobody else changes it now
        check_recorded(spec, root)
        if status == "done":
            return RunResult(spec, directory, "skipped",
                             summary=json.loads((directory / "summary.json").read_text()))
        write_json_atomic(spec.describe(), directory / EXPERIMENT_FILE)
        (directory / "error.log").unlink(missing_ok=True)
        tee = _tee(directory / "train.log", log)
        start = time.time()
        if status in ("partial", "shorter"):  # shorter: a prefix of the asked-for run, extended
            summary = train(TrainConfig(), resume=directory, log=tee,
                            epochs=spec.epochs if spec.budget.prefix else None)
            kind = "resumed"
        else:
            summary = train(spec.train_config(root, options), log=tee)
            kind = "trained"
    finally:
        release(directory)
    return RunResult(spec, directory, kind, seconds=time.time() - start, summary=summary)


def run_grid(specs: list[RunSpec], root: str | Path, options: dict[str, Any] | None = None,
             log: Callable[[str], None] = print) -> list[RunResult]:
    """Run every spec in turn; a failure is logged to ``<run>/error.log`` and the grid goes on.
    Ctrl-C stops the grid (the current run saves ``last.pt``; the same command resumes it)."""
    results = []
    for i, spec in enumerate(specs, 1):
        directory = spec.directory(root)
        prefix = f"[{i}/{len(specs)}] {spec.experiment}/{spec.name}"
        status = spec_status(spec, root)
        if status == "done":
            log(f"{prefix}: done, skipped")
        else:
            verb = {"partial": "resuming", "shorter": f"extending to {plural(spec.epochs, 'epoch')}"}
            log(f"{prefix}: {verb.get(status, 'starting')} "
                f"({spec.entry.label}, seed {spec.seed}, budget {spec.budget.tag}, "
                f"{plural(spec.epochs, 'epoch')})")
        try:
            result = run_one(spec, root, options, log)
        except KeyboardInterrupt:
            log(f"{prefix}: interrupted; run the same command again to resume")
            raise
        except RunDirectoryBusy:  # another mgiad reproduce trains it: go on with the next run
            log(f"{prefix}: in use by another process, skipped")
            result = RunResult(spec, directory, "busy")
        except Exception as exc:  # a failed run never stops the others
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "error.log").write_text(traceback.format_exc())
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log(f"{prefix}: FAILED: {message} (traceback in {directory / 'error.log'})")
            result = RunResult(spec, directory, "failed", error=message)
        results.append(result)
    return results


def summarize(results: list[RunResult]) -> str:
    counts = {k: sum(r.status == k for r in results)
              for k in ("trained", "resumed", "skipped", "busy", "failed")}
    text = ", ".join(f"{v} {k}" for k, v in counts.items())
    failed = [f"  {r.spec.experiment}/{r.spec.name}: {r.error}" for r in results if r.status == "failed"]
    return f"{len(results)} runs: {text}" + ("\nfailed:\n" + "\n".join(failed) if failed else "")


def print_plan(specs: list[RunSpec], root: str | Path, out=None) -> None:
    """The ``--dry-run`` listing: one line per run with its status and configuration."""
    out = out or sys.stdout
    print(f"{'status':8} {'run directory':70} model arguments", file=out)
    for spec in specs:
        directory = spec.directory(root)
        args = " ".join(f"{k}={_fmt(v)}" for k, v in spec.entry.model_kwargs().items())
        print(f"{spec_status(spec, root):8} {str(directory):70} {spec.entry.model} {args}", file=out)
        if spec.entry.note:
            print(f"{'':8} note: {spec.entry.note}", file=out)
    budgets = sorted({(s.entry.dataset, s.budget.tag) for s in specs})
    for dataset, tag in budgets:
        recipe = paper_recipe(dataset)
        overrides = next(s.budget.overrides() for s in specs
                         if s.entry.dataset == dataset and s.budget.tag == tag)
        shown = {**recipe, **overrides}
        print(f"budget on {dataset}: {tag} (" + ", ".join(f"{k}={v}" for k, v in shown.items())
              + f"; the recipe's: {recipe['epochs']} epochs)", file=out)
    print(f"{len(specs)} runs", file=out)
