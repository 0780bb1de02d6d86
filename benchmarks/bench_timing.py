"""How the kernel micro-benchmarks time: ours against PyTorch's on the same tensors, in one process,
interleaved (ours, theirs, ours, theirs, ...) so that both see the same machine state."""
import statistics
import time

STATS = {"median": statistics.median, "min": min}


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(ours, theirs, repeats: int, stat=statistics.median) -> tuple[float, float]:
    """``(ours seconds, theirs seconds)``: ``stat`` of ``repeats`` alternate runs of the two
    zero-argument callables, after two warm-up runs of each."""
    for fn in (ours, theirs, ours, theirs):
        fn()
    times = [], []
    for _ in range(repeats):
        times[0].append(seconds(ours))
        times[1].append(seconds(theirs))
    return stat(times[0]), stat(times[1])
