"""Fashion-MNIST: IDX gz parsing, folder layouts, the real files, and corrupt input."""
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from mgiad.data import DatasetError, build_loaders
from mgiad.data.download import MD5
from mgiad.data.idx import load_fashion_mnist, read_idx
from mgiad.data.synthetic import write_fashion_mnist, write_idx_gz
from train_helpers import DATA_DIR


@pytest.fixture(autouse=True)
def small_synthetic_files(monkeypatch):
    """These tests use small files in the datasets' original formats, not the real datasets: the
    split-size and checksum verification (tests/test_data_verify.py) is off here."""
    monkeypatch.setenv("MGIAD_VERIFY_DATA", "0")


REAL = DATA_DIR / "fashion-mnist"


@pytest.mark.parametrize("sub", [".", "fashion-mnist", "FashionMNIST/raw"])
def test_small_files_load_exactly(tmp_path, sub):
    written = write_fashion_mnist(tmp_path / sub, n_train=12, n_test=7)
    data = load_fashion_mnist(tmp_path)
    for split in ("train", "test"):
        x, y = data[split]
        xw, yw = written[split]
        assert x.dtype == torch.uint8 and x.shape == (len(xw), 1, 32, 32)
        assert torch.equal(x[:, 0, 2:30, 2:30], torch.from_numpy(xw))
        assert x[:, :, :2].sum() == 0 and x[:, :, 30:].sum() == 0 and x[..., :2].sum() == 0 and x[..., 30:].sum() == 0
        assert torch.equal(y, torch.from_numpy(yw).long())


def test_loader_yields_normalised_known_pixels(tmp_path):
    written = write_fashion_mnist(tmp_path, n_train=12, n_test=7)
    train, test = build_loaders("fashion-mnist", tmp_path, batch_size=4, augment=False, drop_last=False)
    assert (len(train), len(test), train.dataset_size, test.dataset_size) == (3, 2, 12, 7)
    xs, ys = zip(*test)
    x, y = torch.cat(xs), torch.cat(ys)
    mean, std = test.info.mean[0], test.info.std[0]
    pixels = torch.round((x * std + mean) * 255)
    assert torch.equal(pixels[:, 0, 2:30, 2:30], torch.from_numpy(written["test"][0]).float())
    assert torch.equal(y, torch.from_numpy(written["test"][1]).long())
    xs, ys = zip(*train)  # training order = train.indices()
    idx = train.indices()
    assert torch.equal(torch.cat(ys), torch.from_numpy(written["train"][1]).long()[idx])


def _training_pixels(loader):
    xs, _ = zip(*loader)
    return torch.round((torch.cat(xs) * loader.info.std[0] + loader.info.mean[0]) * 255)


@pytest.mark.parametrize("augment", [None, False])
def test_fashion_mnist_trains_on_plain_images_by_default(tmp_path, augment):
    """The paper's recipe: no augmentation for Fashion-MNIST (None = the dataset's default)."""
    written = write_fashion_mnist(tmp_path, n_train=40, n_test=4)
    train, _ = build_loaders("fashion-mnist", tmp_path, batch_size=8, augment=augment)
    assert train.augment is None
    pixels = _training_pixels(train)
    expected = torch.from_numpy(written["train"][0]).float()[train.indices()[:len(pixels)]]
    assert torch.equal(pixels[:, 0, 2:30, 2:30], expected)


def test_fashion_mnist_augments_when_asked(tmp_path):
    written = write_fashion_mnist(tmp_path, n_train=40, n_test=4)
    train, _ = build_loaders("fashion-mnist", tmp_path, batch_size=8, augment=True)
    pixels = _training_pixels(train)
    expected = torch.from_numpy(written["train"][0]).float()[train.indices()[:len(pixels)]]
    assert not torch.equal(pixels[:, 0, 2:30, 2:30], expected)  # crops shift images


def test_train_cli_augment_flags_override_the_dataset_default():
    from mgiad.cli import build_parser
    from mgiad.cli.train import _train_config
    from mgiad.train import resolve_config
    parser = build_parser()
    for argv, expected in ((["train", "--dataset", "fashion-mnist"], False),
                           (["train", "--dataset", "fashion-mnist", "--augment"], True),
                           (["train", "--dataset", "cifar10"], True),
                           (["train", "--dataset", "cifar10", "--no-augment"], False)):
        assert resolve_config(_train_config(parser.parse_args(argv))).augment is expected, argv


def test_uncompressed_files_are_accepted(tmp_path):
    written = write_fashion_mnist(tmp_path / "g", n_train=3, n_test=2)
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in (tmp_path / "g").iterdir():
        (raw / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    assert torch.equal(load_fashion_mnist(raw)["test"][1], torch.from_numpy(written["test"][1]).long())


@pytest.mark.skipif(not REAL.is_dir(), reason="shared Fashion-MNIST not present")
def test_real_fashion_mnist():
    data = load_fashion_mnist(REAL.parent)  # found in <data_dir>/fashion-mnist
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    assert xtr.shape == (60000, 1, 32, 32) and xte.shape == (10000, 1, 32, 32)
    assert int(ytr.min()) == 0 and int(ytr.max()) == 9
    assert torch.bincount(ytr).tolist() == [6000] * 10 and torch.bincount(yte).tolist() == [1000] * 10
    assert xtr[:, :, :2].sum() == 0 and xtr.max() == 255
    # the hard-coded statistics are those of the padded training set
    x = xtr.double() / 255
    assert abs(x.mean().item() - 0.2190) < 1e-4 and abs(x.std().item() - 0.3318) < 1e-4


def _corrupt(tmp_path, how):
    write_fashion_mnist(tmp_path, n_train=5, n_test=3)
    target = tmp_path / "train-images-idx3-ubyte.gz"
    if how == "truncated-gz":
        target.write_bytes(target.read_bytes()[:-20])
    elif how == "truncated-payload":
        write_idx_gz(target, np.zeros((4, 28, 28), np.uint8), 2051)
        target.write_bytes(gzip.compress(gzip.decompress(target.read_bytes())[:-10]))
    elif how == "wrong-magic":
        write_idx_gz(target, np.zeros((5, 28, 28), np.uint8), 2049)
    elif how == "not-gzip":
        target.write_bytes(b"this is not a gzip file at all")
    return target


@pytest.mark.parametrize("how", ["truncated-gz", "truncated-payload", "wrong-magic", "not-gzip"])
def test_corrupt_files_raise_with_md5(tmp_path, how):
    target = _corrupt(tmp_path, how)
    with pytest.raises(DatasetError) as e:
        build_loaders("fashion-mnist", tmp_path, batch_size=2)
    msg = str(e.value)
    assert target.name in msg and MD5[target.name] in msg


def test_read_idx_rejects_label_count_mismatch(tmp_path):
    write_fashion_mnist(tmp_path, n_train=5, n_test=3)
    write_idx_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(2, np.uint8), 2049)
    with pytest.raises(DatasetError, match="labels"):
        load_fashion_mnist(tmp_path)
    assert read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049).shape == (2,)


def test_missing_dataset_message(tmp_path):
    with pytest.raises(DatasetError) as e:
        build_loaders("fashion-mnist", tmp_path / "nowhere", batch_size=2)
    msg = str(e.value)
    assert str((tmp_path / "nowhere" / "fashion-mnist").resolve()) in msg
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg and "--download" in msg
