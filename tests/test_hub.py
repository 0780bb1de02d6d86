"""torch.hub entry points, save_pretrained / from_pretrained (JSON + safetensors), run directories."""
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import mgiad
from mgiad.models import _hub as hub
from mgiad.utils.checkpoint import CheckpointError
from interop_helpers import one_thread, randomize_bn, same_outputs, write_run  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "mgiad": dict(widths=(16, 32), coarse_channels=8, group_size=4),
    "mgnet": dict(widths=(8, 16), smoothing_steps=2),
    "mgic": dict(widths=(16, 32), coarse_channels=8, group_size=4, blocks=1),
    "resnet18": dict(width_mult=0.125),
    "resnet20": dict(width_mult=0.5),
}


# ------------------------------------------------------------------------------- torch.hub
def test_hubconf_works_from_a_fresh_clone_without_install(tmp_path):
    clone = tmp_path / "mgiad-clone"
    clone.mkdir()
    shutil.copy(REPO / "hubconf.py", clone)
    shutil.copytree(REPO / "src", clone / "src", ignore=shutil.ignore_patterns("__pycache__"))
    installed = str(Path(mgiad.__file__).resolve().parents[1])
    script = textwrap.dedent(f"""
        import sys
        sys.path[:] = [p for p in sys.path if p != {installed!r}]  # as if mgiad were not installed
        try:
            import mgiad
            raise SystemExit("mgiad is still importable")
        except ImportError:
            pass
        import torch
        torch.set_num_threads(1)
        model = torch.hub.load({str(clone)!r}, "mgiad", source="local", width_mult=3, group_size=8)
        import mgiad
        sys.path.insert(0, {str(clone)!r})
        import hubconf
        assert mgiad.__file__.startswith({str(clone)!r}), mgiad.__file__
        assert mgiad.count_parameters(model) == 1264714, mgiad.count_parameters(model)
        assert model.config["width_mult"] == 3 and model.config["group_size"] == 8
        assert hubconf.dependencies == ["torch"]
        entries = sorted(n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_"))
        assert entries == ["mgiad", "mgic", "mgnet", "pretrained", "resnet18", "resnet20"], entries
        small = torch.hub.load({str(clone)!r}, "resnet20", source="local", num_classes=7, in_chans=1)
        assert small(torch.randn(2, 1, 32, 32)).shape == (2, 7)
        try:
            torch.hub.load({str(clone)!r}, "mgnet", source="local", group_sise=4)
            raise SystemExit("a misspelt argument was accepted")
        except ValueError as exc:
            assert "group_sise" in str(exc)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize("family", sorted(SMALL))
def test_hub_entry_per_family_forwards_kwargs(family):
    model = torch.hub.load(str(REPO), family, source="local", num_classes=5, **SMALL[family])
    reference = mgiad.create_model(family, num_classes=5, **SMALL[family])
    assert type(model) is type(reference) and model.config == reference.config
    assert mgiad.count_parameters(model) == mgiad.count_parameters(reference)


def test_hub_entry_loads_saved_weights(tmp_path):
    model = randomize_bn(mgiad.create_model("mgnet", **SMALL["mgnet"]))
    model.save_pretrained(tmp_path / "out")
    loaded = torch.hub.load(str(REPO), "mgnet", source="local", weights=str(tmp_path / "out"))
    assert same_outputs(model, loaded)
    with pytest.raises(ValueError, match="holds a 'mgnet' model"):
        torch.hub.load(str(REPO), "mgiad", source="local", weights=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="brings its own configuration"):
        torch.hub.load(str(REPO), "mgnet", source="local", weights=str(tmp_path / "out"), num_classes=3)


# -------------------------------------------------------------------- save / from_pretrained
@pytest.mark.parametrize("family", sorted(SMALL))
def test_save_and_from_pretrained_roundtrip(family, tmp_path):
    model = randomize_bn(mgiad.create_model(family, num_classes=7, **SMALL[family]))
    assert model.save_pretrained(tmp_path / "out") == tmp_path / "out"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config == model.config  # the create_model arguments, nothing else
    loaded = mgiad.from_pretrained(tmp_path / "out")
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    assert same_outputs(model, loaded)
    # the same through the weights file itself
    assert same_outputs(model, mgiad.from_pretrained(tmp_path / "out" / "model.safetensors"))


def test_weights_file_is_plain_safetensors(tmp_path):
    from safetensors import safe_open
    model = mgiad.create_model("mgiad", **SMALL["mgiad"])
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(model.state_dict())
        assert f.metadata()["model"] == "mgiad"
    # no pickle anywhere: an 8-byte header length, a JSON header, then raw tensor bytes
    data = (tmp_path / "model.safetensors").read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    assert header["head.fc.weight"]["dtype"] == "F32" and header["head.fc.weight"]["shape"] == [10, 32]


def test_weights_files_are_reproducible(tmp_path):
    model = randomize_bn(mgiad.create_model("mgiad", **SMALL["mgiad"]))
    first = hub.safetensors_bytes(model.state_dict(), {"model": "mgiad", "b": "1", "a": "2"})
    # the safetensors package orders the metadata at random: ours is sorted, the bytes repeat
    assert all(hub.safetensors_bytes(model.state_dict(), {"model": "mgiad", "b": "1", "a": "2"})
               == first for _ in range(5))
    model.save_pretrained(tmp_path / "a")
    model.save_pretrained(tmp_path / "b")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == \
        (tmp_path / "b" / "model.safetensors").read_bytes()
    data = (tmp_path / "a" / "model.safetensors").read_bytes()
    metadata = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    assert metadata["model"] == "mgiad" and list(metadata) == sorted(metadata)


def test_weights_are_read_without_the_safetensors_package(tmp_path, monkeypatch):
    import safetensors.torch as st
    state = {"f32": torch.randn(3, 4), "bf16": torch.randn(5).to(torch.bfloat16),
             "f16": torch.randn(2, 2).half(), "i64": torch.tensor(7), "u8": torch.arange(6, dtype=torch.uint8),
             "flag": torch.tensor([True, False, True]), "empty": torch.zeros(0, 3)}
    data = hub.safetensors_bytes(state)
    expected = st.load(data)
    ours = hub._parse_safetensors(data)
    assert ours.keys() == expected.keys() == state.keys()
    for k in state:
        assert ours[k].dtype == state[k].dtype and ours[k].shape == state[k].shape, k
        assert torch.equal(ours[k], state[k]), k
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    model = randomize_bn(mgiad.create_model("mgnet", **SMALL["mgnet"]))
    monkeypatch.undo()
    model.save_pretrained(tmp_path / "out")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    assert same_outputs(model, mgiad.from_pretrained(tmp_path / "out"))  # read by our parser
    # malformed files: an error naming the file, never a crash or an out-of-bounds read
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    header["f32"]["data_offsets"][1] += 4
    bad = json.dumps(header).encode()
    for broken in (data[:5], (10 ** 9).to_bytes(8, "little") + data[8:],
                   len(bad).to_bytes(8, "little") + bad + data[8 + length:], data[:-3]):
        with pytest.raises(CheckpointError, match="cannot read x.safetensors"):
            hub.load_safetensors_bytes(broken, "x.safetensors")


def test_from_pretrained_reads_run_directories_and_checkpoints(tmp_path):
    model = randomize_bn(mgiad.create_model("mgiad", in_chans=1, **SMALL["mgiad"]))
    run = write_run(tmp_path / "run", model, "digits")
    for path in (run, run / "best.pt", run / "last.pt", str(run)):
        loaded = mgiad.from_pretrained(path)
        assert same_outputs(model, loaded, in_chans=1) and not loaded.training
        assert loaded.preprocessing == {"dataset": "digits", "image_size": 32, "in_chans": 1,
                                        "mean": [0.3054], "std": [0.3236]}
    # converting a run to the shareable format keeps what predict needs
    mgiad.from_pretrained(run).save_pretrained(tmp_path / "shared")
    assert json.loads((tmp_path / "shared" / "preprocessing.json").read_text())["dataset"] == "digits"
    again = mgiad.from_pretrained(tmp_path / "shared")
    assert again.preprocessing["mean"] == [0.3054] and same_outputs(model, again, in_chans=1)
    assert hub.read_preprocessing(tmp_path / "shared")["image_size"] == 32
    assert hub.read_preprocessing(run)["std"] == [0.3236]


def test_weights_of_another_configuration_name_the_tensors(tmp_path):
    mgiad.create_model("mgiad", **SMALL["mgiad"]).save_pretrained(tmp_path / "a")
    other = mgiad.create_model("mgiad", widths=(16, 48), coarse_channels=8, group_size=4)
    with pytest.raises(CheckpointError) as info:
        hub.load_weights(other, tmp_path / "a")
    message = str(info.value)
    assert "another architecture or configuration" in message and "with other shapes" in message
    assert "(48," in message and "(32," in message  # the disagreeing shapes are shown
    # a config.json edited after saving: the tensors say what is wrong
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    config["num_classes"] = 4
    (tmp_path / "a" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"head\.fc\.weight \(10, 32\) vs \(4, 32\)"):
        mgiad.from_pretrained(tmp_path / "a")
    # another family entirely
    run = write_run(tmp_path / "run", mgiad.create_model("mgnet", in_chans=1, **SMALL["mgnet"]))
    with pytest.raises(CheckpointError, match="missing"):
        hub.load_weights(mgiad.create_model("mgiad", in_chans=1, **SMALL["mgiad"]), run)


def test_missing_safetensors_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    model = mgiad.create_model("resnet20", width_mult=0.5)
    with pytest.raises(hub.MissingDependencyError, match="constraints.txt safetensors"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out" / "config.json").exists()
    # a training checkpoint does not need safetensors
    write_run(tmp_path / "run", model, "cifar10")
    assert same_outputs(model, mgiad.from_pretrained(tmp_path / "run"))


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nothing", "does not exist"),
    (lambda p: p, "holds no saved model"),
    (lambda p: [(p / "config.json").write_text("{}"), p][1], "neither model.safetensors"),
])
def test_bad_paths_say_what_is_expected(tmp_path, make, message):
    with pytest.raises(FileNotFoundError, match=message):
        mgiad.from_pretrained(make(tmp_path))


def test_corrupt_files_are_checkpoint_errors(tmp_path):
    mgiad.create_model("resnet20", width_mult=0.5).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        mgiad.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"num_classes": 10}')
    with pytest.raises(CheckpointError, match="does not name a model"):
        mgiad.from_pretrained(tmp_path)
    (tmp_path / "x.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        mgiad.from_pretrained(tmp_path / "x.pt")


def test_a_run_directory_is_not_overwritten(tmp_path):
    model = mgiad.create_model("resnet20", width_mult=0.5)
    run = write_run(tmp_path / "run", model, "cifar10")
    before = (run / "config.json").read_text()
    with pytest.raises(ValueError, match="training run directory"):
        model.save_pretrained(run)
    assert (run / "config.json").read_text() == before and not (run / "model.safetensors").exists()


def test_only_create_model_models_can_be_saved(tmp_path):
    with pytest.raises(ValueError, match="mgiad.create_model"):
        hub.save_pretrained(torch.nn.Linear(2, 2), tmp_path)
    from mgiad.export import fuse_bn
    fused = fuse_bn(mgiad.create_model("resnet20", width_mult=0.5))
    with pytest.raises(ValueError, match="folded"):
        hub.save_pretrained(fused, tmp_path)
