"""torch.hub entry points of mgiad: one per model family, and ``pretrained`` for shipped weights.

    import torch
    model = torch.hub.load("path/to/mgiad", "mgiad", source="local", width_mult=3, group_size=8)
    model = torch.hub.load("path/to/mgiad", "pretrained", "mgiad_16_32_64_ck16_gs8.fmnist_paper_e30",
                           source="local")
    model = torch.hub.load("path/to/mgiad", "mgiad", source="local", pretrained=True,
                           tag="fmnist_paper_e30", widths=(16, 32, 64), coarse_channels=16, group_size=8)

Entry points: mgiad, mgnet, mgic, resnet18, resnet20 (each documents its arguments), pretrained.

Keyword arguments are those of ``mgiad.create_model(<family>, ...)`` (see ``mgiad.model_arguments``).
``weights="out/"`` loads a model saved with ``save_pretrained`` or trained with ``mgiad train``
(a run directory or its best.pt) instead of building an untrained one; no weights are downloaded.

Pretrained weights ship inside the package (``mgiad.list_pretrained()``; names
``"<architecture>.<tag>"``, see ``mgiad.models._pretrained``) and load offline, in train mode as
timm's models (call ``.eval()`` to predict; ``weights=`` loads in eval mode):
``pretrained(name, **kwargs)`` is ``mgiad.create_model(name, pretrained=True, **kwargs)``; a family's
entry with ``pretrained=True`` loads the one shipped model of that family whose tag is ``tag`` (if
given) and whose architecture agrees with the keyword arguments given, and says which names match
when none or several do. ``num_classes`` may differ (a new, untrained classifier, as timm does).

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


def _build(family, weights, kwargs, pretrained=False, tag=None):
    if pretrained:
        if weights is not None:
            raise ValueError("pass weights= (a saved model) or pretrained=True (shipped weights), "
                             "not both")
        from importlib import import_module
        name = import_module(_mgiad.__name__ + ".pretrained").resolve_pretrained(family, tag, **kwargs)
        return _mgiad.create_model(name, pretrained=True, **kwargs)
    if tag is not None:
        raise ValueError(f"tag={tag!r} chooses shipped weights: add pretrained=True")
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


def mgiad(weights=None, pretrained=False, tag=None, **kwargs):
    """MGiaD: multigrid in resolution and channels (paper, algorithm 3).

    kwargs: num_classes=10, in_chans=3, stem="cifar", widths=(64, 128, 256, 256), width_mult=1,
    group_size=8, coarse_channels=64, pre_smooth=1, post_smooth=1, prolong_norm=False.
    Paper CIFAR-10 models: width_mult=1, 2, 3 with group_size=8.
    weights: a save_pretrained directory, run directory or best.pt to load instead.
    pretrained=True: the shipped weights of this family (tag= and kwargs choose which).
    """
    return _build("mgiad", weights, kwargs, pretrained, tag)


def mgnet(weights=None, pretrained=False, tag=None, **kwargs):
    """MgNet (He & Xu 2019) with FAS transfers.

    kwargs: num_classes=10, in_chans=3, stem="cifar", widths=(64, 128, 256, 256),
    smoothing_steps=2, share="AB" (or "A"), width_mult=1, group_size=None.
    weights: a save_pretrained directory, run directory or best.pt to load instead.
    pretrained=True: the shipped weights of this family (tag= and kwargs choose which).
    """
    return _build("mgnet", weights, kwargs, pretrained, tag)


def mgic(weights=None, pretrained=False, tag=None, **kwargs):
    """MGIC (multigrid in channels) baseline.

    kwargs: num_classes=10, in_chans=3, stem="cifar", widths=(64, 128, 256, 256), blocks=2,
    width_mult=1, group_size=8, coarse_channels=64.
    weights: a save_pretrained directory, run directory or best.pt to load instead.
    pretrained=True: the shipped weights of this family (tag= and kwargs choose which).
    """
    return _build("mgic", weights, kwargs, pretrained, tag)


def resnet18(weights=None, pretrained=False, tag=None, **kwargs):
    """ResNet18 (widths 64-512, two basic blocks per level).

    kwargs: num_classes=10, in_chans=3, stem="cifar", width_mult=1.
    weights: a save_pretrained directory, run directory or best.pt to load instead.
    pretrained=True: the shipped weights of this family (tag= and kwargs choose which).
    """
    return _build("resnet18", weights, kwargs, pretrained, tag)


def resnet20(weights=None, pretrained=False, tag=None, **kwargs):
    """ResNet20 (widths 16-64, three basic blocks per level).

    kwargs: num_classes=10, in_chans=3, stem="cifar", width_mult=1.
    weights: a save_pretrained directory, run directory or best.pt to load instead.
    pretrained=True: the shipped weights of this family (tag= and kwargs choose which).
    """
    return _build("resnet20", weights, kwargs, pretrained, tag)


def pretrained(name, **kwargs):
    """A model with the weights shipped in mgiad: ``mgiad.create_model(name, pretrained=True)``.

    name: one of ``mgiad.list_pretrained()``, e.g. "mgiad_16_32_64_ck16_gs8.fmnist_paper_e30".
    kwargs: num_classes (another one: a new classifier), impl, recompute; others must agree with
    the recorded architecture. The model has ``pretrained_cfg`` and ``preprocessing``.
    """
    return _mgiad.create_model(name, pretrained=True, **kwargs)
