"""Training step with the C++ kernels on and off (MGIAD_KERNELS, read at every call), in both memory
formats, interleaved in one process, medians: MGiaD(3, g_s=4) against ResNet18 (3x32x32, batch 64)
and the 16-32-64 MGiaD (c_K=16, g_s=4) against ResNet20 (1x32x32, batch 128). Ratios are against
the ResNet's best format.

    python benchmarks/kernels_end_to_end.py [REPEATS] [--only small|big]
"""
import os, sys, time, statistics, torch, torch.nn.functional as F, mgiad
from mgiad.utils.malloc import tune_malloc
tune_malloc(); torch.set_num_threads(2)
CL = torch.channels_last


def setup(name, batch, chans, channels_last, **kw):
    torch.manual_seed(0)
    m = mgiad.create_model(name, num_classes=10, in_chans=chans, **kw)
    x = torch.randn(batch, chans, 32, 32); y = torch.randint(0, 10, (batch,))
    if channels_last:
        m, x = m.to(memory_format=CL), x.contiguous(memory_format=CL)
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    def step():
        opt.zero_grad(set_to_none=True); F.cross_entropy(m(x), y).backward(); opt.step()
    return step


big = dict(width_mult=3, coarse_channels=64, group_size=4)
small = dict(widths=(16, 32, 64), coarse_channels=16, group_size=4)
groups = {"big": ("resnet18", 64, 3, big), "small": ("resnet20", 128, 1, small)}
only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
repeats = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 5
cases = []  # (group, label, step, MGIAD_KERNELS)
for group, (resnet, batch, chans, kw) in groups.items():
    if only and group != only:
        continue
    for cl in (False, True):
        fmt = "channels_last" if cl else "NCHW"
        cases.append((group, f"{resnet} {fmt}", setup(resnet, batch, chans, cl), "1"))
        cases.append((group, f"mgiad {fmt}, kernels", setup("mgiad", batch, chans, cl, **kw), "1"))
        cases.append((group, f"mgiad {fmt}, PyTorch", setup("mgiad", batch, chans, cl, **kw), "0"))
times = {c[1] + c[0]: [] for c in cases}
for r in range(repeats + 2):  # 2 warm-up rounds
    for group, label, step, k in cases:
        os.environ["MGIAD_KERNELS"] = k
        t0 = time.perf_counter(); step(); dt = time.perf_counter() - t0
        if r >= 2: times[label + group].append(dt)
for group, (resnet, batch, chans, kw) in groups.items():
    if only and group != only:
        continue
    med = {label: statistics.median(times[label + group]) for g, label, _, _ in cases if g == group}
    base = min(v for k, v in med.items() if k.startswith(resnet))
    print(f"{group}: {resnet} vs mgiad {kw}, batch {batch}, {chans}x32x32, median of {repeats}")
    for label, t in med.items():
        print(f"  {label:30s} {t * 1e3:8.1f} ms  x{t / base:.2f} of {resnet}'s best format")
