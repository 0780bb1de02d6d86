"""Tiny ImageNet (zip layout, cache) and ImageNet (class folders, Pillow transforms)."""
import io
import random
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from mgiad.data import DatasetError, build_loaders
from mgiad.data import folder as folder_mod
from mgiad.data.folder import load_tiny_imagenet, random_resized_crop, resize_center_crop
from mgiad.data.synthetic import write_imagenet_folders, write_tiny_imagenet_zip


@pytest.fixture(autouse=True)
def small_synthetic_files(monkeypatch):
    """These tests use small files in the datasets' original formats, not the real datasets: the
    split-size and checksum verification (tests/test_data_verify.py) is off here."""
    monkeypatch.setenv("MGIAD_VERIFY_DATA", "0")


WNIDS = ("n02", "n01", "n03")  # wnids.txt order is not sorted: class index = sorted position


def _decode_member(zip_path, member):
    with zipfile.ZipFile(zip_path) as zf:
        return np.asarray(Image.open(io.BytesIO(zf.read(member))).convert("RGB")).transpose(2, 0, 1)


def test_tiny_imagenet_zip_loads_exactly(tmp_path):
    archive = tmp_path / "tiny-imagenet-200.zip"
    written = write_tiny_imagenet_zip(archive, WNIDS, n_train=2, n_val=2)
    data = load_tiny_imagenet(tmp_path, workers=2)
    assert (tmp_path / "tiny-imagenet-200" / "wnids.txt").is_file()
    classes = sorted(WNIDS)
    for split in ("train", "test"):
        x, y = data[split]
        assert x.dtype == torch.uint8 and x.shape == (6, 3, 64, 64)
        # train: class folders in sorted wnid order, files sorted; test: val_annotations order
        expect = sorted(written[split], key=lambda m: (classes.index(m[1]), m[0])) if split == "train" else written[split]
        assert y.tolist() == [classes.index(w) for _, w in expect]
        for i, (member, _) in enumerate(expect):
            assert np.array_equal(x[i].numpy(), _decode_member(archive, member))
    assert (data["test"][0][0, 0] == data["test"][0][0, 1]).all()  # the grayscale JPEG -> R=G=B


def test_tiny_imagenet_cache_is_used_and_invalidated(tmp_path, monkeypatch):
    write_tiny_imagenet_zip(tmp_path / "tiny-imagenet-200.zip", WNIDS, n_train=1, n_val=1)
    first = load_tiny_imagenet(tmp_path)
    caches = sorted((tmp_path / "tiny-imagenet-200" / "mgiad-cache").glob("*.npy"))
    assert [p.name.split("-")[0] for p in caches] == ["test", "train"]
    calls = []
    real = folder_mod._decode_all
    monkeypatch.setattr(folder_mod, "_decode_all", lambda *a: calls.append(a) or real(*a))
    again = load_tiny_imagenet(tmp_path)
    assert calls == [] and torch.equal(again["train"][0], first["train"][0])
    img = tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_1.JPEG"
    Image.new("RGB", (64, 64), (200, 10, 30)).save(img)
    changed = load_tiny_imagenet(tmp_path)
    assert len(calls) == 1  # only the test split was decoded again
    assert (changed["test"][0][1, :, 32, 32].int() - torch.tensor([200, 10, 30])).abs().max() <= 3
    assert len(list((tmp_path / "tiny-imagenet-200" / "mgiad-cache").glob("test-*.npy"))) == 1


def test_tiny_imagenet_loader(tmp_path):
    write_tiny_imagenet_zip(tmp_path / "tiny-imagenet-200.zip", WNIDS, n_train=2, n_val=1)
    train, test = build_loaders("tiny-imagenet", tmp_path, batch_size=4, drop_last=False)
    assert (train.dataset_size, test.dataset_size, len(train), len(test)) == (6, 3, 2, 1)
    x, y = next(iter(train))
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert next(iter(test))[0].shape == (3, 3, 64, 64)


