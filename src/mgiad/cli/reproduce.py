"""``mgiad reproduce``: run the paper's experiment grids (resumable)."""
from __future__ import annotations

import argparse

HELP = "run a table or figure of the paper (resumable grid of runs)"
DESCRIPTION = """\
Train every run of one of the paper's experiments: each configuration (a table row, or a point
of figure 7's CIFAR-10 grid) on each of its datasets, for each seed. Runs go to
RUNS/<experiment>/<dataset>-<configuration>-<budget>-s<seed>: finished runs are skipped,
half-done runs resume from last.pt, a failed run is reported and the others go on (exit status 1 at
the end). Table 2's mislabelled rows train the configuration their reported weights belong to
(see `mgiad count --paper`)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_argument_group("experiment (one of)")
    what.add_argument("--table", choices=["1", "2", "3"], default=None,
                      help="1: CIFAR-10 cost; 2: Fashion-MNIST c_K, g_s; 3: CIFAR-100, Tiny "
                      "ImageNet, ImageNet")
    what.add_argument("--figure", choices=["7"], default=None,
                      help="7: the CIFAR-10 accuracy-vs-weights grid (ResNet, MgNet, MGIC, MGiaD)")
    what.add_argument("--experiment", default=None, help="by name: table1, table2, table3, fig7")
    sel = p.add_argument_group("selection")
    sel.add_argument("--dataset", default=None,
                     help="only this dataset of the experiment (table 3 has three)")
    sel.add_argument("--levels", type=int, default=None,
                     help="only networks with this many resolution levels (table 2, --levels 3: "
                     "ResNet20, MgNet 16-32-64, MGiaD c_K=16 g_s=4, 8, 16)")
    sel.add_argument("--row", action="append", default=None, metavar="TEXT",
                     help="only configurations whose label or run name contains TEXT (repeatable)")
    sel.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per configuration (paper: 3)")
    sel.add_argument("--shard", default=None, metavar="I/N",
                     help="run only shard I of N (0 <= I < N): every N-th run of the plan")
    r = p.add_argument_group("budget (default: the paper's recipe; overrides name the run "
                             "directories and are labelled in the report)")
    r.add_argument("--epochs", type=int, default=None, help="epochs (paper: 400)")
    r.add_argument("--batch-size", type=int, default=None, help="batch (paper: 128; ImageNet 512)")
    r.add_argument("--lr", type=float, default=None, help="initial learning rate (paper: 0.05)")
    r.add_argument("--schedule", default=None, choices=["cosine", "step", "constant"],
                   help="learning-rate schedule (paper: cosine; Fashion-MNIST: step)")
    r.add_argument("--step-size", type=int, default=None,
                   help="'step': epochs between x0.1 decays (paper: 25)")
    e = p.add_argument_group("execution")
    e.add_argument("--runs", default="runs", help="root folder of the runs (default: runs)")
    e.add_argument("--data-dir", default=None,
                   help="folder holding the datasets (default: $MGIAD_DATA_DIR or ./.data)")
    e.add_argument("--download", action="store_true", default=None,
                   help="fetch missing datasets from their official source")
    e.add_argument("--device", default=None, help="'auto' (default), 'cpu', 'cuda'")
    e.add_argument("--workers", type=int, default=None, help="data-loading processes (ImageNet)")
    e.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: off: float32, with TF32 off on CUDA, as the paper "
                   "states no mixed precision)")
    e.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on for CUDA)")
    e.add_argument("--compile", action="store_true", default=None, help="torch.compile each model")
    e.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when the terminal is interactive)")
    e.add_argument("--dry-run", action="store_true", help="print the runs (and their status) only")
    e.add_argument("--launcher", choices=["local", "slurm"], default="local",
                   help="local: run here, one after another; slurm: submit one job per unfinished "
                   "run with submitit (from a clone: pip install -c constraints.txt -e \".[slurm]\")")
    s = p.add_argument_group("slurm (with --launcher slurm)")
    s.add_argument("--slurm-partition", default=None, help="partition")
    s.add_argument("--slurm-time", type=int, default=24 * 60, help="minutes per job (default: 1440)")
    s.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per job (default: 1)")
    s.add_argument("--slurm-cpus", type=int, default=8, help="CPUs per job (default: 8)")
    s.add_argument("--slurm-mem-gb", type=int, default=None, help="memory per job")
    s.add_argument("--slurm-parallel", type=int, default=None, help="jobs running at once")


def run(args: argparse.Namespace) -> int:
    from .. import experiments as ex
    names = [n for n in (args.table and f"table{args.table}", args.figure and f"fig{args.figure}",
                         args.experiment) if n]
    if len(names) != 1:
        raise ValueError("choose one experiment: --table 1|2|3, --figure 7 or --experiment NAME")
    experiment = ex.get_experiment(names[0])
    dataset = None
    if args.dataset is not None:
        from ..data.info import canonical_name
        dataset = canonical_name(args.dataset)
    budget = ex.Budget(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       schedule=args.schedule, step_size=args.step_size)
    specs = ex.plan(experiment, args.seeds, budget, dataset, args.levels, args.row or ())
    total = len(specs)
    if args.shard is not None:  # an empty --shard is an error, not the whole grid
        index, count = ex.parse_shard(args.shard)
        specs = ex.shard(specs, index, count)
        print(f"shard {index}/{count}: {len(specs)} of {total} runs")
    options = {k: getattr(args, k) for k in ex.RUN_OPTIONS}
    if args.dry_run:
        ex.print_plan(specs, args.runs)
        return 0
    if args.launcher == "slurm":
        slurm = {"timeout_min": args.slurm_time, "slurm_partition": args.slurm_partition,
                 "gpus_per_node": args.slurm_gpus, "cpus_per_task": args.slurm_cpus,
                 "mem_gb": args.slurm_mem_gb, "slurm_array_parallelism": args.slurm_parallel}
        ex.submit_slurm(specs, args.runs, options, slurm)
        return 0
    from ..training import shutdown_distributed
    try:
        results = ex.run_grid(specs, args.runs, options)
    finally:
        shutdown_distributed()
    print(ex.summarize(results))
    print(f"tables and figures: mgiad report {args.runs} --out report")
    return 1 if any(r.status == "failed" for r in results) else 0
