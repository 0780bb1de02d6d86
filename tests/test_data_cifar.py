"""CIFAR-10/100 from small tarballs in the original pickle layout, and the restricted unpickler."""
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from mgiad.data import DatasetError, build_loaders
from mgiad.data.cifar import load_cifar
from mgiad.data.download import MD5
from mgiad.data.synthetic import write_cifar_tarball


@pytest.fixture(autouse=True)
def small_synthetic_files(monkeypatch):
    """These tests use small files in the datasets' original formats, not the real datasets: the
    split-size and checksum verification (tests/test_data_verify.py) is off here."""
    monkeypatch.setenv("MGIAD_VERIFY_DATA", "0")


ARCHIVE = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


@pytest.mark.parametrize("py2", [True, False], ids=["py2-pickle", "py3-protocol2"])
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_tarball_loads_exactly(tmp_path, name, py2):
    written = write_cifar_tarball(tmp_path / ARCHIVE[name], name, n_per_batch=3, n_test=5, py2=py2)
    data = load_cifar(name, tmp_path)
    assert (tmp_path / FOLDER[name]).is_dir()  # extracted once next to the tarball
    for split in ("train", "test"):
        x, y = data[split]
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert torch.equal(x, torch.from_numpy(written[split][0]))
        assert torch.equal(y, torch.from_numpy(written[split][1]))
    assert len(data["train"][0]) == (15 if name == "cifar10" else 3)
    # the extracted folder alone is enough afterwards
    (tmp_path / ARCHIVE[name]).unlink()
    assert torch.equal(load_cifar(name, tmp_path)["test"][0], data["test"][0])


def test_planar_layout_gives_rgb(tmp_path):
    write_cifar_tarball(tmp_path / ARCHIVE["cifar10"], "cifar10", n_per_batch=2, n_test=3)
    with tarfile.open(tmp_path / ARCHIVE["cifar10"]) as tf:
        raw = pickle.load(tf.extractfile("cifar-10-batches-py/test_batch"), encoding="bytes")[b"data"]
    x = load_cifar("cifar10", tmp_path)["test"][0]
    # each row: 1024 red, 1024 green, 1024 blue values, each 32x32 row-major
    for i in range(3):
        assert x[i, 0, 0, 0] == raw[i, 0] and x[i, 0, 0, 1] == raw[i, 1] and x[i, 0, 1, 0] == raw[i, 32]
        assert x[i, 1, 0, 0] == raw[i, 1024] and x[i, 2, 0, 0] == raw[i, 2048] and x[i, 2, 31, 31] == raw[i, 3071]


def test_loader_normalises_with_cifar_stats(tmp_path):
    written = write_cifar_tarball(tmp_path / "cifar-10" / ARCHIVE["cifar10"], "cifar10", n_per_batch=2, n_test=3)
    train, test = build_loaders("cifar10", tmp_path, batch_size=4)
    assert (train.dataset_size, test.dataset_size, len(train), len(test)) == (10, 3, 2, 1)
    x, y = next(iter(test))
    mean = torch.tensor(test.info.mean).view(1, 3, 1, 1)
    std = torch.tensor(test.info.std).view(1, 3, 1, 1)
    assert torch.equal(torch.round((x * std + mean) * 255), torch.from_numpy(written["test"][0]).float())
    assert torch.equal(y, torch.from_numpy(written["test"][1]))
    xb, yb = next(iter(train))
    assert xb.shape == (4, 3, 32, 32) and yb.dtype == torch.int64


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_disallowed_global_is_refused(tmp_path):
    write_cifar_tarball(tmp_path / ARCHIVE["cifar10"], "cifar10", n_per_batch=1, n_test=1)
    load_cifar("cifar10", tmp_path)
    marker = tmp_path / "pwned"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_Evil(marker)]}
    (tmp_path / FOLDER["cifar10"] / "data_batch_3").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DatasetError, match="system") as e:
        load_cifar("cifar10", tmp_path)
    assert "data_batch_3" in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    {b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]},
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]},
    {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},
    [1, 2, 3],
])
def test_malformed_batches(tmp_path, payload):
    write_cifar_tarball(tmp_path / ARCHIVE["cifar10"], "cifar10", n_per_batch=1, n_test=1)
    load_cifar("cifar10", tmp_path)
    (tmp_path / FOLDER["cifar10"] / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DatasetError, match="test_batch"):
        load_cifar("cifar10", tmp_path)


def test_truncated_pickle(tmp_path):
    write_cifar_tarball(tmp_path / ARCHIVE["cifar100"], "cifar100", n_per_batch=2, n_test=2)
    load_cifar("cifar100", tmp_path)
    p = tmp_path / FOLDER["cifar100"] / "train"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(DatasetError, match="train"):
        load_cifar("cifar100", tmp_path)


def test_corrupt_tarball_leaves_nothing(tmp_path):
    write_cifar_tarball(tmp_path / "tmp.tar.gz", "cifar10", n_per_batch=1, n_test=1)
    data = (tmp_path / "tmp.tar.gz").read_bytes()
    (tmp_path / "tmp.tar.gz").unlink()
    (tmp_path / ARCHIVE["cifar10"]).write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=MD5[ARCHIVE["cifar10"]]):
        load_cifar("cifar10", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ARCHIVE["cifar10"]]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_dataset_message(tmp_path, name):
    with pytest.raises(DatasetError) as e:
        build_loaders(name, tmp_path, batch_size=2)
    msg = str(e.value)
    assert str(tmp_path.resolve()) in msg and ARCHIVE[name] in msg and MD5[ARCHIVE[name]] in msg
    assert FOLDER[name] in msg and "--download" in msg


def test_incomplete_folder_next_to_tarball(tmp_path):
    write_cifar_tarball(tmp_path / ARCHIVE["cifar10"], "cifar10", n_per_batch=1, n_test=1)
    (tmp_path / FOLDER["cifar10"]).mkdir()
    (tmp_path / FOLDER["cifar10"] / "data_batch_1").write_bytes(b"partial")
    with pytest.raises(DatasetError, match="incomplete"):
        load_cifar("cifar10", tmp_path)
