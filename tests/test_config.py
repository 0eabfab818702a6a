"""Config: defaults < file < overrides, strictness, suggestions, TOML round trip, paths."""

import dataclasses
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import lionfer.data.datasets
from lionfer.config import (
    DEFAULT_CONFIG,
    ConfigError,
    config_from_args,
    load_config,
    replace,
    save_config,
)
from lionfer.data.datasets import DATASET_KEYS, DATASET_TABLE
from lionfer.unread import check_dataset_keys


def test_defaults_train_lion_on_synthetic():
    cfg = load_config()
    assert (cfg.data.dataset, cfg.algorithm.name, cfg.model.name) == (
        "synthetic",
        "lion",
        "cnn_small",
    )
    assert cfg.algorithm.recipe == "evidence"  # lionfer's LION recipe is the default
    assert cfg.algorithm.params.clear_threshold == 0.80
    paper = load_config(None, ["algorithm.recipe=paper"])
    assert paper.algorithm.reliable_threshold == 0.83  # section attribute reads the params


def test_a_recipe_fills_the_fields_the_config_does_not_set(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[algorithm]\nname = "lion"\nrecipe = "released"\nambiguity_margin = 0.4\n')
    cfg = load_config(path)
    assert cfg.algorithm.ambiguity_margin == 0.4  # set by the file
    assert cfg.algorithm.relabel_threshold == 0.996  # set by the recipe
    again = load_config(None, ["algorithm.recipe=paper", "algorithm.recipe=released"])
    assert (
        again.algorithm.params == load_config(None, ["algorithm.recipe=released"]).algorithm.params
    )
    switched = replace(cfg, "algorithm.recipe=paper")
    assert switched.algorithm.relabel_threshold == 0.80  # the paper's τ ...
    assert switched.algorithm.ambiguity_margin == 0.4  # ... and what the file set is kept
    saved = tmp_path / "saved.toml"
    save_config(cfg, saved)
    assert load_config(saved).algorithm.params == cfg.algorithm.params
    with pytest.raises(ConfigError, match="unknown recipe 'robustt'. Did you mean 'robust'"):
        load_config(None, ["algorithm.recipe=robustt"])


def test_file_then_overrides_win(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'seed = 3\n[train]\nsteps = 50\n[algorithm]\nname = "lion"\nclear_threshold = 0.7\n'
    )
    cfg = load_config(
        path,
        ["train.steps=7", "algorithm.complementary_threshold=0.01", "data.class_map={happy = 3}"],
    )
    assert cfg.seed == 3 and cfg.train.steps == 7
    assert cfg.algorithm.clear_threshold == 0.7 and cfg.algorithm.complementary_threshold == 0.01
    assert cfg.data.class_map == {"happy": 3}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.stpes=5", "Did you mean 'steps'"),
        ("trian.steps=5", "Did you mean 'train'"),
        ("algorithm.clear_treshold=0.5", "Did you mean 'clear_threshold'"),
        ("algorithm.name=lino", "Did you mean 'lion'"),
        ("train.steps=ten", "expected an integer"),
        ("train.steps=0", "must be positive"),
        ("data.noise=gaussian", "symmetric"),
        ("algorithm.clear_threshold=1.5", "must lie in"),
        ("steps", "key=value"),
        ("train.lr=inf", "train.lr: must be positive and finite"),
        ("train.lr=nan", "train.lr: must be positive and finite"),
        ("train.weight_decay=inf", "train.weight_decay: must be >= 0 and finite"),
        ("train=5", r"train is a section of settings, not a value \(train = 5\).*train.steps="),
        ("algorithm=lion", "algorithm is a section .* algorithm.name="),
        ("data.num_classes=10", "must be 7 or 8, .* got 10; data of classes of its own"),
    ],
)
def test_bad_keys_and_values_are_errors_with_a_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_switching_algorithm_drops_the_old_algorithms_fields(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[algorithm]\nname = "lion"\nclear_threshold = 0.7\n')
    cfg = load_config(path, ["algorithm.name=fixmatch", "algorithm.threshold=0.9"])
    assert cfg.algorithm.name == "fixmatch" and cfg.algorithm.threshold == 0.9
    with pytest.raises(ConfigError, match="unknown key algorithm.clear_threshold"):
        load_config(None, ["algorithm.name=fixmatch", "algorithm.clear_threshold=0.7"])
    # a file that names no algorithm holds the default one's fields: naming it keeps them
    path.write_text("[algorithm]\nclear_threshold = 0.7\n")
    assert load_config(path, ["algorithm.name=lion"]).algorithm.clear_threshold == 0.7
    assert load_config(path, ["algorithm.name=fixmatch"]).algorithm.name == "fixmatch"


def test_default_toml_names_only_what_differs_from_the_dataclass_defaults():
    # The dataclasses own every default; default.toml adds only the embedded run's own values.
    packaged = tomllib.loads(DEFAULT_CONFIG.read_text())
    bare = load_config()
    for key, value in packaged.items():
        nested = isinstance(value, dict)
        where, section = (getattr(bare, key), value) if nested else (bare, {key: value})
        for field, given in section.items():
            name = f"{key}.{field}" if nested else key
            assert given != getattr(where, field), f"default.toml repeats the default {name}"


def test_the_embedded_default_run_is_pinned():
    cfg = load_config(DEFAULT_CONFIG)
    data, model, algorithm, train = cfg.data, cfg.model, cfg.algorithm, cfg.train
    assert cfg.seed == 0
    assert (data.dataset, data.num_labels, data.image_size, data.num_workers) == (
        "synthetic",
        140,
        64,
        1,
    )
    assert (model.name, model.pretrained, model.feature_scale) == ("mobilenet_v2", "imagenet", 4)
    assert (algorithm.name, algorithm.recipe, algorithm.epoch_steps) == ("lion", "evidence", 30)
    assert (train.steps, train.lr, train.eval_every, train.checkpoint_every) == (
        600,
        5e-4,
        200,
        200,
    )
    assert train.channels_last
    assert load_config(DEFAULT_CONFIG, ["algorithm.name=lion"]) == cfg


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(
        None,
        [
            "seed=4",
            'data.root=C:\\faces "x"',
            "data.class_map={a = 1}",
            "algorithm.use_negative_learning=false",
        ],
    )
    save_config(cfg, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == cfg
    assert replace(cfg, "seed=5").seed == 5 and cfg.seed == 4


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_paths_are_made_absolute_and_saved_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(
        None,
        [
            "data.root=faces",
            "data.unlabeled_root=./more/../extra",
            "data.split_file=runs/a/split.json",
            "data.label_file=lists/train.txt,lists/test.txt",
            "model.pretrained=~/weights.pth",
        ],
    )
    assert cfg.data.root == str(tmp_path / "faces")
    assert cfg.data.unlabeled_root == str(tmp_path / "extra")
    assert cfg.data.split_file == str(tmp_path / "runs" / "a" / "split.json")
    lists = tmp_path / "faces" / "lists"  # the label list is relative to data.root
    assert cfg.data.label_file == f"{lists / 'train.txt'},{lists / 'test.txt'}"
    assert cfg.model.pretrained == str(Path.home() / "weights.pth")
    save_config(cfg, tmp_path / "config.toml")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_config(tmp_path / "config.toml") == cfg  # the same run from any folder
    assert load_config(None, ["data.root=/abs/faces"]).data.root == "/abs/faces"
    assert load_config(None, ["model.pretrained=imagenet"]).model.pretrained == "imagenet"
    (tmp_path / "elsewhere" / "weights").write_bytes(b"")  # a file without a suffix is a path
    assert load_config(None, ["model.pretrained=weights"]).model.pretrained == str(
        tmp_path / "elsewhere" / "weights"
    )
    assert load_config().data.root == ""  # empty stays empty
    for name in ("imagenet", "hub"):  # a weight set's name, even beside a folder of that name
        (tmp_path / "elsewhere" / name).mkdir()
        assert load_config(None, [f"model.pretrained={name}"]).model.pretrained == name
    assert load_config(None, ["model.pretrained=./imagenet"]).model.pretrained == str(
        tmp_path / "elsewhere" / "imagenet"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=-1", "seed: must be a non-negative integer, got -1"),
        ("data.image_size=8", r"data.image_size: must lie in \[16, 1024\]"),
        ("train.device=tpu", "train.device: must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
        ("data.dataset=rafbd", "data.dataset: unknown dataset 'rafbd'. Did you mean 'rafdb'"),
        ("model.name=resnet", "model.name: unknown model 'resnet'"),
    ],
)
def test_values_that_used_to_fail_later_name_their_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_devices_that_are_accepted():
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert load_config(None, [f"train.device={device}"]).train.device == device


def test_switching_model_drops_the_files_weights(tmp_path):
    """model.name=X alone trains X from scratch whatever weights the config file names (the
    default names ImageNet weights that exist only for mobilenet_v2); weights given on the
    command line are kept, in either order; the same model name keeps the file's weights."""
    from lionfer.config import DEFAULT_CONFIG

    for name in ("cnn_small", "resnet18", "timm:resnet10t", "torchvision:resnet18"):
        cfg = load_config(DEFAULT_CONFIG, [f"model.name={name}"])
        assert cfg.model.name == name and cfg.model.pretrained == ""
    assert load_config(DEFAULT_CONFIG, ["model.name=mobilenet_v2"]).model.pretrained == "imagenet"
    assert load_config(DEFAULT_CONFIG).model.pretrained == "imagenet"
    for overrides in (
        ["model.name=resnet18", "model.pretrained=/w/r18.pth"],
        ["model.pretrained=/w/r18.pth", "model.name=resnet18"],
    ):
        assert load_config(DEFAULT_CONFIG, overrides).model.pretrained == "/w/r18.pth"
    file = tmp_path / "mine.toml"
    file.write_text('[model]\nname = "resnet18"\npretrained = "/w/r18.pth"\n')
    assert load_config(file, ["model.name=cnn_small"]).model.pretrained == ""
    assert load_config(file, ["model.dropout=0.1"]).model.pretrained == "/w/r18.pth"
    base = load_config(DEFAULT_CONFIG)
    assert replace(base, "model.name=resnet18").model.pretrained == ""
    assert replace(base, "train.steps=3").model.pretrained == "imagenet"


def test_imagenet_for_a_model_without_packaged_weights_says_how_to_train_from_scratch():
    from lionfer.models import resolve_pretrained

    with pytest.raises(ValueError) as error:
        resolve_pretrained("timm:resnet10t", "imagenet")
    message = str(error.value)
    assert "\n" not in message and 'model.pretrained=""' in message and "mobilenet_v2" in message


@pytest.mark.parametrize(
    "items, unread",
    [
        (["data.dataset=digits", "data.annotator=crowd10"], ["annotator"]),
        (
            ["data.dataset=digits", "data.num_classes=8", "data.ambiguity=0.5"],
            ["num_classes", "ambiguity"],
        ),  # fmt: skip
        (["data.unlabeled_root=/tmp"], ["unlabeled_root"]),  # the synthetic faces
        (["data.dataset=digits", "data.root=/tmp"], ["root"]),
        (["data.dataset=sfew", "data.root=/tmp", "data.class_map={a = 1}"], ["class_map"]),
    ],
)
def test_a_new_run_refuses_data_keys_its_dataset_does_not_read(items, unread):
    cfg = load_config(None, items)
    with pytest.raises(ConfigError) as error:
        check_dataset_keys(cfg)
    words = str(error.value).split()
    named = [word.removeprefix("data.") for word in words if word.startswith("data.")]
    assert named[1:] == unread  # after data.dataset=..., the keys, each once
    assert str(error.value).endswith("or pick the dataset meant")


def test_the_keys_each_dataset_reads_are_the_ones_its_reader_reads():
    """DATASET_KEYS against the readers' sources: a module that reads cfg.KEY is listed for KEY,
    so that a run is never refused a key its dataset reads."""
    folder = Path(lionfer.data.datasets.__file__).parent
    for name, target, *_ in DATASET_TABLE:
        source = (folder / f"{target.partition(':')[0]}.py").read_text()
        for key, readers in DATASET_KEYS.items():
            if f"cfg.{key}" in source:
                assert name in readers, (name, key)
    # and the settings each dataset is known to read pass
    read = (
        ["data.dataset=digits", "data.data_seed=3"],
        ["data.annotator=truth"],
        ["data.dataset=folder", "data.root=/tmp", "data.unlabeled_root=/tmp"],
    )
    for items in read:
        check_dataset_keys(load_config(None, items))


def test_a_checked_value_out_of_range_is_named_with_the_value_given():
    with pytest.raises(ConfigError, match=r"data.noise_rate: must lie in \[0, 1\], got 1.5$"):
        config_from_args(["data.noise_rate=1.5"])
    with pytest.raises(ConfigError, match=r"algorithm.threshold: must lie in \[0, 1\], got 2.0$"):
        config_from_args(["algorithm.name=fixmatch", "algorithm.threshold=2"])


def test_algorithm_overrides_apply_whatever_their_order_around_a_switch(tmp_path):
    """An algorithm.name switch drops the file's algorithm keys (the old algorithm's) but applies
    the algorithm.* overrides given before it again, as docs/cli.md says."""
    before = config_from_args(["algorithm.threshold=0.9", "algorithm.name=fixmatch"])
    after = config_from_args(["algorithm.name=fixmatch", "algorithm.threshold=0.9"])
    assert before == after and before.algorithm.params.threshold == 0.9
    twice = ["algorithm.threshold=0.5", "algorithm.name=fixmatch", "algorithm.lambda_u=2"]
    cfg = config_from_args([*twice, "algorithm.name=flexmatch"])
    assert (cfg.algorithm.name, cfg.algorithm.threshold, cfg.algorithm.lambda_u) == (
        "flexmatch",
        0.5,
        2.0,
    )
    path = tmp_path / "fixmatch.toml"
    path.write_text('[algorithm]\nname = "fixmatch"\nthreshold = 0.7\n')
    cfg = load_config(path, ["algorithm.recipe=paper", "algorithm.name=lion"])
    assert cfg.algorithm.recipe == "paper"  # the file's threshold is fixmatch's: dropped
    switched = replace(load_config(), "algorithm.threshold=0.8", "algorithm.name=fixmatch")
    assert switched.algorithm.threshold == 0.8
    for order in (1, -1):  # a key the new algorithm lacks: the same error in either order
        items = ["algorithm.clear_threshold=0.7", "algorithm.name=fixmatch"][::order]
        with pytest.raises(ConfigError, match="unknown key algorithm.clear_threshold. Did you"):
            config_from_args(items)


def test_a_section_given_a_value_in_a_file_or_overrides_as_one_string_are_errors(tmp_path):
    (tmp_path / "bad.toml").write_text("seed = 1\ndata = 3\n")
    with pytest.raises(ConfigError, match=r"data is a section of settings.*\[data\] table"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match=r"pass \['train.steps=3'\], not 'train.steps=3'"):
        load_config(DEFAULT_CONFIG, "train.steps=3")


def test_a_config_path_with_an_equals_sign_is_the_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "lr=1e-3"
    run.mkdir(parents=True)
    (run / "config.toml").write_text("[train]\nsteps = 7\n")
    cfg = config_from_args(["seed=2", "runs/lr=1e-3/config.toml"])
    assert (cfg.train.steps, cfg.seed) == (7, 2)
    (tmp_path / "a=b.toml").write_text("seed = 5\n")
    assert config_from_args(["./a=b.toml"]).seed == 5
    with pytest.raises(ConfigError, match="config file not found: runs/seed=0/config.toml"):
        config_from_args(["runs/seed=0/config.toml"])
    with pytest.raises(ConfigError, match="'/x/y=1' is neither an existing config file nor key="):
        config_from_args(["/x/y=1"])
    (tmp_path / "r=1").mkdir()  # a run folder whose name holds '='
    (tmp_path / "r=1" / "config.toml").write_text("seed = 3\n")
    with pytest.raises(ConfigError, match=r"r=1 is a folder.*r=1/config.toml"):
        config_from_args(["r=1"])


def test_an_override_longer_than_a_file_name_is_an_override():
    names = {f"class_{i:03d}_{'x' * 20}": i % 7 for i in range(12)}  # a table of 300+ characters
    table = "{" + ", ".join(f"{name} = {i}" for name, i in names.items()) + "}"
    cfg = config_from_args(["data.dataset=folder", "data.root=.", f"data.class_map={table}"])
    assert cfg.data.class_map == names


def test_config_files_are_read_as_utf8_whatever_the_locale(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes('[data]\nroot = "données"\n'.encode())
    check = f"from lionfer.config import load_config; print(ascii(load_config({str(path)!r})))"
    env = {**os.environ, "LC_ALL": "POSIX", "PYTHONUTF8": "0", "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "root='/" in done.stdout, done.stderr
    assert "donn\\xe9es'" in done.stdout  # not 'donnÃ©es' (cp1252) or a decode error (ASCII)
    path.write_bytes("\ufeffseed = 3\n".encode())  # a byte-order mark (Notepad) is skipped
    assert load_config(path).seed == 3
    path.write_bytes("seed = 3\n".encode("utf-16"))
    with pytest.raises(ConfigError, match="c.toml is not UTF-8 text .*TOML files must be UTF-8"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.feature_scale=inf", "model.feature_scale: must be positive and finite"),
        ("algorithm.lambda_supervised=inf", "algorithm.lambda_supervised: must be >= 0 and fin"),
        ("algorithm.similarity_temperature=inf", "similarity_temperature: must be > 0 and finite"),
        ("data.data_seed=-5", "data.data_seed: must be a non-negative integer, got -5"),
        ("seed=18446744073709551616", r"seed: must be below 2\*\*63"),
    ],
)
def test_infinite_weights_and_out_of_range_seeds_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize(
    ("algorithm", "key", "value", "message"),
    [
        ("fixmatch", "lambda_u", "-3", "must be >= 0 and finite"),
        ("fixmatch", "lambda_u", "nan", "must be >= 0 and finite"),
        ("mixmatch", "temperature", "inf", "must be positive and finite"),
        ("softmatch", "n_sigma", "inf", "must be positive and finite"),
        ("uda", "lambda_u", "inf", "must be >= 0 and finite"),
        ("remixmatch", "lambda_rot", "inf", "must be >= 0 and finite"),
    ],
)
def test_every_methods_weights_and_temperatures_are_finite(algorithm, key, value, message):
    with pytest.raises(ConfigError, match=f"algorithm.{key}: {message}"):
        load_config(None, [f"algorithm.name={algorithm}", f"algorithm.{key}={value}"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('data.class_map."a.b"=3', r"""'data.class_map."a.b"' is not a dotted key.*\{"a.b" = 3"""),
        ("data.class_map={happy=true}", r"data.class_map\['happy'\] = true: give a class id 0-7"),
        ("data.class_map={happy=3.5}", r"data.class_map\['happy'\] = 3.5: give a class id"),
        ("data.class_map.happy.x=3", r"data.class_map\['happy'\] = \{'x': 3\}: give a class id"),
        ("algorithm.protected_classes=[6]", r"protected_classes: give class names.*; got 6$"),
        ("data.root=2024-01-01", """as a date; put it in quotes: 'data.root="2024-01-01"'"""),
        ("data.root=123", 'reads as an integer; put it in quotes:.* root = "123" in a file'),
        ("data.noise_map={Fear=Surprise}", r'strings in it need quotes, e.g. \{Fear = "Surpr'),
        ("algorithm.name=FixMatch", "Did you mean 'fixmatch'"),
        ("algorithm.name=LION", "Did you mean 'lion'"),
        ("algorithm.recipe=papr", r"Recipes: paper, released, robust, evidence$"),
        ("data.truth=ferplus", "not of 'synthetic'$"),
    ],
)  # fmt: skip
def test_messages_that_say_how_to_fix_the_value(override, message):
    with pytest.raises(ConfigError, match=message):
        config_from_args([override])


def test_a_folder_or_a_sweep_file_given_as_the_config_is_named(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError, match="run is a folder, not a config file: give a .toml"):
        config_from_args([str(tmp_path / "run")])
    (tmp_path / "run" / "config.toml").write_text("seed = 1\n")
    with pytest.raises(ConfigError, match="folder, not a config file; the run's own config is"):
        config_from_args([str(tmp_path / "run")])
    with pytest.raises(ConfigError, match="config file .*run is a folder, not a TOML file"):
        load_config(tmp_path / "run")
    sweep = tmp_path / "grid.toml"
    sweep.write_text('config = "default"\nalgorithms = ["fixmatch"]\n')
    with pytest.raises(
        ConfigError, match=r"looks like a sweep file.*lionfer sweep .*grid.toml --out"
    ):
        config_from_args([str(sweep)])


@pytest.mark.parametrize(
    ("path", "overrides", "message"),
    [
        (["train.steps=5"], (), "pass the overrides second"),
        (DEFAULT_CONFIG, ["seed=1", 2], "give each override as a 'key=value' string"),
    ],
)
def test_load_config_arguments_of_the_wrong_kind_say_what_to_pass(path, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path, overrides)


def test_a_path_that_is_not_utf8_is_refused_naming_its_key_before_a_run_folder_is_made(tmp_path):
    from lionfer.training.run import train

    latin = os.fsdecode(os.fsencode(tmp_path) + b"/man\xe9")  # a Latin-1 folder name
    for key in ("data.root", "data.label_file", "model.pretrained"):
        with pytest.raises(ConfigError, match=rf"^{key}=.*/man\\xe9: the name is not UTF-8"):
            load_config(None, ["data.dataset=manifest", f"{key}={latin}"])
    cfg = load_config(None, ["data.dataset=manifest", f"data.root={tmp_path}"])
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=latin))  # from Python
    with pytest.raises(ConfigError, match=r"^data.root=.*/man\\xe9: the name is not UTF-8"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
