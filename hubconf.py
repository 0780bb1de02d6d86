"""torch.hub entry points of mgiad: one per model family.

    import torch
    model = torch.hub.load("path/to/mgiad", "mgiad", source="local", width_mult=3, group_size=8)

Entry points: mgiad, mgnet, mgic, resnet18, resnet20 (each documents its arguments).

Keyword arguments are those of ``mgiad.create_model(<family>, ...)`` (see ``mgiad.model_arguments``).
``weights="out/"`` loads a model saved with ``save_pretrained`` or trained with ``mgiad train``
(a run directory or its best.pt) instead of building an untrained one; no weights are downloaded.

The package is imported from this repository's ``src/`` (a fresh clone needs no install; an
installed mgiad of another version is not mixed in), falling back to an installed mgiad.
"""
import os as _os
import sys as _sys

dependencies = ["torch"]


def _import_mgiad():
    if "mgiad" in _sys.modules:  # already imported in this process: use that one
        return _sys.modules["mgiad"]
    src = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "src")
    if not _os.path.isfile(_os.path.join(src, "mgiad", "__init__.py")):
        import mgiad as package  # no src/ next to this file: an installed mgiad
        return package
    _sys.path.insert(0, src)
    try:
        import mgiad as package
    finally:  # the package knows its own folder from now on; leave sys.path as it was
        try:
            _sys.path.remove(src)
        except ValueError:
            pass
    return package


_mgiad = _import_mgiad()


def _build(family, weights, kwargs):
    if weights is None:
        return _mgiad.create_model(family, **kwargs)
    if kwargs:
        raise ValueError(f"weights={weights!r} brings its own configuration; drop the other "
                         f"arguments ({', '.join(sorted(kwargs))})")
    model = _mgiad.from_pretrained(weights)
    if model.config.get("model") != family:
        raise ValueError(f"{weights} holds a {model.config.get('model')!r} model, not {family!r}; "
                         f"load it with torch.hub.load(..., {model.config.get('model')!r}, ...)")
    return model


def mgiad(weights=None, **kwargs):
    """MGiaD: multigrid in resolution and channels (paper, algorithm 3).

    kwargs: num_classes=10, in_chans=3, stem="cifar", widths=(64, 128, 256, 256), width_mult=1,
    group_size=8, coarse_channels=64, pre_smooth=1, post_smooth=1, prolong_norm=False.
    Paper CIFAR-10 models: width_mult=1, 2, 3 with group_size=8.
    weights: a save_pretrained directory, run directory or best.pt to load instead.
    """
    return _build("mgiad", weights, kwargs)


def mgnet(weights=None, **kwargs):
    """MgNet (He & Xu 2019) with FAS transfers.

    kwargs: num_classes=10, in_chans=3, stem="cifar", widths=(64, 128, 256, 256),
    smoothing_steps=2, share="AB" (or "A"), width_mult=1, group_size=None.
    weights: a save_pretrained directory, run directory or best.pt to load instead.
    """
    return _build("mgnet", weights, kwargs)


def mgic(weights=None, **kwargs):
    """MGIC (multigrid in channels) baseline.

    kwargs: num_classes=10, in_chans=3, stem="cifar", widths=(64, 128, 256, 256), blocks=2,
    width_mult=1, group_size=8, coarse_channels=64.
    weights: a save_pretrained directory, run directory or best.pt to load instead.
    """
    return _build("mgic", weights, kwargs)


def resnet18(weights=None, **kwargs):
    """ResNet18 (widths 64-512, two basic blocks per level).

    kwargs: num_classes=10, in_chans=3, stem="cifar", width_mult=1.
    weights: a save_pretrained directory, run directory or best.pt to load instead.
    """
    return _build("resnet18", weights, kwargs)


def resnet20(weights=None, **kwargs):
    """ResNet20 (widths 16-64, three basic blocks per level).

    kwargs: num_classes=10, in_chans=3, stem="cifar", width_mult=1.
    weights: a save_pretrained directory, run directory or best.pt to load instead.
    """
    return _build("resnet20", weights, kwargs)
