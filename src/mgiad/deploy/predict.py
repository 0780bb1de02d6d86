"""Classify image files with a trained model, preprocessed as its training inputs were.

The preprocessing comes from the checkpoint's config (``mgiad train`` records dataset, image_size,
in_chans, mean and std): the image is converted to grayscale (``L``) or ``RGB`` for the model's
``in_chans``, brought to the training input size with Pillow, scaled to [0, 1] and normalised with
the recorded mean and std. The geometry follows the dataset's test pipeline:

* ``fashion-mnist``: resized to 28x28 and zero-padded to 32x32 (the dataset's padding);
* ``imagenet``: short side resized to ``image_size / 0.875`` (256), central ``image_size`` crop;
* otherwise (digits, CIFAR, Tiny ImageNet, unknown): resized to ``image_size x image_size``.

Resizing is bilinear (Pillow antialiases when shrinking). Files that cannot be read are reported
one by one (:class:`ImageReadError`), the others are still classified.

Fashion-MNIST shows light garments on a black background; a photo of a garment on a light
background is its negative. ``Preprocessing(invert=True)`` (``mgiad predict --invert``) inverts the
pixels (``255 - x``, after the conversion to grayscale/RGB, before the geometry: the padding stays
black), and :func:`predict_files` flags a Fashion-MNIST input whose border (the outermost pixels of
the image, where the dataset's background is) averages above :data:`LIGHT_THRESHOLD`
(``"mostly_light": True``) so that the command line can suggest it. (The mean of the whole image
would not do: a genuine pullover can fill most of its 28x28 frame.)

16-bit and 32-bit integer images (0..65535) and float images (0..1) are rescaled to 8 bits; other
ranges are refused, never clipped.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from ..data.info import class_names as dataset_class_names
from ..utils.errors import MissingDependencyError, install_hint
from ..utils.limits import MAX_IMAGE_SIZE, check_size, finite

__all__ = ["CLASS_NAMES", "IMAGE_SUFFIXES", "LIGHT_THRESHOLD", "Preprocessing", "ImageReadError",
           "class_names", "find_images", "load_image", "predict_files", "is_mostly_light"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# mean border pixel (0..1, grayscale) above which a Fashion-MNIST input looks like a negative: the
# dataset's test images have a dark border (at most 0.37 over the outermost ring), their negatives
# a light one (at least 0.63)
LIGHT_THRESHOLD = 0.5

CLASS_NAMES: dict[str, list[str]] = dataset_class_names()  # from the dataset table


class ImageReadError(ValueError):
    """One input file that cannot be opened or decoded as an image."""


@dataclass(frozen=True)
class Preprocessing:
    """How images are turned into model inputs; see the module docstring."""

    image_size: int
    in_chans: int
    mean: tuple
    std: tuple
    dataset: str | None = None
    invert: bool = False  # 255 - x after the colour conversion (light background -> dark)

    @classmethod
    def resolve(cls, recorded: dict[str, Any], in_chans: int,
                dataset: str | None = None) -> "Preprocessing":
        """From what a checkpoint records (``model.preprocessing``); ``dataset`` (a name of
        :data:`mgiad.data.DATASETS`) replaces it by that dataset's input size and normalisation,
        e.g. for a model saved without a record of its training data."""
        if recorded is not None and not isinstance(recorded, dict):
            raise ValueError(f"the recorded preprocessing is a {type(recorded).__name__}, not an "
                             "object of dataset, image_size, mean, std")
        values = dict(recorded or {})
        if dataset is not None:
            from ..data import dataset_info
            info = dataset_info(dataset)
            values = {"dataset": info.name, "image_size": info.image_size,
                      "mean": list(info.mean), "std": list(info.std)}
        missing = [k for k in ("image_size", "mean", "std") if values.get(k) is None]
        if missing:
            raise ValueError(f"the model does not record its input preprocessing ({', '.join(missing)} "
                             "missing); pass --dataset NAME to use that dataset's input size and "
                             "normalisation")
        mean, std = _numbers(values["mean"], "mean"), _numbers(values["std"], "std")
        if any(v <= 0 for v in std):
            raise ValueError(f"the recorded std {list(std)} has an entry <= 0: normalising by it "
                             "gives NaN or infinite inputs (a damaged preprocessing record)")
        image_size = check_size("the recorded image_size", values["image_size"], MAX_IMAGE_SIZE)
        if len(mean) != in_chans or len(std) != in_chans:
            raise ValueError(f"mean/std have {len(mean)}/{len(std)} entries for a model with "
                             f"{in_chans} input channels")
        if in_chans not in (1, 3):
            raise ValueError(f"images can be fed to models with 1 (grayscale) or 3 (RGB) input "
                             f"channels, not {in_chans}")
        return cls(image_size, in_chans, mean, std, values.get("dataset"))

    def describe(self) -> str:
        """In words, what :func:`load_image` and the normalisation do (e.g. for a model card)."""
        size, mode = self.image_size, "grayscale" if self.in_chans == 1 else "RGB"
        if self.dataset == "fashion-mnist" and size > 4:
            geometry = (f"resized to {size - 4}x{size - 4} (bilinear) and zero-padded by 2 to "
                        f"{size}x{size}, as the dataset's 28x28 images are")
        elif self.dataset == "imagenet":
            geometry = f"short side resized to {round(size / 0.875)} (bilinear), central {size}x{size} crop"
        else:
            geometry = f"resized to {size}x{size} (bilinear)"
        return (f"{mode}{', inverted (255 - x)' if self.invert else ''}, {geometry}, scaled to "
                f"[0, 1], normalised with mean {list(self.mean)} and std {list(self.std)}")


def _numbers(values: Any, name: str) -> tuple:
    """The recorded ``mean`` / ``std``: a list of finite numbers."""
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"the recorded {name} must be a list of numbers, got {values!r}")
    return tuple(finite(v, f"the recorded {name}") for v in values)


def class_names(recorded: dict[str, Any] | None, num_classes: int) -> list[str] | None:
    """Names of the classes, if the checkpoint records them or its dataset has well-known names."""
    recorded = recorded or {}
    names = recorded.get("class_names") or CLASS_NAMES.get(recorded.get("dataset") or "")
    return list(names) if names and len(names) == num_classes else None


def find_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files named, plus the image files (by suffix, recursively, sorted) in the folders named.

    Files named explicitly are kept whatever their suffix (and even when missing): reading them
    reports what is wrong. A folder without images is an error.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            images = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES
                            and not any(part.startswith(".") for part in f.relative_to(p).parts)
                            and f.is_file())
            if not images:
                raise ValueError(f"{p} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            found += images
        else:
            found.append(p)
    return found


def _pil():
    try:
        from PIL import Image, ImageOps
    except Exception as exc:
        raise MissingDependencyError(f"reading images needs Pillow ({type(exc).__name__}: {exc}); "
                                     "install it: " + install_hint("images", "Pillow")) from None
    return Image, ImageOps


def _to_8_bits(im, Image):
    """A 16-bit or 32-bit integer or a float grayscale image as 8 bits (``L``), rescaled: integer
    pixels span 0..65535 (16-bit PNG and TIFF), float pixels 0..1. Pillow's own conversion would
    clip them to 255 (a white silhouette) or 0..1 to black. Values outside are refused."""
    if im.mode.startswith("I;16"):
        im = im.convert("I")
    if im.mode not in ("I", "F"):
        return im
    low, high = im.getextrema()
    if im.mode == "I":
        if low < 0 or high > 65535:
            raise ImageReadError(f"32-bit integer pixels from {low} to {high}: only 0..65535 "
                                 "(16 bits) is understood; save the image with 8 or 16 bits")
        return im.point(lambda v: v * (255 / 65535) + 0.5).convert("L")
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high > 1:
        raise ImageReadError(f"floating-point pixels from {low:g} to {high:g}: only 0..1 is "
                             "understood; save the image with 8 or 16 bits, or scaled to 0..1")
    return im.point(lambda v: v * 255 + 0.5).convert("L")


def load_image(path: str | os.PathLike, pre: Preprocessing) -> torch.Tensor:
    """``uint8`` tensor ``(in_chans, H, W)`` of the image at ``path`` at the model's input size."""
    Image, ImageOps = _pil()
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)  # phone photos: apply the recorded orientation
            im = _to_8_bits(im, Image)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                # composite transparent pixels over the background the datasets have (black)
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(background, im)
            im = im.convert("L" if pre.in_chans == 1 else "RGB")
            if pre.invert:
                im = ImageOps.invert(im)
    except ImageReadError as exc:
        raise ImageReadError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory") from None
    except Exception as exc:  # not an image, truncated, unsupported format, too large, ...
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ImageReadError(f"{path}: cannot read as an image ({reason})") from None
    size = pre.image_size
    if pre.dataset == "fashion-mnist" and size > 4:  # 28x28 content zero-padded by 2, as in training
        inner = im.resize((size - 4, size - 4), Image.Resampling.BILINEAR)
        im = Image.new(im.mode, (size, size), 0)
        im.paste(inner, (2, 2))
    elif pre.dataset == "imagenet":
        from ..data.folder import resize_center_crop
        im = resize_center_crop(im, round(size / 0.875), size)
    elif im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    return data.view(size, size, pre.in_chans).permute(2, 0, 1).contiguous()


