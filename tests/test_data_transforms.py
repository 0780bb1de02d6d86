"""Batched augmentation: shapes, exact crop/flip geometry, determinism, normalisation."""
import torch
import torch.nn.functional as F

from mgiad.data import build_loaders
from mgiad.data.loaders import mix_seed
from mgiad.data.transforms import Normalize, PadCropFlip, RandomResizedCropFlip, train_augment


def _images(n=6, c=3, h=32, w=32):
    return torch.randint(0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_pad_crop_flip_geometry():
    x = _images()
    t = PadCropFlip(4)
    n = len(x)
    centre = torch.full((n,), 4)
    no = torch.zeros(n, dtype=torch.bool)
    assert torch.equal(t.apply(x, centre, centre, no), x)  # offset = pad: identity
    assert torch.equal(t.apply(x, centre, centre, ~no), x.flip(-1))
    oy, ox = torch.tensor([0, 8, 4, 1, 7, 3]), torch.tensor([8, 0, 2, 5, 4, 6])
    out = t.apply(x, oy, ox, no)
    padded = F.pad(x, (4, 4, 4, 4))
    for b in range(n):
        assert torch.equal(out[b], padded[b, :, oy[b]:oy[b] + 32, ox[b]:ox[b] + 32])
    # a single bright pixel moves by (4 - oy, 4 - ox); content shifted out is replaced by zeros
    dot = torch.zeros(1, 1, 32, 32, dtype=torch.uint8)
    dot[0, 0, 10, 12] = 255
    moved = t.apply(dot, torch.tensor([7]), torch.tensor([1]), torch.tensor([False]))
    assert moved[0, 0, 10 - 3, 12 + 3] == 255 and moved.sum() == 255
    assert t.apply(dot, torch.tensor([0]), torch.tensor([0]), torch.tensor([False]))[0, 0, :4].sum() == 0
    flipped = t.apply(dot, torch.tensor([4]), torch.tensor([6]), torch.tensor([True]))
    assert flipped[0, 0, 10, 31 - (12 - 2)] == 255


def test_pad_crop_flip_random_stream():
    x = _images(64)
    t = PadCropFlip(4)
    out = t(x, torch.Generator().manual_seed(3))
    params = t.sample(64, torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, t.apply(x, **params))
    assert params["oy"].min() >= 0 and params["oy"].max() <= 8 and 0 < params["flip"].sum() < 64
    assert not torch.equal(out, t(x, torch.Generator().manual_seed(4)))
    assert not PadCropFlip(4, flip=False).sample(64, torch.Generator())["flip"].any()


def test_augmentation_choice_per_dataset():
    assert not train_augment("digits").flip  # mirrored digits change meaning
    assert train_augment("fashion-mnist").flip and train_augment("cifar10").flip
    assert isinstance(train_augment("tiny-imagenet"), RandomResizedCropFlip)
    assert train_augment("imagenet") is None


def test_random_resized_crop_geometry():
    ramp = torch.arange(64.0).view(1, 1, 1, 64).expand(2, 3, 64, 64).contiguous()
    t = RandomResizedCropFlip(64)
    one = torch.ones(2)
    full = dict(x0=0 * one, y0=0 * one, bw=64 * one, bh=64 * one)
    assert torch.allclose(t.apply(ramp, **full, flip=torch.tensor([False, False])), ramp, atol=1e-4)
    assert torch.allclose(t.apply(ramp, **full, flip=torch.tensor([True, True])), ramp.flip(-1), atol=1e-4)
    # right half, upsampled 2x: output column j samples source x = 32 + (j + 0.5) / 2 - 0.5
    out = t.apply(ramp, x0=32 * one, y0=0 * one, bw=32 * one, bh=64 * one, flip=torch.tensor([False, False]))
    expect = (32 + (torch.arange(64.0) + 0.5) / 2 - 0.5).clamp(max=63)
    assert torch.allclose(out[0, 0, 5], expect, atol=1e-4)


def test_random_resized_crop_sampling():
    t = RandomResizedCropFlip(64)
    p = t.sample(4096, 64, 64, torch.Generator().manual_seed(0))
    assert (p["x0"] >= 0).all() and (p["x0"] + p["bw"] <= 64 + 1e-4).all() and (p["y0"] + p["bh"] <= 64 + 1e-4).all()
    area = p["bw"] * p["bh"] / 64 ** 2
    assert area.min() >= 0.08 - 1e-5 and area.max() <= 1 + 1e-5
    ratio = p["bw"] / p["bh"]
    assert ratio.min() >= 3 / 4 - 1e-4 and ratio.max() <= 4 / 3 + 1e-4
    x = _images(8, h=64, w=64)
    a = t(x, torch.Generator().manual_seed(1))
    assert a.shape == (8, 3, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, t(x, torch.Generator().manual_seed(1)))
    assert RandomResizedCropFlip(32)(x, torch.Generator()).shape == (8, 3, 32, 32)
    # impossible scale: whole image
    q = RandomResizedCropFlip(64, scale=(2.0, 2.0)).sample(5, 48, 64, torch.Generator())
    assert torch.equal(q["bw"], torch.full((5,), 64.0)) and torch.equal(q["bh"], torch.full((5,), 48.0))


def test_normalize():
    norm = Normalize((0.5, 0.25), (0.5, 0.125))
    x = torch.stack([torch.full((4, 4), 255, dtype=torch.uint8), torch.zeros(4, 4, dtype=torch.uint8)]).unsqueeze(0)
    out = norm(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, 0], torch.ones(4, 4)) and torch.allclose(out[0, 1], torch.full((4, 4), -2.0))
    assert torch.allclose(norm(x.float()), out)


def test_loader_augmentation_stream():
    def batches(epoch, seed=0):
        train, _ = build_loaders("digits", batch_size=256, seed=seed)
        train.set_epoch(epoch)
        return [x for x, _ in train]

    a, b = batches(0), batches(0)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], batches(1)[0]) and not torch.equal(a[0], batches(0, seed=1)[0])
    # the augmented batch is a padded crop of the unaugmented one
    train, _ = build_loaders("digits", batch_size=256)
    plain, _ = build_loaders("digits", batch_size=256, augment=False)
    x_aug, _ = next(iter(train))
    x_plain, _ = next(iter(plain))
    # (seed, epoch, rank, stream 1) seeds the augmentation generator
    params = PadCropFlip(4, flip=False).sample(256, torch.Generator().manual_seed(mix_seed(0, 0, 0, 1)))
    info = train.info
    raw = torch.round((x_plain * info.std[0] + info.mean[0]) * 255).to(torch.uint8)
    expect = Normalize(info.mean, info.std)(PadCropFlip(4, flip=False).apply(raw, **params))
    assert torch.allclose(x_aug, expect, atol=1e-5)
