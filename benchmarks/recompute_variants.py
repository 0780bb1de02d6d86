"""Segmentation variants of recompute="step" for MGiaD(3, g_s=4, c_K=64), batch 64, 32x32:
peak live tensor memory and training step time, in one process, interleaved, medians.

    python benchmarks/recompute_variants.py [REPEATS]

Each variant turns the level segments and the channel-level correction segments of "step" on or
off (per resolution level) by wrapping the ``recomputed`` that the models' segments call (``mgiad.layers.dispatch``); the smoothing steps,
restrictions and stem are recomputed in every "step" variant. Memory is counted by a
dispatch-mode tracker of live tensor storages during one forward and backward (no optimiser
state, no allocator overhead), so it reads a little lower than ``mgiad bench``'s malloc peak.
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import mgiad
import mgiad.layers.recompute as recompute_module
import mgiad.models.mgiad as sic_module
from mgiad.perf.memory import LiveTensorPeak
from mgiad.utils.malloc import tune_malloc

recomputed = recompute_module.recomputed

ALL, NONE, NOT_FIRST, FIRST = (lambda l: True), (lambda l: False), (lambda l: l > 0), (lambda l: l == 0)
VARIANTS = {  # name: (recompute, level segments on level l?, correction segments on level l?)
    "False": (False, ALL, ALL),
    "level": ("level", ALL, ALL),
    "step: steps only": ("step", NONE, NONE),
    "step: + corrections": ("step", NONE, ALL),
    "step: + levels": ("step", ALL, NONE),
    "step: + levels 2-4, all corrections": ("step", NOT_FIRST, ALL),
    "step: + levels 2-4, corrections on level 1": ("step", NOT_FIRST, FIRST),
    "step (levels and corrections: the shipped one)": ("step", ALL, ALL),
}


state, level_of = {}, {}


def segment(module, *inputs, fn=None):
    """The models' segments (mgiad.layers.dispatch.segment) through this, for the variants."""
    name = getattr(getattr(fn, "func", None), "__name__", "")
    if name == "smooth" and isinstance(module, sic_module.SiC) and \
            not state["levels"](level_of[id(module)]):
        return fn(*inputs)
    if name == "correct" and not state["corrections"](level_of[id(fn.args[0])]):
        return fn(*inputs)
    return recomputed(module, *inputs, fn=fn)


def main(repeats: int) -> None:
    tune_malloc()
    torch.set_num_threads(2)
    recompute_module.recomputed = segment
    torch.manual_seed(0)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    models = {}
    for name, (mode, levels, corrections) in VARIANTS.items():
        model = mgiad.create_model("mgiad", num_classes=10, width_mult=3, coarse_channels=64,
                                   group_size=4, recompute=mode)
        for l, smoother in enumerate(model.smoothers):
            level_of.update({id(m): l for m in smoother.modules() if isinstance(m, sic_module.SiC)})
        models[name] = (model, levels, corrections,
                        torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9))

    def step(name, tracker=None):
        model, levels, corrections, opt = models[name]
        state.update(levels=levels, corrections=corrections)
        opt.zero_grad(set_to_none=True)
        if tracker is None:
            F.cross_entropy(model(x), y).backward()
            opt.step()
            return None
        with tracker:
            F.cross_entropy(model(x), y).backward()
        return tracker.peak

    peaks = {name: step(name, LiveTensorPeak()) for name in models}
    times = {name: [] for name in models}
    for r in range(repeats + 1):  # round 0 warms up
        for name in models:
            t0 = time.perf_counter()
            step(name)
            if r:
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["False"])
    print("| recompute | peak live tensors MB | train step ms | x False |\n|---|---:|---:|---:|")
    for name in models:
        t = statistics.median(times[name])
        print(f"| {name} | {peaks[name] / 1e6:.0f} | {t * 1e3:.0f} | {t / base:.2f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
