"""Datasets of the MGiaD paper (Fashion-MNIST, CIFAR-10/100, Tiny ImageNet, ImageNet) plus
the bundled 8x8 digits as an offline default, behind one loader factory::

    from mgiad.data import build_loaders, dataset_info
    train, test = build_loaders("cifar10", "data", batch_size=128, device="cuda", download=True)
    for epoch in range(epochs):
        train.set_epoch(epoch)
        for x, y in train: ...

Every user-facing problem (unknown name, missing or corrupt files, bad checksum) raises
:class:`DatasetError` with a message that says what to do. Fetching and safe extraction live in
:mod:`mgiad.data.download` (``download(name, data_dir, mirror=...)``); tiny fake datasets in the
original formats, for tests, in :mod:`mgiad.data.synthetic`.
"""
from .info import DATASETS, DatasetError, DatasetInfo, dataset_info, default_data_dir
from .loaders import build_loaders

__all__ = ["DATASETS", "DatasetInfo", "DatasetError", "build_loaders", "dataset_info", "default_data_dir"]
