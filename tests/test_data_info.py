"""Registry, argument checking and the bundled digits dataset."""
import dataclasses
import sys

import numpy as np
import pytest
import torch

from mgiad.data import DATASETS, DatasetError, DatasetInfo, build_loaders, dataset_info
from mgiad.data.digits import load_digits_split


def test_registry_names_and_facts():
    assert list(DATASETS) == ["digits", "fashion-mnist", "cifar10", "cifar100", "tiny-imagenet", "imagenet",
                             "folder"]
    info = dataset_info("cifar10")
    assert isinstance(info, DatasetInfo) and info.num_classes == 10 and info.in_chans == 3
    assert info.image_size == 32 and info.mean == (0.4914, 0.4822, 0.4465) and info.in_memory
    assert dataset_info("cifar100").num_classes == 100
    assert dataset_info("fashion-mnist").image_size == 32 and dataset_info("fashion-mnist").in_chans == 1
    assert dataset_info("tiny-imagenet").image_size == 64 and dataset_info("tiny-imagenet").num_classes == 200
    img = dataset_info("imagenet")
    assert (img.image_size, img.num_classes, img.in_memory) == (224, 1000, False)
    for name, i in DATASETS.items():
        assert i.name == name and len(i.mean) == len(i.std) == i.in_chans
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.num_classes = 3


def test_aliases_and_unknown_name():
    assert dataset_info("CIFAR_10") is DATASETS["cifar10"]
    assert dataset_info("FashionMNIST") is DATASETS["fashion-mnist"]
    with pytest.raises(DatasetError) as e:
        dataset_info("mnist")
    assert isinstance(e.value, ValueError)
    for name in DATASETS:
        assert name in str(e.value)
    with pytest.raises(DatasetError, match="valid names"):
        build_loaders("svhn", batch_size=4)


@pytest.mark.parametrize("kw, word", [(dict(batch_size=0), "batch_size"), (dict(batch_size=2.5), "batch_size"),
                                      (dict(batch_size=4, rank=2, world_size=2), "rank"),
                                      (dict(batch_size=4, world_size=0), "world_size")])
def test_bad_arguments(kw, word):
    with pytest.raises(ValueError, match=word):
        build_loaders("digits", **kw)


def test_batch_larger_than_shard_is_an_error_only_for_training():
    train, test = build_loaders("digits", batch_size=1000, world_size=2)
    assert len(train) == 0 and len(test) == 1 and len(next(iter(test))[1]) == 180  # eval still works
    with pytest.raises(DatasetError, match="batch_size=1000"):
        next(iter(train))
    train, _ = build_loaders("digits", batch_size=1000, world_size=2, drop_last=False)
    assert len(train) == 1


def test_digits_split_is_fixed_and_stratified():
    a, b = load_digits_split(), load_digits_split()
    (xtr, ytr), (xte, yte) = a["train"], a["test"]
    assert xtr.shape == (1437, 1, 32, 32) and xte.shape == (360, 1, 32, 32)
    assert xtr.dtype == torch.uint8 and ytr.dtype == torch.int64
    assert torch.equal(xte, b["test"][0]) and torch.equal(ytr, b["train"][1])
    counts = torch.bincount(yte, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    assert xtr.max() == 255 and xtr.min() == 0
    # the split does not depend on the user seed
    t0, _ = build_loaders("digits", batch_size=360, seed=0, augment=False)
    _, e1 = build_loaders("digits", batch_size=360, seed=5)
    assert t0.dataset_size == 1437 and e1.dataset_size == 360
    assert torch.equal(next(iter(e1))[1], yte)


def test_digits_normalisation_matches_hardcoded_stats():
    train, _ = build_loaders("digits", batch_size=1437, augment=False)
    x, y = next(iter(train))
    assert x.dtype == torch.float32 and x.shape == (1437, 1, 32, 32) and y.dtype == torch.int64
    assert abs(x.mean().item()) < 2e-3 and abs(x.std().item() - 1) < 2e-3


def test_digits_ship_with_the_package_and_need_no_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    train, test = build_loaders("digits", batch_size=4)
    assert (train.dataset_size, test.dataset_size) == (1437, 360)
    counts = torch.bincount(test.y).tolist()  # the fixed split: each class its proportional share
    assert sum(counts) == 360 and all(35 <= c <= 37 for c in counts), counts


def test_digits_file_that_is_not_ours_is_a_clear_error(monkeypatch, tmp_path):
    from mgiad.data import digits
    bad = tmp_path / "digits.npz"
    np.savez_compressed(bad, images=np.zeros((1797, 8, 8), np.uint8), labels=np.zeros(1797, np.uint8))
    monkeypatch.setattr(digits, "DIGITS_FILE", bad)
    with pytest.raises(DatasetError, match="not the one mgiad ships"):
        digits.load_digits_split()
    bad.write_bytes(b"truncated")
    with pytest.raises(DatasetError, match="cannot be read"):
        digits.load_digits_split()
