"""Shared by the tests: a tiny MGiaD run on the bundled digits (training and reliability tests),
where the real datasets are, and the scripts of ``benchmarks/``."""
import importlib
import os
import sys
from pathlib import Path

from mgiad.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
# the real datasets (Fashion-MNIST): $MGIAD_DATA_DIR, else ../shared/data beside the checkout
DATA_DIR = Path(os.environ.get("MGIAD_DATA_DIR") or REPO.parent / "shared" / "data")
TINY = dict(widths=(8, 16), coarse_channels=4, group_size=2)  # a fast MGiaD for the loop tests


def tiny_config(out, **kw) -> TrainConfig:
    base = dict(model="mgiad", model_args=dict(TINY), dataset="digits", epochs=3, batch_size=32,
                lr=0.05, out=str(out), progress=False)
    base.update(kw)
    return TrainConfig(**base)


def quiet(*args, **kwargs) -> None:
    pass


def benchmark(name: str):
    """The module of ``benchmarks/<name>.py`` (scripts outside the package)."""
    folder = str(REPO / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)
