"""A tiny MGiaD run on the bundled digits, shared by the training and reliability tests."""
from mgiad.train import TrainConfig

TINY = dict(widths=(8, 16), coarse_channels=4, group_size=2)  # a fast MGiaD for the loop tests


def tiny_config(out, **kw) -> TrainConfig:
    base = dict(model="mgiad", model_args=dict(TINY), dataset="digits", epochs=3, batch_size=32,
                lr=0.05, out=str(out), progress=False)
    base.update(kw)
    return TrainConfig(**base)


def quiet(*args, **kwargs) -> None:
    pass
