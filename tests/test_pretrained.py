"""Pretrained weights (mgiad.pretrained): names, manifest, create_model(name, pretrained=True),
torch.hub, `mgiad predict --model`, `mgiad eval --model`, and the models shipped in the package.

The five Fashion-MNIST networks are trained elsewhere; here a tiny MGiaD trained for one epoch on
the bundled digits is shipped into a temporary weights folder ($MGIAD_PRETRAINED_DIR). The tests
of the real shipped models are parametrized over the package's manifest (one test per entry).
"""
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import mgiad
from mgiad.experiments import release as pretrained
from mgiad.utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mgiad.cli import main
from mgiad.training import TrainConfig, train
from train_helpers import DATA_DIR
from interop_helpers import one_thread  # noqa: F401  (autouse: one thread per test module)

REPO = Path(__file__).resolve().parents[1]
DATA = DATA_DIR  # the real Fashion-MNIST files ($MGIAD_DATA_DIR, default ../shared/data)
PACKAGE_WEIGHTS = Path(mgiad.__file__).resolve().parent / "weights"
TINY = dict(widths=(8, 16), coarse_channels=4, group_size=2)
NAME = "mgiad_8_16_ck4_gs2.digits_e1"


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A finished 1-epoch digits run, shipped with add_run into a temporary weights folder."""
    root = tmp_path_factory.mktemp("pretrained")
    summary = train(TrainConfig(model="mgiad", model_args=dict(TINY), dataset="digits", epochs=1,
                                batch_size=32, lr=0.05, out=str(root / "run"), progress=False),
                    log=quiet)
    entry = pretrained.add_run(root / "run", directory=root / "weights", log=quiet)
    return SimpleNamespace(run=root / "run", weights=root / "weights", entry=entry, summary=summary)


@pytest.fixture
def env(shipped, monkeypatch):
    monkeypatch.setenv(pretrained.ENV_VAR, str(shipped.weights))
    return shipped


def digits_batch(n=64):
    from mgiad.data import build_loaders
    _, test = build_loaders("digits", batch_size=n)
    return next(iter(test))


def outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


# ----------------------------------------------------------------------------------- names
def test_names_state_the_architecture_and_the_dataset():
    a = pretrained.architecture_name
    fm3 = dict(widths=(16, 32, 64), coarse_channels=16, num_classes=10, in_chans=1)
    assert [a("mgiad", {**fm3, "group_size": g}) for g in (4, 8, 16)] == [
        "mgiad_16_32_64_ck16_gs4", "mgiad_16_32_64_ck16_gs8", "mgiad_16_32_64_ck16_gs16"]
    assert a("mgnet", dict(widths=[16, 32, 64], smoothing_steps=3, transfer_norm=False,
                           in_chans=1)) == "mgnet_16_32_64_nu3_tn0"
    assert a("resnet20", dict(in_chans=1, num_classes=10)) == "resnet20"
    # non-default arguments appear; execution options and dataset-given sizes do not
    assert a("resnet20", dict(width_mult=0.5, shortcut="B")) == "resnet20_x0p5_scb"
    assert a("mgiad", dict(width_mult=3, impl="reference", recompute=True)) == \
        "mgiad_64_128_256_256_x3_ck64_gs8"
    assert a("mgiad", {**fm3, "group_size": 8, "pre_smooth": 2}) == "mgiad_16_32_64_ck16_gs8_pre2"
    with pytest.raises(ValueError, match="no argument"):
        a("resnet20", dict(group_size=4))
    assert pretrained.default_tag("fashion-mnist", 30, 0, "paper") == "fmnist_paper_e30"
    assert pretrained.default_tag("fmnist", 400, 2) == "fmnist_e400_s2"
    assert pretrained.default_tag("imagenet", 90) == "in1k_e90"


def test_shipping_a_run_records_everything(shipped):
    e = shipped.entry
    assert e["name"] == NAME and e["model"] == "mgiad" and e["file"] == NAME + ".safetensors"
    assert e["model_args"]["widths"] == [8, 16] and e["model_args"]["in_chans"] == 1
    assert "impl" not in e["model_args"] and "recompute" not in e["model_args"]
    assert e["preprocessing"]["dataset"] == "digits" and e["preprocessing"]["mean"] == [0.3054]
    assert e["preprocessing"]["class_names"] == [str(i) for i in range(10)]
    assert "resized to 32x32" in e["preprocessing"]["description"]
    # the accuracy of the final model, measured again: the run's own figure
    assert e["accuracy"]["test_acc"] == pytest.approx(shipped.summary["final_test_acc"], abs=1e-9)
    assert e["accuracy"]["test_images"] == 360
    assert e["accuracy"]["test_acc_first500"] == pytest.approx(e["accuracy"]["test_acc"])  # all 360
    assert e["accuracy"]["train_acc"] == shipped.summary["train_acc"]
    assert e["training"]["epochs"] == 1 and e["training"]["seed"] == 0
    assert e["training"]["recipe"]["lr"] == 0.05 and e["training"]["recipe"]["amp"] is False
    manifest = json.loads((shipped.weights / "manifest.json").read_text())
    assert manifest["format"] == 1 and manifest["models"] == [e]
    data = (shipped.weights / e["file"]).read_bytes()
    assert len(data) == e["bytes"]
    import hashlib
    assert hashlib.sha256(data).hexdigest() == e["sha256"]
    assert sorted(p.name for p in shipped.weights.iterdir()) == sorted(["manifest.json", e["file"]])


def test_list_pretrained(env, monkeypatch, tmp_path):
    assert mgiad.list_pretrained() == [NAME]
    assert mgiad.list_pretrained("*digits*") == [NAME] and mgiad.list_pretrained("*fmnist*") == []
    monkeypatch.setenv(pretrained.ENV_VAR, str(tmp_path))  # a folder without a manifest
    assert mgiad.list_pretrained() == []


# ---------------------------------------------------------------------------- create_model
def test_create_model_pretrained_is_the_runs_final_model(env):
    model = mgiad.create_model(NAME, pretrained=True)
    final = mgiad.from_pretrained(env.run / "last.pt")
    x, _ = digits_batch()
    assert model.training and not final.training  # create_model as timm's; loaders: eval mode
    assert torch.equal(outputs(model.eval(), x), outputs(final, x))
    assert model.config == final.config
    assert model.pretrained_cfg == env.entry
    assert model.preprocessing == {**final.preprocessing, "class_names": [str(i) for i in range(10)]}
    # the name without weights: the same architecture, freshly initialised, as create_model does
    fresh = mgiad.create_model(NAME)
    assert fresh.training and fresh.config == final.config and fresh.pretrained_cfg == env.entry
    assert not torch.equal(outputs(fresh, x), outputs(final, x))
    assert not hasattr(mgiad.create_model("mgiad", **TINY), "pretrained_cfg")  # unchanged


def test_kwargs_must_agree_with_the_recorded_architecture(env):
    final = mgiad.from_pretrained(env.run / "last.pt")
    x, _ = digits_batch(8)
    agreeing = mgiad.create_model(NAME, pretrained=True, widths=(8, 16), in_chans=1, num_classes=10)
    assert torch.equal(outputs(agreeing, x), outputs(final, x))
    with pytest.raises(ValueError, match=r"group_size=4 \(recorded: 2\)"):
        mgiad.create_model(NAME, pretrained=True, group_size=4)
    with pytest.raises(ValueError, match="in_chans=3"):
        mgiad.create_model(NAME, pretrained=True, in_chans=3)
    with pytest.raises(ValueError, match="unknown argument.*group_sise"):
        mgiad.create_model(NAME, pretrained=True, group_sise=4)
    # how it runs may be chosen: the same network
    reference = mgiad.create_model(NAME, pretrained=True, impl="reference")
    assert reference.config["impl"] == "reference"
    assert torch.allclose(outputs(reference, x), outputs(final, x), atol=1e-5)


def test_another_num_classes_gets_a_new_classifier(env, tmp_path):
    final = mgiad.from_pretrained(env.run / "last.pt")
    model = mgiad.create_model(NAME, pretrained=True, num_classes=3)
    x, _ = digits_batch(8)
    assert model.num_classes == 3 and model.config["num_classes"] == 3
    assert outputs(model, x).shape == (8, 3)
    assert model.get_classifier().out_features == 3
    with torch.no_grad():  # the body is the pretrained one
        assert torch.equal(model.forward_features(x), final.eval().forward_features(x))
    assert "class_names" not in model.preprocessing
    model.save_pretrained(tmp_path / "out")  # and it is a normal model from then on
    assert torch.equal(outputs(mgiad.from_pretrained(tmp_path / "out"), x), outputs(model, x))


def test_names_that_are_not_weights_say_which_are(env):
    with pytest.raises(ValueError, match=f"architecture family.*{NAME}"):
        mgiad.create_model("mgiad", pretrained=True)
    with pytest.raises(ValueError, match=f"no pretrained weights for 'resnet20'.*{NAME}"):
        mgiad.create_model("resnet20", pretrained=True)
    with pytest.raises(ValueError, match=f"add the tag.*{NAME}"):
        mgiad.create_model(NAME.split(".")[0], pretrained=True)
    with pytest.raises(ValueError, match=f"unknown model.*did you mean '{NAME}'"):
        mgiad.create_model(NAME.replace("e1", "e2"))


def copy_weights(shipped, tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    shutil.copytree(shipped.weights, folder)
    monkeypatch.setenv(pretrained.ENV_VAR, str(folder))
    return folder


def test_missing_or_corrupt_files_are_named(shipped, tmp_path, monkeypatch):
    folder = copy_weights(shipped, tmp_path, monkeypatch)
    file = folder / shipped.entry["file"]
    data = file.read_bytes()
    file.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one flipped bit
    with pytest.raises(CheckpointError, match=f"{file}.*corrupt.*sha256"):
        mgiad.create_model(NAME, pretrained=True)
    file.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    with pytest.raises(CheckpointError, match="git lfs pull"):
        mgiad.create_model(NAME, pretrained=True)
    file.unlink()
    with pytest.raises(FileNotFoundError, match=f"{NAME}.*missing: {file}"):
        mgiad.create_model(NAME, pretrained=True)
    # a file that matches its recorded hash but is no safetensors file
    manifest = json.loads((folder / "manifest.json").read_text())
    file.write_bytes(b"garbage")
    import hashlib
    manifest["models"][0]["sha256"] = hashlib.sha256(b"garbage").hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=f"cannot read weights file {file}"):
        mgiad.create_model(NAME, pretrained=True)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=f"cannot read the pretrained manifest {folder}"):
        mgiad.list_pretrained()
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "models": [{"name": NAME}]}))
    with pytest.raises(CheckpointError, match="lacks 'model'"):
        mgiad.create_model(NAME, pretrained=True)


def test_weights_load_without_the_safetensors_package(env, monkeypatch):
    expected = mgiad.create_model(NAME, pretrained=True)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    model = mgiad.create_model(NAME, pretrained=True)
    for (k, a), (_, b) in zip(expected.state_dict().items(), model.state_dict().items()):
        assert a.dtype == b.dtype and torch.equal(a, b), k


# ------------------------------------------------------------------------------------- add
def test_unfinished_runs_are_refused(shipped, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(shipped.run, run)
    (run / "summary.json").unlink()
    with pytest.raises(ValueError, match="unfinished.*no summary.json"):
        pretrained.add_run(run, directory=tmp_path / "w", log=quiet)
    shutil.copy(shipped.run / "summary.json", run / "summary.json")
    state = load_checkpoint(run / "last.pt")
    state["config"]["train"]["epochs"] = 2  # extended: last.pt is at epoch 1 of 2
    save_checkpoint(state, run / "last.pt")
    with pytest.raises(ValueError, match="unfinished: last.pt is at epoch 1 .* of 2"):
        pretrained.add_run(run, directory=tmp_path / "w", log=quiet)
    assert not (tmp_path / "w").exists()


def test_add_checks_names_and_refuses_to_overwrite(shipped, tmp_path, monkeypatch):
    folder = tmp_path / "w"
    with pytest.raises(ValueError, match="must start with the architecture's name 'mgiad_8_16_ck4_gs2'"):
        pretrained.add_run(shipped.run, name="mgiad_8_16_ck4_gs4.digits_e1", directory=folder, log=quiet)
    with pytest.raises(ValueError, match="must start with its dataset, 'digits'"):
        pretrained.add_run(shipped.run, tag="fmnist_e1", directory=folder, log=quiet)
    with pytest.raises(ValueError, match="not '<architecture>.<tag>'"):
        pretrained.add_run(shipped.run, name="Mgiad_8_16_ck4_gs2.digits", directory=folder, log=quiet)
    # a test accuracy that does not reproduce the run's: nothing is written
    monkeypatch.setattr(pretrained, "MAX_RUN_DIFFERENCE", -1.0)
    with pytest.raises(ValueError, match="Nothing was written"):
        pretrained.add_run(shipped.run, directory=folder, log=quiet)
    assert not folder.exists()
    monkeypatch.undo()
    first = pretrained.add_run(shipped.run, tag="digits_a", directory=folder, log=quiet)
    with pytest.raises(ValueError, match="already in"):
        pretrained.add_run(shipped.run, tag="digits_a", directory=folder, log=quiet)
    pretrained.add_run(shipped.run, tag="digits_a", directory=folder, replace=True, log=quiet)
    pretrained.add_run(shipped.run, tag="digits_b", directory=folder, log=quiet)
    models = pretrained.read_manifest(folder)
    assert [e["name"] for e in models] == ["mgiad_8_16_ck4_gs2.digits_a", "mgiad_8_16_ck4_gs2.digits_b"]
    assert models[0]["sha256"] == first["sha256"]  # shipping the same run again: the same file
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no staged leftovers


def test_command_line_add_list_remove(shipped, tmp_path, capsys):
    folder = str(tmp_path / "w")
    assert pretrained.main(["add", str(shipped.run), "--weights-dir", folder]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert pretrained.main(["list", "--weights-dir", folder]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(NAME) and f"{shipped.entry['accuracy']['test_acc']:.2f}%" in line
    assert pretrained.main(["add", str(shipped.run), "--weights-dir", folder]) == 2
    assert "already in" in capsys.readouterr().err
    assert pretrained.main(["remove", NAME, "--weights-dir", folder]) == 0
    assert pretrained.read_manifest(folder) == [] and not (tmp_path / "w" / f"{NAME}.safetensors").exists()


# ------------------------------------------------------------------------------- torch.hub
def test_torch_hub_loads_shipped_weights(env):
    final = mgiad.from_pretrained(env.run / "last.pt")
    x, _ = digits_batch(8)
    by_name = torch.hub.load(str(REPO), "pretrained", NAME, source="local")
    assert torch.equal(outputs(by_name, x), outputs(final, x)) and by_name.pretrained_cfg["name"] == NAME
    # a family's entry: the one shipped model agreeing with the tag and arguments given
    for kwargs in ({}, {"tag": "digits_e1"}, {"group_size": 2, "widths": [8, 16]}):
        model = torch.hub.load(str(REPO), "mgiad", source="local", pretrained=True, **kwargs)
        assert torch.equal(outputs(model, x), outputs(final, x)), kwargs
    three = torch.hub.load(str(REPO), "mgiad", source="local", pretrained=True, num_classes=3)
    assert three.num_classes == 3
    with pytest.raises(ValueError, match=f"no pretrained 'mgiad' model matches group_size=4.*{NAME}"):
        torch.hub.load(str(REPO), "mgiad", source="local", pretrained=True, group_size=4)
    with pytest.raises(ValueError, match="no pretrained 'mgnet' model"):
        torch.hub.load(str(REPO), "mgnet", source="local", pretrained=True)
    with pytest.raises(ValueError, match="add pretrained=True"):
        torch.hub.load(str(REPO), "mgiad", source="local", tag="digits_e1")
    with pytest.raises(ValueError, match="not both"):
        torch.hub.load(str(REPO), "mgiad", source="local", pretrained=True, weights=str(env.run))


def test_several_matches_ask_to_choose(shipped, tmp_path, monkeypatch):
    folder = copy_weights(shipped, tmp_path, monkeypatch)
    pretrained.add_run(shipped.run, tag="digits_other", directory=folder, log=quiet)
    with pytest.raises(ValueError, match="2 pretrained 'mgiad' models match"):
        torch.hub.load(str(REPO), "mgiad", source="local", pretrained=True)
    model = torch.hub.load(str(REPO), "mgiad", source="local", pretrained=True, tag="digits_other")
    assert model.pretrained_cfg["name"] == "mgiad_8_16_ck4_gs2.digits_other"


# -------------------------------------------------------------------------- predict / eval
def test_predict_with_a_pretrained_model_as_with_its_checkpoint(env, tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, shape in enumerate([(32, 32), (8, 8), (40, 24, 3)]):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i}.png")
    results = []
    for source in (["--model", NAME], ["--checkpoint", str(env.run / "last.pt")]):
        assert main(["predict", *source, str(folder), "--json", "--device", "cpu"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0] == results[1]
    assert len(results[0]) == 3 and all(len(r["predictions"]) == 5 for r in results[0])
    assert main(["predict", "--model", NAME, str(folder / "0.png"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == str(folder / "0.png") and "%" in out
    with pytest.raises(SystemExit):  # argparse: not one of the shipped names
        main(["predict", "--model", "resnet20.nothing", str(folder)])
    assert "invalid choice" in capsys.readouterr().err


def test_eval_a_pretrained_model_reports_the_recorded_accuracy(env, capsys):
    recorded = env.entry["accuracy"]["test_acc"]
    assert main(["eval", "--model", NAME, "--dataset", "digits", "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == NAME and result["dataset"] == "digits" and result["images"] == 360
    assert result["test_acc"] == pytest.approx(recorded, abs=1e-9)
    assert result["recorded_test_acc"] == recorded and result["difference"] == pytest.approx(0, abs=1e-9)
    assert main(["eval", "--model", NAME, "--device", "cpu"]) == 0  # its dataset by default
    out = capsys.readouterr().out
    assert f"accuracy {recorded:.2f}%" in out and f"recorded {recorded:.2f}%" in out
    assert "difference +0.00 points" in out


def test_eval_arguments(env, capsys):
    assert main(["eval", "--device", "cpu"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["eval", "--model", "mgiad", "--device", "cpu"]) == 2  # an architecture: no weights
    assert "pretrained model" in capsys.readouterr().err
    assert main(["eval", "--model", NAME, "--checkpoint", str(env.run), "--device", "cpu"]) == 2
    assert "with --checkpoint" in capsys.readouterr().err
    assert main(["eval", "--model", NAME, "--group-size", "4", "--device", "cpu"]) == 2
    assert "group_size=4 (recorded: 2)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    assert "default: None" not in text and NAME in text


def test_eval_of_a_run_reads_its_recorded_data_folder(shipped, tmp_path, monkeypatch, capsys):
    import mgiad.data
    real = mgiad.data.build_loaders
    seen = []

    def spy(name, data_dir=None, **kwargs):
        seen.append(data_dir)
        return real(name, data_dir, **kwargs)

    monkeypatch.setattr(mgiad.data, "build_loaders", spy)
    run = tmp_path / "run"
    shutil.copytree(shipped.run, run)
    state = load_checkpoint(run / "last.pt")
    recorded = tmp_path / "recorded-data"
    recorded.mkdir()
    state["config"]["train"]["data_dir"] = str(recorded)
    save_checkpoint(state, run / "last.pt")
    argv = ["eval", "--checkpoint", str(run / "last.pt"), "--device", "cpu", "--json"]
    assert main(argv) == 0 and seen[-1] == str(recorded)
    assert main(argv + ["--data-dir", str(tmp_path)]) == 0 and seen[-1] == str(tmp_path)
    # the recorded folder is not here (another machine): $MGIAD_DATA_DIR / ./.data
    recorded.rmdir()
    monkeypatch.setenv("MGIAD_DATA_DIR", str(tmp_path))
    assert main(argv) == 0 and seen[-1] is None
    capsys.readouterr()


# ------------------------------------------------------------------ the models in the package
SHIPPED = pretrained.read_manifest(PACKAGE_WEIGHTS)


def test_the_package_manifest_is_consistent_and_packaged():
    manifest = json.loads((PACKAGE_WEIGHTS / "manifest.json").read_text())
    assert manifest["format"] == 1 and isinstance(manifest["models"], list)
    import hashlib
    for e in SHIPPED:
        arch, tag = e["name"].split(".")
        assert arch == pretrained.architecture_name(e["model"], e["model_args"]), e["name"]
        assert tag.startswith(pretrained.DATASET_TAGS[e["preprocessing"]["dataset"]])
        data = (PACKAGE_WEIGHTS / e["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e["sha256"], e["file"]
    files = {p.name for p in PACKAGE_WEIGHTS.iterdir()} - {"manifest.json", "__pycache__"}
    assert files == {e["file"] for e in SHIPPED}  # no unlisted weights
    text = (REPO / "pyproject.toml").read_text()
    assert '"weights/*.json"' in text and '"weights/*.safetensors"' in text


def shipped_model(entry, monkeypatch):
    if not (DATA / entry["preprocessing"]["dataset"]).is_dir():
        pytest.skip(f"{DATA / entry['preprocessing']['dataset']} absent")
    monkeypatch.setenv(pretrained.ENV_VAR, str(PACKAGE_WEIGHTS))  # the package's, whatever is set
    return mgiad.create_model(entry["name"], pretrained=True)


@pytest.mark.parametrize("entry", SHIPPED, ids=[e["name"] for e in SHIPPED])
def test_shipped_model_on_500_test_images(entry, monkeypatch):
    from mgiad.data import build_loaders
    model = shipped_model(entry, monkeypatch)
    _, test = build_loaders(entry["preprocessing"]["dataset"], DATA, batch_size=500)
    x, y = next(iter(test))  # the first 500 images of the test set (never shuffled)
    acc = 100.0 * (outputs(model, x).argmax(1) == y).float().mean().item()
    # against what `add` measured on the same 500 images (the whole test set's accuracy can be a
    # few points away from a 500-image slice's); 2 points: other platforms may flip a few argmaxes
    recorded = entry["accuracy"].get("test_acc_first500", entry["accuracy"]["test_acc"])
    assert abs(acc - recorded) <= 2.0, (acc, entry["accuracy"])


@pytest.mark.slow
@pytest.mark.parametrize("entry", SHIPPED, ids=[e["name"] for e in SHIPPED])
def test_shipped_model_on_the_full_test_set(entry, monkeypatch):
    from mgiad.data import build_loaders
    from mgiad.train import Runtime, evaluate
    model = shipped_model(entry, monkeypatch)
    _, test = build_loaders(entry["preprocessing"]["dataset"], DATA, batch_size=500)
    result = evaluate(model, test, Runtime(torch.device("cpu")))
    assert test.dataset_size == entry["accuracy"]["test_images"]
    assert abs(result["acc"] - entry["accuracy"]["test_acc"]) <= 0.01 + 1e-9, (result, entry["accuracy"])


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.update(final_test_acc=float("nan")), "final_test_acc must be a finite number"),
    (lambda s: s.update(final_test_acc="97.5"), "final_test_acc must be a number"),
    (lambda s: s.pop("final_test_acc"), "records no final_test_acc"),
    (lambda s: s.update(best_test_acc=float("inf")), "best_test_acc must be a finite number"),
    ("[1, 2]", "not an object"), ("{", "not JSON")])
def test_a_malformed_summary_is_refused_in_one_line_and_never_shipped(shipped, tmp_path, capsys,
                                                                     damage, message):
    run = tmp_path / "run"
    shutil.copytree(shipped.run, run)
    if isinstance(damage, str):
        (run / "summary.json").write_text(damage)
    else:
        summary = json.loads((run / "summary.json").read_text())
        damage(summary)
        (run / "summary.json").write_text(json.dumps(summary))
    folder = tmp_path / "w"
    assert pretrained.main(["add", str(run), "--weights-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert pretrained.read_manifest(folder) == []
    # with other runs: this one is skipped with a warning naming it, the good one is shipped
    assert pretrained.main(["add", str(run), str(shipped.run), "--weights-dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"warning: {run} skipped" in err and message in err and "1 of 2 runs skipped" in err
    assert [e["name"] for e in pretrained.read_manifest(folder)] == [NAME]


def test_a_manifest_with_a_non_finite_accuracy_is_refused(shipped, tmp_path):
    folder = tmp_path / "w"
    shutil.copytree(shipped.weights, folder)
    manifest = json.loads((folder / pretrained.MANIFEST_NAME).read_text())
    manifest["models"][0]["accuracy"]["test_acc"] = float("nan")
    (folder / pretrained.MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="accuracy.test_acc must be a finite number, got nan"):
        pretrained.read_manifest(folder)
