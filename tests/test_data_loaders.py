"""Loader behaviour: lengths, test loader order, epochs, and distributed sharding."""
import pytest
import torch

from mgiad.data import build_loaders
from mgiad.data.loaders import shard_indices


@pytest.mark.parametrize("n, world", [(10, 2), (11, 2), (11, 3), (2, 4)])
@pytest.mark.parametrize("drop_last", [True, False])
def test_shard_indices(n, world, drop_last):
    shards = [shard_indices(n, epoch=3, seed=7, rank=r, world_size=world, shuffle=True, even=True,
                            drop_last=drop_last) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # equal length on every rank
    flat = torch.cat(shards)
    assert ((flat >= 0) & (flat < n)).all()
    if drop_last:
        assert len(set(flat.tolist())) == len(flat) == n - n % world  # disjoint
    else:
        assert set(flat.tolist()) == set(range(n)) and len(flat) == world * -(-n // world)
    tests = [shard_indices(n, epoch=0, seed=0, rank=r, world_size=world, shuffle=False, even=False,
                           drop_last=False) for r in range(world)]
    assert sorted(torch.cat(tests).tolist()) == list(range(n))  # test: each index exactly once


def test_shuffle_depends_on_seed_and_epoch_only():
    kw = dict(rank=0, world_size=1, shuffle=True, even=True, drop_last=True)
    a = shard_indices(100, epoch=1, seed=0, **kw)
    assert torch.equal(a, shard_indices(100, epoch=1, seed=0, **kw))
    assert not torch.equal(a, shard_indices(100, epoch=2, seed=0, **kw))
    assert not torch.equal(a, shard_indices(100, epoch=1, seed=1, **kw))
    assert sorted(a.tolist()) == list(range(100))


def test_lengths_and_test_loader_order():
    train, test = build_loaders("digits", batch_size=100)
    assert (len(train), len(test), train.batch_size, test.batch_size) == (14, 4, 100, 100)
    assert len(list(train)) == 14 and [len(y) for _, y in test] == [100, 100, 100, 60]
    assert len(build_loaders("digits", batch_size=100, drop_last=False)[0]) == 15
    first = [x for x, _ in test]
    test.set_epoch(5)  # never shuffles nor augments
    assert all(torch.equal(a, b) for a, b in zip(first, (x for x, _ in test)))
    assert torch.equal(test.indices(), torch.arange(360))


def test_set_epoch_reproducible():
    train, _ = build_loaders("digits", batch_size=128)
    e0 = [(x, y) for x, y in train]
    train.set_epoch(1)
    e1 = [(x, y) for x, y in train]
    assert not torch.equal(e0[0][1], e1[0][1])
    train.set_epoch(0)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(e0, train))


@pytest.mark.parametrize("drop_last", [True, False])
def test_two_ranks(drop_last):
    world = 2
    loaders = [build_loaders("digits", batch_size=64, rank=r, world_size=world, seed=3, drop_last=drop_last)
               for r in range(world)]
    trains = [tr for tr, _ in loaders]
    for tr in trains:
        tr.set_epoch(2)
    assert len(trains[0]) == len(trains[1]) == len(list(trains[0])) == len(list(trains[1]))
    idx = [tr.indices() for tr in trains]
    if drop_last:  # 1437 images: 718 per rank, disjoint, one image left out
        assert len(idx[0]) == len(idx[1]) == 718 and not set(idx[0].tolist()) & set(idx[1].tolist())
    else:  # padded to 719 each, together covering everything
        assert len(idx[0]) == 719 and set(idx[0].tolist()) | set(idx[1].tolist()) == set(range(1437))
    # the labels each rank yields are those of its indices
    full, full_test = build_loaders("digits", batch_size=2000, augment=False, drop_last=False)
    labels = torch.cat([y for _, y in full])[torch.argsort(full.indices())]
    for tr, ix in zip(trains, idx):
        got = torch.cat([y for _, y in tr])
        assert torch.equal(got, labels[ix[: len(got)]])
    # test shards: disjoint, every image exactly once, same images as the unsharded test set
    tests = [te for _, te in loaders]
    assert sum(te.num_samples for te in tests) == 360 == tests[0].dataset_size
    x_all = next(iter(full_test))[0]
    for r, te in enumerate(tests):
        x = torch.cat([x for x, _ in te])
        assert torch.equal(x, x_all[r::world])
