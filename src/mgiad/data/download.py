"""Fetch dataset files (MD5-verified, atomic, cached) and extract archives safely.

Set ``MGIAD_DATA_MIRROR`` (or pass ``mirror=``) to fetch ``<mirror>/<filename>`` instead of the
official URLs; ``file://`` mirrors work too.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from .info import DatasetError, canonical_name

__all__ = ["RESOURCES", "MD5", "download", "download_file", "file_md5", "resource_url", "safe_extract"]


@dataclass(frozen=True)
class Resource:
    """Where a dataset's files come from and which folder under ``data_dir`` they go to."""

    base_url: str
    files: tuple
    subdir: str = ""


RESOURCES: dict[str, Resource] = {
    "fashion-mnist": Resource("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                              ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"), "fashion-mnist"),
    "cifar10": Resource("https://www.cs.toronto.edu/~kriz/", ("cifar-10-python.tar.gz",)),
    "cifar100": Resource("https://www.cs.toronto.edu/~kriz/", ("cifar-100-python.tar.gz",)),
    "tiny-imagenet": Resource("http://cs231n.stanford.edu/", ("tiny-imagenet-200.zip",)),
}

#: Expected MD5 of every downloadable file (looked up at call time, so tests may patch it).
MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
    "tiny-imagenet-200.zip": "90528d7ca1a48142e341f4ef8d21d0de",
}

IMAGENET_HELP = (
    "ImageNet cannot be downloaded automatically: register at https://image-net.org, download "
    "ILSVRC2012 (train and val) and arrange it as <data_dir>/train/<wnid>/*.JPEG and "
    "<data_dir>/val/<wnid>/*.JPEG (the validation images sorted into the same class folders)."
)


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def resource_url(name: str, filename: str, mirror: str | None = None) -> str:
    """Official URL of ``filename``, or ``<mirror>/<filename>`` (``mirror`` or ``$MGIAD_DATA_MIRROR``)."""
    mirror = mirror or os.environ.get("MGIAD_DATA_MIRROR")
    if mirror:
        return mirror.rstrip("/") + "/" + filename
    return RESOURCES[canonical_name(name)].base_url + filename


def download_file(url: str, dest: Path, md5: str | None = None, *, timeout: float = 60.0,
                  progress: bool | None = None) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` already exists with the right MD5.

    The bytes go to a hidden temporary file next to ``dest`` that is renamed into place only after
    the MD5 matched, so ``dest`` is either absent or complete and verified.
    """
    dest = Path(dest)
    if dest.is_file() and (md5 is None or file_md5(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(dest.name, total, progress)
            while block := resp.read(1 << 20):
                out.write(block)
                h.update(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
        actual = h.hexdigest()
        if md5 is not None and actual != md5:
            raise DatasetError(
                f"checksum mismatch for {dest.name} downloaded from {url}: expected MD5 {md5}, got "
                f"{actual}. The file was deleted; the download may have been corrupted or the "
                f"mirror serves a different file. Retry, or fetch it by hand and check its MD5.")
        os.replace(tmp, dest)
        return dest
    except DatasetError:
        raise
    except Exception as err:  # URLError, HTTPError, timeouts, disk errors
        raise DatasetError(f"could not download {url} to {dest}: {err}. If this machine is offline, "
                           f"fetch the file elsewhere and copy it to {dest}"
                           + (f" (MD5 {md5})." if md5 else ".")) from err
    finally:
        tmp.unlink(missing_ok=True)


def _progress_bar(desc: str, total: int | None, progress: bool | None):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except Exception:
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False)


def download(name: str, data_dir: Path, *, mirror: str | None = None, timeout: float = 60.0,
             progress: bool | None = None) -> list[Path]:
    """Fetch every file of dataset ``name`` into ``data_dir`` (or its subfolder); returns the paths."""
    key = canonical_name(name)
    if key == "imagenet":
        raise DatasetError(IMAGENET_HELP)
    if key not in RESOURCES:
        raise DatasetError(f"dataset {key!r} has nothing to download.")
    res = RESOURCES[key]
    target = Path(data_dir) / res.subdir if res.subdir else Path(data_dir)
    return [download_file(resource_url(key, f, mirror), target / f, MD5.get(f), timeout=timeout,
                          progress=progress) for f in res.files]


# --------------------------------------------------------------------------- safe extraction

def _member_path(root: Path, name: str, archive: Path) -> Path | None:
    """Destination of archive member ``name`` under ``root``; DatasetError if it would escape."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise DatasetError(f"refusing to extract {archive}: member {name!r} has an absolute path.")
    norm = posixpath.normpath(name.replace("\\", "/"))
    if norm == ".." or norm.startswith("../"):
        raise DatasetError(f"refusing to extract {archive}: member {name!r} escapes the target folder.")
    if norm in ("", "."):
        return None
    return root.joinpath(*norm.split("/"))


def _write(target: Path, src) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def _extract_tar(archive: Path, root: Path) -> None:
    with tarfile.open(archive, "r:*") as tf:
        for m in tf:
            target = _member_path(root, m.name, archive)
            if m.issym() or m.islnk():
                raise DatasetError(f"refusing to extract {archive}: member {m.name!r} is a link (to "
                                   f"{m.linkname!r}); dataset archives must not contain links.")
            if target is None:
                continue
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif m.isreg():
                with tf.extractfile(m) as src:
                    _write(target, src)
            else:
                raise DatasetError(f"refusing to extract {archive}: member {m.name!r} is a device, "
                                   f"fifo or other special file.")


def _extract_zip(archive: Path, root: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = _member_path(root, info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise DatasetError(f"refusing to extract {archive}: member {info.filename!r} is a "
                                   f"symbolic link; dataset archives must not contain links.")
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise DatasetError(f"refusing to extract {archive}: member {info.filename!r} is a "
                                   f"device, fifo or other special file.")
            if target is None:
                continue
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                with zf.open(info) as src:
                    _write(target, src)


def safe_extract(archive: Path, dest_dir: Path, *, exist_ok: bool = False) -> list[Path]:
    """Extract a tar(.gz) or zip ``archive`` into ``dest_dir``; returns the top-level paths created.

    Absolute member paths, members escaping ``dest_dir``, links and special files are refused with
    :class:`DatasetError`. Everything is first extracted into a hidden temporary folder inside
    ``dest_dir`` and then renamed into place, so a failed or interrupted extraction leaves no
    half-written dataset folder behind. A top-level entry that already exists is an error, or with
    ``exist_ok`` is kept as it is (e.g. another rank extracted the same archive concurrently).
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mgiad-extract-", dir=dest_dir))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, tmp)
        else:
            raise DatasetError(f"{archive} is neither a tar nor a zip archive (corrupt or truncated?)"
                               + _md5_hint(archive))
        tops = sorted(tmp.iterdir())
        for t in tops:
            if (dest_dir / t.name).exists() and not exist_ok:
                raise DatasetError(f"cannot extract {archive}: {dest_dir / t.name} already exists; "
                                   f"remove it (it may be an incomplete copy) and retry.")
        for t in tops:
            try:
                os.replace(t, dest_dir / t.name)
            except OSError:
                if not (exist_ok and (dest_dir / t.name).exists()):
                    raise
        return [dest_dir / t.name for t in tops]
    except DatasetError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError, RuntimeError) as err:
        raise DatasetError(f"could not extract {archive}: {err}. The file is probably corrupt or "
                           f"truncated{_md5_hint(archive)}; delete it and download it again.") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _md5_hint(archive: Path) -> str:
    md5 = MD5.get(Path(archive).name)
    return f" (expected MD5 {md5})" if md5 else ""