def test_tiny_imagenet_bad_annotation(tmp_path):
    write_tiny_imagenet_zip(tmp_path / "tiny-imagenet-200.zip", WNIDS, n_train=1, n_val=1)
    load_tiny_imagenet(tmp_path)
    (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(DatasetError, match="val_annotations.txt line 1"):
        load_tiny_imagenet(tmp_path)


def test_tiny_imagenet_missing(tmp_path):
    with pytest.raises(DatasetError) as e:
        build_loaders("tiny-imagenet", tmp_path, batch_size=2)
    msg = str(e.value)
    assert str(tmp_path.resolve() / "tiny-imagenet-200.zip") in msg and "--download" in msg


def _expected_test_image(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR)
    left, top = (img.size[0] - 224) // 2, (img.size[1] - 224) // 2
    return torch.from_numpy(np.array(img.crop((left, top, left + 224, top + 224)))).permute(2, 0, 1).float()


def test_imagenet_folders(tmp_path):
    written = write_imagenet_folders(tmp_path, ("n02", "n01"), n_train=3, n_val=2, size=(80, 60))
    train, test = build_loaders("imagenet", tmp_path, batch_size=2, workers=0)
    assert (train.dataset_size, test.dataset_size, len(train), len(test)) == (6, 4, 3, 2)
    xs, ys = zip(*test)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32
    assert y.tolist() == [0, 0, 1, 1]  # n01 < n02
    mean, std = torch.tensor(test.info.mean).view(3, 1, 1), torch.tensor(test.info.std).view(3, 1, 1)
    expect = sorted(written["test"], key=lambda pw: (pw[1], pw[0].name))
    for i, (path, _) in enumerate(expect):
        assert torch.allclose((x[i] * std + mean) * 255, _expected_test_image(path), atol=1e-3)
    # train: random-resized crops, reproducible per (seed, epoch), different next epoch
    a = [b[0] for b in train]
    b = [b[0] for b in build_loaders("imagenet", tmp_path, batch_size=2, workers=0)[0]]
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and a[0].shape == (2, 3, 224, 224)
    train.set_epoch(1)
    assert not all(torch.equal(u, v[0]) for u, v in zip(a, train))


def test_imagenet_with_worker_process(tmp_path):
    write_imagenet_folders(tmp_path, ("n01", "n02"), n_train=2, n_val=1, size=(40, 40))
    train, _ = build_loaders("imagenet", tmp_path, batch_size=2, workers=1)
    ref, _ = build_loaders("imagenet", tmp_path, batch_size=2, workers=0)
    for (x1, y1), (x0, y0) in zip(train, ref):
        assert torch.equal(x1, x0) and torch.equal(y1, y0)


def test_imagenet_class_mismatch_and_missing(tmp_path):
    write_imagenet_folders(tmp_path, ("n01", "n02"), n_train=1, n_val=1, size=(40, 40))
    (tmp_path / "val" / "n03").mkdir()
    with pytest.raises(DatasetError, match="n03"):
        build_loaders("imagenet", tmp_path, batch_size=1, workers=0)
    with pytest.raises(DatasetError) as e:
        build_loaders("imagenet", tmp_path / "none", batch_size=1, download=True)
    assert "image-net.org" in str(e.value) and str((tmp_path / "none" / "train").resolve()) in str(e.value)


def test_pil_crops():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    out = random_resized_crop(img, 32, random.Random(0))
    assert out.size == (32, 32)
    # impossible scale: falls back to the central box with the aspect ratio clamped to 4/3
    out = random_resized_crop(img, 16, random.Random(0), scale=(5.0, 5.0))
    assert out.size == (16, 16)
    assert resize_center_crop(img, 40, 32).size == (32, 32)


def test_an_imagenet_folder_of_another_size_is_refused_as_readme_promises(tmp_path):
    """1 class and 16 images would train a 1000-class model without a word."""
    write_imagenet_folders(tmp_path, ("n01",), n_train=12, n_val=4, size=(40, 40))
    with pytest.raises(DatasetError, match="imagenet: 1 class folder where imagenet has 1,000.*"
                       "1,000 outputs.*--no-verify-data"):
        build_loaders("imagenet", tmp_path, batch_size=2, workers=0, verify=True)
    train, _ = build_loaders("imagenet", tmp_path, batch_size=2, workers=0)
    assert train.dataset_size == 12


def test_a_corrupt_jpeg_read_by_a_worker_is_one_line(tmp_path):
    written = write_imagenet_folders(tmp_path, ("n01", "n02"), n_train=2, n_val=1, size=(40, 40))
    broken = written["test"][0][0]
    broken.write_bytes(broken.read_bytes()[:40])
    _, test = build_loaders("imagenet", tmp_path, batch_size=2, workers=1)
    with pytest.raises(DatasetError) as caught:
        list(test)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"cannot decode image {broken}") and "corrupt" in message
