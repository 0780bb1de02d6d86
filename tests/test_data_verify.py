"""Dataset files are checked: split sizes for every dataset, Fashion-MNIST's published MD5s."""
import shutil
from pathlib import Path

import pytest

from mgiad.data import DatasetError, build_loaders
from mgiad.data.synthetic import write_fashion_mnist
from train_helpers import DATA_DIR

REAL = DATA_DIR / "fashion-mnist"
NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


@pytest.fixture
def real_copy(tmp_path):
    if not REAL.is_dir():
        pytest.skip("shared Fashion-MNIST not present")
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in NAMES:
        shutil.copy(REAL / name, folder / name)
    return tmp_path, folder


def test_the_real_files_pass(real_copy):
    data_dir, _ = real_copy
    train, test = build_loaders("fashion-mnist", data_dir, batch_size=256)
    assert (train.dataset_size, test.dataset_size) == (60000, 10000)


def test_exchanged_train_and_test_files_are_refused(real_copy):
    data_dir, folder = real_copy
    for a, b in ((NAMES[0], NAMES[2]), (NAMES[1], NAMES[3])):
        (folder / a).rename(folder / "swap")
        (folder / b).rename(folder / a)
        (folder / "swap").rename(folder / b)
    with pytest.raises(DatasetError, match="holds the contents of t10k-images-idx3-ubyte.gz"):
        build_loaders("fashion-mnist", data_dir, batch_size=256)
    train, test = build_loaders("fashion-mnist", data_dir, batch_size=256, verify=False)
    assert (train.dataset_size, test.dataset_size) == (10000, 60000)  # the opt-out loads them


def test_foreign_files_and_wrong_split_sizes_are_refused(tmp_path, monkeypatch):
    write_fashion_mnist(tmp_path, n_train=12, n_test=7)  # right format, not Fashion-MNIST
    with pytest.raises(DatasetError, match="not the original Fashion-MNIST file"):
        build_loaders("fashion-mnist", tmp_path, batch_size=2)
    monkeypatch.setenv("MGIAD_VERIFY_DATA", "0")
    assert build_loaders("fashion-mnist", tmp_path, batch_size=2)[0].dataset_size == 12
    monkeypatch.delenv("MGIAD_VERIFY_DATA")
    for f in tmp_path.glob("*.gz"):  # decompressed copies: no checksum known, sizes still checked
        import gzip
        f.with_suffix("").write_bytes(gzip.decompress(f.read_bytes()))
        f.unlink()
    with pytest.raises(DatasetError, match="12 images and the test split 7"):
        build_loaders("fashion-mnist", tmp_path, batch_size=2)