def is_mostly_light(image: torch.Tensor, pre: Preprocessing) -> bool:
    """Whether ``image`` (a :func:`load_image` result) is a Fashion-MNIST input whose border (the
    outermost ring of its content, the padding left out) averages above :data:`LIGHT_THRESHOLD`:
    probably a light
    background, the negative of what the dataset shows. False for other datasets."""
    if pre.dataset != "fashion-mnist" or pre.invert:
        return False
    size = pre.image_size
    content = (image[:, 2:size - 2, 2:size - 2] if size > 4 else image).float()
    border = torch.cat([content[:, 0], content[:, -1], content[:, 1:-1, 0], content[:, 1:-1, -1]],
                       dim=1)
    return border.mean().item() / 255 > LIGHT_THRESHOLD


def predict_files(model: nn.Module, files: Sequence[str | os.PathLike], pre: Preprocessing,
                  top_k: int = 5, batch_size: int = 64, names: list[str] | None = None,
                  device: str | torch.device = "cpu") -> Iterator[dict[str, Any]]:
    """For each file, in order: ``{"path", "predictions": [{"rank", "index", "label",
    "probability"}, ...]}`` (the ``top_k`` most probable classes) or ``{"path", "error"}``.
    A Fashion-MNIST input that looks inverted (:func:`is_mostly_light`) also has
    ``"mostly_light": True``."""
    from ..data.transforms import Normalize
    normalize = Normalize(pre.mean, pre.std, device)
    model.eval()
    k = min(top_k, getattr(model, "num_classes", top_k))
    files = list(files)
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        images, results = [], []
        for f in chunk:
            try:
                images.append(load_image(f, pre))
                results.append({"path": str(f)})
                if is_mostly_light(images[-1], pre):
                    results[-1]["mostly_light"] = True
            except ImageReadError as exc:
                results.append({"path": str(f), "error": str(exc)})
        if images:
            x = normalize(torch.stack(images).to(device))
            with torch.no_grad():
                probs = torch.softmax(model(x).float(), dim=1)
            top_p, top_i = probs.topk(k, dim=1)
            rows = iter(zip(top_p.tolist(), top_i.tolist()))
            for r in results:
                if "error" in r:
                    continue
                p_row, i_row = next(rows)
                r["predictions"] = [{"rank": j + 1, "index": i,
                                     "label": names[i] if names else str(i), "probability": p}
                                    for j, (p, i) in enumerate(zip(p_row, i_row))]
        yield from results
