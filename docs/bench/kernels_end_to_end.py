"""Training step with the C++ kernels on and off (MGIAD_KERNELS, read at every call), interleaved
in one process, medians: MGiaD(3, g_s=4) against ResNet18 (3x32x32, batch 64) and the 16-32-64
MGiaD (c_K=16, g_s=4) against ResNet20 (1x32x32, batch 128).

    python docs/bench/kernels_end_to_end.py [REPEATS]
"""
import os, sys, time, statistics, torch, torch.nn.functional as F, mgiad
from mgiad.fast import tune_malloc
tune_malloc(); torch.set_num_threads(2)
def setup(name, batch, chans, **kw):
    torch.manual_seed(0)
    m = mgiad.create_model(name, num_classes=10, in_chans=chans, **kw)
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, chans, 32, 32); y = torch.randint(0, 10, (batch,))
    def step():
        opt.zero_grad(set_to_none=True); F.cross_entropy(m(x), y).backward(); opt.step()
    return step
big = dict(width_mult=3, coarse_channels=64, group_size=4)
small = dict(widths=(16, 32, 64), coarse_channels=16, group_size=4)
cases = [("resnet18", setup("resnet18", 64, 3), "1"), ("mgiad3 g4, kernels", setup("mgiad", 64, 3, **big), "1"),
         ("mgiad3 g4, oneDNN", setup("mgiad", 64, 3, **big), "0"),
         ("resnet20 1ch b128", setup("resnet20", 128, 1), "1"), ("mgiad 16-32-64 cK16 g4, kernels", setup("mgiad", 128, 1, **small), "1"),
         ("mgiad 16-32-64 cK16 g4, oneDNN", setup("mgiad", 128, 1, **small), "0")]
times = {c[0]: [] for c in cases}
for r in range((int(sys.argv[1]) if len(sys.argv) > 1 else 5) + 2):  # 2 warm-up rounds
    for name, step, k in cases:
        os.environ["MGIAD_KERNELS"] = k
        t0 = time.perf_counter(); step(); dt = time.perf_counter() - t0
        if r >= 2: times[name].append(dt)
med = {n: statistics.median(t) for n, t in times.items()}
for n in med:
    base = med["resnet18"] if "3" in n.split()[0] or n == "resnet18" else med["resnet20 1ch b128"]
    print(f"{n:34s} {med[n]*1e3:8.1f} ms  x{med[n]/base:.2f} of its ResNet")
