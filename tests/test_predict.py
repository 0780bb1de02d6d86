"""`mgiad predict`: image files and folders, the checkpoint's preprocessing, top-5, errors."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mgiad
from mgiad.cli import main
from mgiad.predict import (CLASS_NAMES, ImageReadError, Preprocessing, find_images, load_image,
                           predict_files)
from interop_helpers import one_thread, randomize_bn, write_run  # noqa: F401  (one_thread: autouse)

Image = pytest.importorskip("PIL.Image", reason="predict reads images with Pillow")

TINY = dict(widths=(8, 16), coarse_channels=4, group_size=4)


def tiny(in_chans, num_classes=10, seed=0):
    torch.manual_seed(seed)
    return randomize_bn(mgiad.create_model("mgiad", in_chans=in_chans, num_classes=num_classes, **TINY))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs") / "digits", tiny(1), "digits")


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs") / "cifar", tiny(3, seed=1), "cifar10")


def save(array, path):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def random_pixels(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def by_hand(model, x_uint8, mean, std):
    """What the model was trained on: (x / 255 - mean) / std."""
    mean = torch.tensor(mean).view(1, -1, 1, 1)
    std = torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        return torch.softmax(model.eval()((x_uint8.float() / 255 - mean) / std), dim=1)


def test_predictions_use_the_checkpoint_normalisation(digits_run, tmp_path):
    model = mgiad.from_pretrained(digits_run)
    pixels = [random_pixels((32, 32), seed) for seed in range(3)]
    files = [save(p, tmp_path / f"{i}.png") for i, p in enumerate(pixels)]
    pre = Preprocessing.resolve(model.preprocessing, model.in_chans)
    assert pre == Preprocessing(32, 1, (0.3054,), (0.3236,), "digits")
    results = list(predict_files(model, files, pre, names=CLASS_NAMES["digits"], batch_size=2))
    expected = by_hand(model, torch.from_numpy(np.stack(pixels))[:, None], [0.3054], [0.3236])
    for r, probs in zip(results, expected):
        assert [p["rank"] for p in r["predictions"]] == [1, 2, 3, 4, 5]
        top = probs.topk(5)
        assert [p["index"] for p in r["predictions"]] == top.indices.tolist()
        assert [p["label"] for p in r["predictions"]] == [str(i) for i in top.indices.tolist()]
        assert np.allclose([p["probability"] for p in r["predictions"]], top.values, atol=1e-6)


def test_images_are_converted_and_resized_as_in_training(tmp_path):
    rgb = Preprocessing(32, 3, (0.5,) * 3, (0.5,) * 3, "cifar10")
    gray = Preprocessing(32, 1, (0.5,), (0.5,), "digits")
    # a grayscale 8x8 image for an RGB model, an RGB JPEG for a grayscale model, any size
    assert load_image(save(random_pixels((8, 8), 0), tmp_path / "g.png"), rgb).shape == (3, 32, 32)
    assert load_image(save(random_pixels((40, 50, 3), 1), tmp_path / "c.jpg"), gray).shape == (1, 32, 32)
    # an 8x8 digit is upsampled as the digits dataset was (bilinear, to within rounding)
    digit = random_pixels((8, 8), 2)
    ours = load_image(save(digit, tmp_path / "d.png"), gray).float()
    theirs = F.interpolate(torch.from_numpy(digit).float()[None, None], size=(32, 32),
                           mode="bilinear", align_corners=False)[0]
    assert (ours - theirs).abs().max() <= 1.0
    # an image already at the input size is used pixel for pixel
    exact = random_pixels((32, 32, 3), 3)
    assert torch.equal(load_image(save(exact, tmp_path / "e.png"), rgb),
                       torch.from_numpy(exact).permute(2, 0, 1))
    # Fashion-MNIST: 28x28 content zero-padded to 32x32, as the dataset is
    item = random_pixels((28, 28), 4)
    padded = load_image(save(item, tmp_path / "f.png"),
                        Preprocessing(32, 1, (0.5,), (0.5,), "fashion-mnist"))[0]
    assert torch.equal(padded[2:30, 2:30], torch.from_numpy(item))
    assert padded.sum() == padded[2:30, 2:30].sum()
    # ImageNet: short side to 256, central 224 crop
    photo = save(random_pixels((300, 400, 3), 5), tmp_path / "p.jpg")
    assert load_image(photo, Preprocessing(224, 3, (0.5,) * 3, (0.5,) * 3, "imagenet")).shape == (3, 224, 224)


def test_cli_predict_files_and_folders_with_class_names(cifar_run, tmp_path, capsys):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    save(random_pixels((32, 32, 3), 0), folder / "a.png")
    save(random_pixels((64, 48, 3), 1), folder / "sub" / "b.jpg")
    save(random_pixels((32, 32), 2), folder / "c.jpeg")
    (folder / "notes.txt").write_text("not an image, not picked up from a folder")
    single = save(random_pixels((20, 20, 3), 3), tmp_path / "single.png")
    assert main(["predict", "--checkpoint", str(cifar_run / "best.pt"), str(folder), str(single),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if not line.startswith(" ")] == [
        str(folder / "a.png"), str(folder / "c.jpeg"), str(folder / "sub" / "b.jpg"), str(single)]
    ranked = [line.split()[0] for line in out.splitlines() if line.startswith(" ")]
    assert ranked == ["1.", "2.", "3.", "4.", "5."] * 4
    labels = {line.split()[1] for line in out.splitlines() if line.startswith(" ")}
    assert labels <= set(CLASS_NAMES["cifar10"]) and "%" in out


def test_cli_predict_json_and_per_file_errors(digits_run, tmp_path, capsys):
    good = save(random_pixels((32, 32), 0), tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG but not really")
    truncated = tmp_path / "truncated.jpg"
    save(random_pixels((32, 32, 3), 1), truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    missing = tmp_path / "missing.png"
    rc = main(["predict", "--checkpoint", str(digits_run), str(bad), str(good), str(truncated),
               str(missing), "--json", "--top-k", "3", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 1
    results = json.loads(captured.out)
    assert [r["path"] for r in results] == [str(bad), str(good), str(truncated), str(missing)]
    assert "error" not in results[1] and len(results[1]["predictions"]) == 3
    probs = [p["probability"] for p in results[1]["predictions"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    assert all("predictions" not in results[i] for i in (0, 2, 3))
    assert "cannot read as an image" in results[0]["error"]
    assert "cannot read as an image" in results[2]["error"]
    assert "no such file" in results[3]["error"]
    assert "Traceback" not in captured.err and "3 of 4 files could not be read" in captured.err
    assert f"{bad}: cannot read as an image" in captured.err


def test_class_indices_when_the_dataset_has_no_names(tmp_path, capsys):
    run = write_run(tmp_path / "run", tiny(3, num_classes=100), "cifar100")
    image = save(random_pixels((32, 32, 3), 0), tmp_path / "x.png")
    assert main(["predict", "--checkpoint", str(run), str(image), "--json", "--device", "cpu"]) == 0
    predictions = json.loads(capsys.readouterr().out)[0]["predictions"]
    assert len(predictions) == 5 and all(p["label"] == str(p["index"]) for p in predictions)


def test_saved_model_without_preprocessing_needs_dataset(tmp_path, capsys):
    tiny(3).save_pretrained(tmp_path / "model")
    image = save(random_pixels((32, 32, 3), 0), tmp_path / "x.png")
    argv = ["predict", "--checkpoint", str(tmp_path / "model"), str(image), "--device", "cpu"]
    assert main(argv) == 2
    assert "pass --dataset" in capsys.readouterr().err
    assert main(argv + ["--dataset", "cifar10"]) == 0
    assert capsys.readouterr().out.split("\n")[1].split()[1] in CLASS_NAMES["cifar10"]


def test_predict_from_a_converted_run_keeps_the_preprocessing(digits_run, tmp_path, capsys):
    mgiad.from_pretrained(digits_run).save_pretrained(tmp_path / "shared")
    image = save(random_pixels((32, 32), 0), tmp_path / "x.png")
    outputs = []
    for checkpoint in (digits_run, tmp_path / "shared"):
        assert main(["predict", "--checkpoint", str(checkpoint), str(image), "--json",
                     "--device", "cpu"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1]


def test_empty_folder_is_an_error(digits_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--checkpoint", str(digits_run), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "holds no image files" in err and "Traceback" not in err
    assert find_images([tmp_path / "x.png"]) == [tmp_path / "x.png"]  # named files are kept


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs") / "fashion", tiny(1, seed=2), "fashion-mnist")


def garment(light_background, seed=0):
    """A 28x28 'garment': a block of texture on a black (or, as in a photo, white) background."""
    image = np.zeros((28, 28), dtype=np.uint8)
    image[4:24, 8:20] = random_pixels((20, 12), seed) // 2 + 128
    return 255 - image if light_background else image


def test_invert_happens_before_the_padding(tmp_path):
    pre = Preprocessing(32, 1, (0.5,), (0.5,), "fashion-mnist", invert=True)
    item = garment(True)
    padded = load_image(save(item, tmp_path / "light.png"), pre)[0]
    assert torch.equal(padded[2:30, 2:30], 255 - torch.from_numpy(item))
    assert padded.sum() == padded[2:30, 2:30].sum()  # the padding stays black
    rgb = random_pixels((32, 32, 3), 1)
    inverted = load_image(save(rgb, tmp_path / "c.png"), Preprocessing(32, 3, (0.5,) * 3, (0.5,) * 3,
                                                                        "cifar10", invert=True))
    assert torch.equal(inverted, 255 - torch.from_numpy(rgb).permute(2, 0, 1))
    assert "zero-padded by 2 to 32x32" in pre.describe() and "inverted" in pre.describe()


def test_light_fashion_images_get_a_hint_to_invert(fashion_run, digits_run, tmp_path, capsys):
    light = save(garment(True), tmp_path / "light.png")
    dark = save(garment(False), tmp_path / "dark.png")
    argv = ["predict", "--checkpoint", str(fashion_run), "--json", "--device", "cpu"]
    assert main(argv + [str(light), str(dark)]) == 0
    captured = capsys.readouterr()
    hints = [line for line in captured.err.splitlines() if "hint" in line]
    assert len(hints) == 1 and "1 of 2 images are mostly light" in hints[0] and "--invert" in hints[0]
    results = json.loads(captured.out)
    assert results[0]["mostly_light"] is True and "mostly_light" not in results[1]
    # --invert: the light photo is read as its negative, i.e. as the dark image, and no hint
    assert main(argv + ["--invert", str(light)]) == 0
    captured = capsys.readouterr()
    assert "hint" not in captured.err
    inverted, reference = json.loads(captured.out)[0]["predictions"], results[1]["predictions"]
    assert [p["index"] for p in inverted] == [p["index"] for p in reference]
    assert np.allclose([p["probability"] for p in inverted], [p["probability"] for p in reference],
                       atol=1e-6)  # a batch of 1 vs 2: the last bits may differ
    # only Fashion-MNIST models expect a dark background
    assert main(["predict", "--checkpoint", str(digits_run), str(light), "--device", "cpu"]) == 0
    assert "hint" not in capsys.readouterr().err


# ---------------------------------------------------------------- high bit depths, damaged records
def test_16_and_32_bit_integer_and_float_images_are_rescaled_not_clipped(tmp_path):
    """Pillow's own conversion clips 16-bit pixels at 255 (a white silhouette) and float pixels
    in 0..1 to black; they are rescaled to what the 8-bit image would give."""
    pixels = random_pixels((28, 28), 3)
    pre = Preprocessing(32, 1, (0.5,), (0.5,), "fashion-mnist")
    eight = load_image(save(pixels, tmp_path / "8.png"), pre)
    sixteen = tmp_path / "16.png"
    Image.fromarray(pixels.astype(np.uint16) * 257).save(sixteen)
    assert Image.open(sixteen).mode.startswith("I")
    int32 = tmp_path / "32.tiff"
    Image.fromarray(pixels.astype(np.int32) * 257, mode="I").save(int32)
    floats = tmp_path / "f.tiff"
    Image.fromarray(pixels.astype(np.float32) / 255, mode="F").save(floats)
    for path in (sixteen, int32, floats):
        assert torch.equal(load_image(path, pre), eight), path.name
    rgb = Preprocessing(32, 3, (0.5,) * 3, (0.5,) * 3, "cifar10")
    assert torch.equal(load_image(sixteen, rgb), load_image(tmp_path / "8.png", rgb))


def test_pixel_ranges_that_cannot_be_told_apart_are_refused(tmp_path):
    pre = Preprocessing(32, 1, (0.5,), (0.5,), "cifar10")
    wide = tmp_path / "wide.tiff"
    Image.fromarray(np.full((8, 8), 70000, np.int32), mode="I").save(wide)
    with pytest.raises(ImageReadError, match=r"wide.tiff: 32-bit integer pixels from 70000"):
        load_image(wide, pre)
    scaled = tmp_path / "scaled.tiff"
    Image.fromarray(np.full((8, 8), 200.0, np.float32), mode="F").save(scaled)
    with pytest.raises(ImageReadError, match=r"scaled.tiff: floating-point pixels from 200 to 200"):
        load_image(scaled, pre)
    nan = tmp_path / "nan.tiff"
    Image.fromarray(np.full((8, 8), np.nan, np.float32), mode="F").save(nan)
    with pytest.raises(ImageReadError, match="floating-point pixels"):
        load_image(nan, pre)


@pytest.mark.parametrize("change, message", [
    ({"std": [0.0]}, "std .* <= 0"), ({"std": [float("nan")]}, "finite"),
    ({"mean": "0.5"}, "list of numbers"), ({"image_size": 10 ** 6}, "image_size=1,000,000 is beyond"),
    ({"image_size": 0}, "positive integer")])
def test_a_damaged_preprocessing_record_is_refused(change, message):
    recorded = {"dataset": "fashion-mnist", "image_size": 32, "mean": [0.3], "std": [0.35], **change}
    with pytest.raises(ValueError, match=message):
        Preprocessing.resolve(recorded, 1)


def test_preprocessing_json_that_is_not_an_object_is_one_line(digits_run, tmp_path, capsys):
    folder = tmp_path / "saved"
    mgiad.save_pretrained(mgiad.load_model(digits_run), folder)
    (folder / "preprocessing.json").write_text("[1, 2]")
    image = save(random_pixels((8, 8), 0), tmp_path / "x.png")
    assert main(["predict", "--checkpoint", str(folder), str(image), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "preprocessing.json" in err and "not an object" in err and "Traceback" not in err


def _fashion_test_image(index):
    from mgiad.data.idx import FASHION_FILES, _file, find_fashion_mnist, read_idx
    from train_helpers import DATA_DIR
    folder = find_fashion_mnist(DATA_DIR)
    if folder is None:
        pytest.skip("no Fashion-MNIST in $MGIAD_DATA_DIR")
    images, labels = FASHION_FILES["test"]
    return read_idx(_file(folder, images), 2051)[index], int(read_idx(_file(folder, labels), 2049)[index])


def test_a_genuine_pullover_gets_no_invert_hint_and_unreadable_files_are_not_counted(tmp_path, capsys):
    """Test image 1 is a pullover filling most of its frame (mean pixel 0.71): the hint must not
    fire for it, and the hint's count leaves out the files that could not be read."""
    pullover, label = _fashion_test_image(1)
    assert label == 2 and pullover.mean() / 255 > 0.5
    real = save(pullover, tmp_path / "pullover.png")
    negative = save(255 - pullover, tmp_path / "negative.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    name = "mgiad_16_32_64_ck16_gs8.fmnist_paper_e30"
    assert main(["predict", "--model", name, "--device", "cpu", "--json", str(real)]) == 0
    captured = capsys.readouterr()
    assert "hint" not in captured.err
    assert json.loads(captured.out)[0]["predictions"][0]["label"] == "Pullover"
    assert main(["predict", "--model", name, "--device", "cpu", "--json", str(real),
                 str(negative), str(broken)]) == 1
    hints = [line for line in capsys.readouterr().err.splitlines() if "hint" in line]
    assert len(hints) == 1 and "1 of 2 images are mostly light" in hints[0]
