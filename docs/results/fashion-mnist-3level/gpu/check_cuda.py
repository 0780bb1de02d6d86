"""Before the GPU runs (run_seeds.sh): for each table-2 model on this device, the float32 loss
gradients of impl="fast" and impl="reference" against a float64 reference from the same weights
(the fast path must be no less accurate), then a training-step time. Exit status 3: it was not."""
import sys
import time

import torch
import torch.nn.functional as F

import mgiad

MODELS = {"resnet20": {}, "mgnet": dict(widths=(16, 32, 64), smoothing_steps=3, transfer_norm=0),
          **{f"mgiad gs{g}": dict(widths=(16, 32, 64), coarse_channels=16, group_size=g)
             for g in (4, 8, 16)}}


def gradient(name, kwargs, impl, state, dtype, x, y):
    """The loss gradient of one model (all parameters, flattened, float64) and the model."""
    args = {} if name == "resnet20" else {"impl": impl}
    model = mgiad.create_model(name, num_classes=10, in_chans=1, **args, **kwargs)
    if state is not None:
        model.load_state_dict(state)
    model.to(x.device, dtype, memory_format=torch.channels_last).train()
    F.cross_entropy(model(x.to(dtype)), y).backward()
    return torch.cat([p.grad.double().flatten() for p in model.parameters()]), model


def main(device: str) -> int:
    """Float32 gradients of impl="fast" and "reference" against a float64 reference (BatchNorm
    makes these gradients ill-conditioned: float32 alone is ~1e-3 off), then a step time."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    ok = True
    for label, kwargs in MODELS.items():
        name = label.split()[0]
        x = torch.randn(128, 1, 28, 28, device=device).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (128,), device=device)
        state = mgiad.create_model(name, num_classes=10, in_chans=1, **kwargs).state_dict()
        exact, _ = gradient(name, kwargs, "reference", state, torch.float64, x, y)
        errors = {}
        for impl in ("fast", "reference"):
            g, model = gradient(name, kwargs, impl, state, torch.float32, x, y)
            errors[impl] = ((g - exact).norm() / exact.norm()).item()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for i in range(25):
            if i == 5:
                torch.cuda.synchronize() if device == "cuda" else None
                t0 = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        torch.cuda.synchronize() if device == "cuda" else None
        ms = (time.perf_counter() - t0) / 20 * 1e3
        print(f"{label:12s} float32 gradient error vs float64: fast {errors['fast']:.1e}, reference "
              f"{errors['reference']:.1e}; step {ms:.1f} ms (~{ms * 469 / 1e3:.0f} s/epoch alone)",
              flush=True)
        ok &= errors["fast"] <= 2 * errors["reference"] + 1e-3
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "cuda"))
