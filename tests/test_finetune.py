"""Fine-tuning and own data from the command line: --dataset folder (ImageFolder layout, class
names kept for predict), --pretrained NAME and --init-from RUN (new head when the class count
differs, and a message saying what was loaded)."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import mgiad
from mgiad.cli import main
from mgiad.data import build_loaders, dataset_info
from mgiad.data.digits import load_digits_split

TINY = ["--model", "mgiad", "--widths", "8", "16", "--coarse-channels", "4", "--group-size", "2"]
FAST = ["--epochs", "1", "--batch-size", "16", "--no-progress"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """digits 0, 1, 2 as PNG files in train/<class>/ and val/<class>/, RGB, 12x12."""
    root = tmp_path_factory.mktemp("own")
    splits = load_digits_split()
    names = ["zero", "one", "two"]
    for split, sub, per_class in (("train", "train", 24), ("test", "val", 6)):
        x, y = splits[split]
        for label, name in enumerate(names):
            (root / sub / name).mkdir(parents=True)
            for i, img in enumerate(x[y == label][:per_class]):
                arr = np.repeat(img[0].numpy()[..., None], 3, axis=2)
                Image.fromarray(arr).resize((12, 12)).save(root / sub / name / f"{i}.png")
    return root


def test_folder_dataset_reads_classes_and_sizes(folder):
    info = dataset_info("folder", folder)
    assert info.class_names == ("one", "two", "zero") and info.num_classes == 3
    assert (info.train_size, info.test_size, info.in_chans) == (72, 18, 3)
    train, test = build_loaders("folder", folder, batch_size=8)
    x, y = next(iter(test))
    assert x.shape == (8, 3, info.image_size, info.image_size) and y.max() < 3
    with pytest.raises(mgiad.data.DatasetError, match="train/<class>"):
        dataset_info("folder", folder / "train")


def test_train_on_a_folder_then_predict_names_its_classes(folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "folder", "--data-dir", str(folder), "--out", str(out),
                 *TINY, *FAST]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["class_names"] == ["one", "two", "zero"] and config["num_classes"] == 3
    assert mgiad.load_model(out).preprocessing["class_names"] == ["one", "two", "zero"]
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), str(folder / "val" / "two" / "0.png")]) == 0
    printed = capsys.readouterr().out
    assert any(name in printed for name in ("one", "two", "zero"))
    assert main(["eval", "--checkpoint", str(out)]) == 0  # the run's folder, as recorded
    assert "18" in capsys.readouterr().out  # the 18 validation images


def test_init_from_a_run_with_other_classes_gets_a_new_head(folder, tmp_path, capsys):
    source = tmp_path / "digits"
    assert main(["train", "--out", str(source), *TINY, *FAST]) == 0  # 10 classes, 1 channel
    capsys.readouterr()
    out = tmp_path / "tuned"
    assert main(["train", "--dataset", "folder", "--data-dir", str(folder), "--init-from",
                 str(source), "--out", str(out), *FAST]) == 2  # RGB images, a grayscale model
    err = capsys.readouterr().err
    assert "input channels" in err and "Traceback" not in err and len(err.splitlines()) == 1
    rgb = tmp_path / "rgb"
    assert main(["train", "--dataset", "folder", "--data-dir", str(folder), "--out", str(rgb),
                 *TINY, *FAST]) == 0
    two = tmp_path / "two"  # the same images, two of the three classes
    for sub in ("train", "val"):
        for name in ("one", "zero"):
            shutil.copytree(folder / sub / name, two / sub / name)
    capsys.readouterr()
    assert main(["train", "--dataset", "folder", "--data-dir", str(two), "--init-from",
                 str(rgb), "--out", str(out), *FAST]) == 0
    log = capsys.readouterr().out
    assert f"initialised from {rgb / 'best.pt'}" in log
    assert "classifier (head.fc.bias, head.fc.weight) is new" in log and "2 classes" in log
    tuned = torch.load(out / "last.pt", weights_only=True)
    assert tuned["config"]["train"]["init_from"] == str(rgb)
    assert tuned["config"]["model_args"]["widths"] == [8, 16]  # the source's architecture
    assert tuned["config"]["class_names"] == ["one", "zero"]


def test_pretrained_name_gets_a_new_head_for_other_classes(folder, tmp_path, capsys):
    name = mgiad.list_pretrained()[0]
    model = mgiad.create_model(name, pretrained=True)
    out = tmp_path / "tuned"
    assert main(["train", "--dataset", "digits", "--pretrained", name, "--out", str(out),
                 "--epochs", "1", "--batch-size", "64", "--no-progress"]) == 0
    log = capsys.readouterr().out
    assert f"initialised from pretrained {name}" in log and "classifier included" in log
    assert main(["train", "--pretrained", name, "--width-mult", "2", "--out", str(tmp_path / "x")]) == 2
    assert "drop --width-mult" in capsys.readouterr().err
    assert main(["train", "--pretrained", name, "--model", "resnet20", "--out", str(tmp_path / "y")]) == 2
    assert "drop --model resnet20" in capsys.readouterr().err
    assert model.num_classes == 10


def test_create_model_pretrained_with_other_classes_is_ready_to_train():
    name = mgiad.list_pretrained()[0]
    model = mgiad.create_model(name, pretrained=True, num_classes=5)
    assert model.training and model.num_classes == 5
    assert "class_names" not in model.preprocessing
