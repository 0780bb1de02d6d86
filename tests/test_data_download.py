"""Downloads from a loopback HTTP mirror (MD5, cache, atomicity) and safe archive extraction."""
import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from mgiad.data import DatasetError, build_loaders
from mgiad.data import download as dl
from mgiad.data.synthetic import write_cifar_tarball, write_fashion_mnist, write_tiny_imagenet_zip


@pytest.fixture(autouse=True)
def small_synthetic_files(monkeypatch):
    """These tests use small files in the datasets' original formats, not the real datasets: the
    split-size and checksum verification (tests/test_data_verify.py) is off here."""
    monkeypatch.setenv("MGIAD_VERIFY_DATA", "0")



class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.hits.append(self.path)
        super().do_GET()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """Serve ``tmp_path/served`` on 127.0.0.1; yields (folder, hits) with MGIAD_DATA_MIRROR set."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(served)))
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("MGIAD_DATA_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/")
    yield served, server.hits
    server.shutdown()
    server.server_close()
    thread.join()


def _register(monkeypatch, folder):
    """Make the MD5 table expect the small files in ``folder``."""
    for f in folder.iterdir():
        monkeypatch.setitem(dl.MD5, f.name, hashlib.md5(f.read_bytes()).hexdigest())


def _leftovers(folder):
    return [p.name for p in Path(folder).rglob("*") if p.name.startswith(".")]


def test_fashion_mnist_download_and_cache(tmp_path, mirror, monkeypatch):
    served, hits = mirror
    written = write_fashion_mnist(served, n_train=8, n_test=4)
    _register(monkeypatch, served)
    data = tmp_path / "data"
    train, test = build_loaders("fashion-mnist", data, batch_size=4, download=True)
    assert sorted(p.name for p in (data / "fashion-mnist").iterdir()) == sorted(p.name for p in served.iterdir())
    assert len(hits) == 4 and train.dataset_size == 8
    assert torch.equal(next(iter(test))[1], torch.from_numpy(written["test"][1]).long())
    build_loaders("fashion-mnist", data, batch_size=4, download=True)
    assert len(hits) == 4  # files present: nothing fetched again
    # a present, verified file is not fetched again by download() either; a bad one is replaced
    (data / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"junk")
    dl.download("fashion-mnist", data)
    assert hits[4:] == ["/t10k-labels-idx1-ubyte.gz"]


@pytest.mark.parametrize("name, archive", [("cifar10", "cifar-10-python.tar.gz"),
                                           ("cifar100", "cifar-100-python.tar.gz"),
                                           ("tiny-imagenet", "tiny-imagenet-200.zip")])
def test_archive_download_extracts(tmp_path, mirror, monkeypatch, name, archive):
    served, hits = mirror
    if name == "tiny-imagenet":
        write_tiny_imagenet_zip(served / archive, ("n01", "n02"), n_train=2, n_val=1)
    else:
        write_cifar_tarball(served / archive, name, n_per_batch=2, n_test=2)
    _register(monkeypatch, served)
    data = tmp_path / "data"
    train, test = build_loaders(name, data, batch_size=2, download=True)
    assert hits == [f"/{archive}"] and (data / archive).is_file() and len(train) >= 1
    build_loaders(name, data, batch_size=2, download=True)
    assert len(hits) == 1
    assert not _leftovers(data)


def test_checksum_mismatch_keeps_nothing(tmp_path, mirror, monkeypatch):
    served, hits = mirror
    write_cifar_tarball(served / "cifar-10-python.tar.gz", "cifar10", n_per_batch=1, n_test=1)
    expected = dl.MD5["cifar-10-python.tar.gz"]  # the real one: the served file does not match
    data = tmp_path / "data"
    with pytest.raises(DatasetError) as e:
        build_loaders("cifar10", data, batch_size=1, download=True)
    msg = str(e.value)
    assert expected in msg and hashlib.md5((served / "cifar-10-python.tar.gz").read_bytes()).hexdigest() in msg
    assert "cifar-10-python.tar.gz" in msg and list(data.iterdir()) == []


def test_offline_failure_names_url(tmp_path, monkeypatch):
    monkeypatch.setenv("MGIAD_DATA_MIRROR", "http://127.0.0.1:9/mirror")  # discard port: refused
    with pytest.raises(DatasetError) as e:
        build_loaders("fashion-mnist", tmp_path, batch_size=2, download=True)
    msg = str(e.value)
    assert "http://127.0.0.1:9/mirror/train-images-idx3-ubyte.gz" in msg and "copy it to" in msg
    assert not _leftovers(tmp_path)


def test_mirror_keyword_and_urls(tmp_path, mirror, monkeypatch):
    served, hits = mirror
    write_fashion_mnist(served, n_train=2, n_test=2)
    _register(monkeypatch, served)
    url = dl.resource_url("fashion-mnist", "x.gz")
    monkeypatch.delenv("MGIAD_DATA_MIRROR")
    assert dl.resource_url("cifar10", "cifar-10-python.tar.gz") == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert dl.resource_url("fashion-mnist", "a.gz").startswith("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
    paths = dl.download("fashion-mnist", tmp_path / "d", mirror=url[: -len("x.gz")])
    assert len(paths) == 4 and all(p.parent == tmp_path / "d" / "fashion-mnist" for p in paths)
    with pytest.raises(DatasetError, match="image-net.org"):
        dl.download("imagenet", tmp_path)


# --------------------------------------------------------------------------- unsafe archives

def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _device(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info, None


TAR_CASES = {
    "dotdot": [_file("ok/a.txt"), _file("../evil")],
    "nested-dotdot": [_file("ok/../../evil")],
    "absolute": [_file("ok/a.txt"), _file("/tmp/mgiad-test-evil-abs")],
    "symlink-out": [_link("ok/link", "../../"), _file("ok/link/evil")],
    "symlink-abs": [_link("ok/link", "/etc/passwd")],
    "hardlink-out": [_link("ok/hard", "../evil", tarfile.LNKTYPE)],
    "device": [_device("ok/dev")],
}


@pytest.mark.parametrize("case", TAR_CASES)
def test_unsafe_tar_rejected(tmp_path, case):
    target = tmp_path / "a" / "b"
    archive = _tar(tmp_path / "evil.tar.gz", TAR_CASES[case])
    with pytest.raises(DatasetError, match="refusing"):
        dl.safe_extract(archive, target)
    assert list(target.iterdir()) == []  # not even the harmless members
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "evil.tar.gz"]
    assert not Path("/tmp/mgiad-test-evil-abs").exists()


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


ZIP_CASES = {
    "dotdot": [("ok/a.txt", b"x", None), ("../evil", b"x", None)],
    "absolute": [("/tmp/mgiad-test-evil-abs", b"x", None)],
    "drive": [("C:/evil", b"x", None)],
    "symlink": [("ok/link", b"../../../etc", 0o120777)],
    "fifo": [("ok/fifo", b"", 0o010644)],
}


@pytest.mark.parametrize("case", ZIP_CASES)
def test_unsafe_zip_rejected(tmp_path, case):
    target = tmp_path / "a" / "b"
    archive = _zip(tmp_path / "evil.zip", ZIP_CASES[case])
    with pytest.raises(DatasetError, match="refusing"):
        dl.safe_extract(archive, target)
    assert list(target.iterdir()) == []
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "evil.zip"]


def test_safe_extract_normal_archives(tmp_path):
    tar = _tar(tmp_path / "good.tar.gz", [_file("top/x/a.txt", b"hello"), _file("top/./b.txt", b"b")])
    assert dl.safe_extract(tar, tmp_path / "t") == [tmp_path / "t" / "top"]
    assert (tmp_path / "t" / "top" / "x" / "a.txt").read_bytes() == b"hello"
    with pytest.raises(DatasetError, match="already exists"):
        dl.safe_extract(tar, tmp_path / "t")
    zp = _zip(tmp_path / "good.zip", [("z/", b"", None), ("z/in/c.txt", b"c", 0o100644)])
    dl.safe_extract(zp, tmp_path / "t")
    assert (tmp_path / "t" / "z" / "in" / "c.txt").read_bytes() == b"c"
    assert not _leftovers(tmp_path / "t")


def test_evil_member_in_downloaded_dataset(tmp_path, mirror, monkeypatch):
    served, _ = mirror
    _tar(served / "cifar-10-python.tar.gz", [_file("cifar-10-batches-py/test_batch"), _file("../../evil")])
    _register(monkeypatch, served)
    data = tmp_path / "data"
    with pytest.raises(DatasetError, match="escapes"):
        build_loaders("cifar10", data, batch_size=1, download=True)
    assert sorted(p.name for p in data.iterdir()) == ["cifar-10-python.tar.gz"]
    assert not (tmp_path / "evil").exists()


def test_extract_exist_ok_keeps_existing(tmp_path):
    tar = _tar(tmp_path / "good.tar.gz", [_file("top/a.txt", b"new")])
    (tmp_path / "t" / "top").mkdir(parents=True)
    (tmp_path / "t" / "top" / "a.txt").write_bytes(b"old")
    dl.safe_extract(tar, tmp_path / "t", exist_ok=True)
    assert (tmp_path / "t" / "top" / "a.txt").read_bytes() == b"old" and not _leftovers(tmp_path / "t")
