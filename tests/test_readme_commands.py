"""Every command in the bash blocks of the README, CONTRIBUTING.md and the docs pages is
checked: each `lionfer` line parses with the real command line and its config (file name, keys,
values) resolves; `list`, `config show` and `--help` run as written; `lionfer train` on the
embedded data runs for real as a dry run (two steps, on fewer images, in a folder holding
stand-in weight files with the names the pages use). `make`, `pip install`, `torchrun` and
benchmark lines are checked against the Makefile, the package's extras, the command line and the
scripts' own flags."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import torch
import torchvision

from lionfer.cli import main, parse_args
from lionfer.config import config_from_args

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# The README's reference sections live in docs/: their commands are checked wherever they are.
PAGES = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
# A dry run on fewer, smaller batches: the command's own keys still decide model and data.
SHRINK = [
    "data.num_train=280",
    "data.num_test=35",
    "data.num_workers=0",
    "train.batch_size=2",
    "train.eval_batch_size=35",
]
RUN_TAKING = {"evaluate", "predict", "export", "relabel", "audit", "report"}


def readme_commands() -> list[list[str]]:
    """Each command once, in the order the pages give them (the README's quick start is also on
    the docs' home page)."""
    commands = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                tokens = shlex.split(line, comments=True)
                while tokens and re.fullmatch(r"[A-Z_]+=\S*", tokens[0]):
                    tokens = tokens[1:]  # the command's environment: OMP_WAIT_POLICY=PASSIVE
                if tokens and tokens not in commands:
                    commands.append(tokens)
    return commands


COMMANDS = readme_commands()


def lionfer_args(tokens: list[str]) -> list[str] | None:
    if tokens[0] == "lionfer":
        return tokens[1:]
    if tokens[0] == "torchrun":
        return tokens[tokens.index("lionfer") + 1 :]
    return None


def is_synopsis(args: list[str]) -> bool:
    """`lionfer sweep SWEEP [key=value ...] --out DIR`: a usage line, not a command."""
    return any(a.startswith("[") or re.fullmatch(r"[A-Z_]+(\.\.\.)?", a) for a in args)


def test_the_readme_has_the_commands_this_test_checks():
    assert "make demo" in README.read_text() and "lionfer train" in README.read_text()
    lines = [" ".join(c) for c in COMMANDS]
    assert "lionfer train" in lines
    assert any(line.startswith("lionfer train model.name=timm:convnext_tiny") for line in lines)
    assert any(line.startswith("lionfer predict") for line in lines)
    assert len(COMMANDS) > 40
    known = {"lionfer", "torchrun", "make", "source", "pip", "python"}
    assert {c[0] for c in COMMANDS} <= known, {c[0] for c in COMMANDS} - known


@pytest.mark.parametrize("tokens", COMMANDS, ids=[" ".join(c)[:70] for c in COMMANDS])
def test_each_readme_command_parses_and_its_config_resolves(tokens, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = lionfer_args(tokens)
    if args is None:
        check_other(tokens)
        return
    if is_synopsis(args):  # the subcommand exists
        with pytest.raises(SystemExit) as exit:
            parse_args([args[0], "--help"])
        assert exit.value.code == 0
        return
    parsed = parse_args(args)
    command = args[0]
    if command in ("list",) or args[:2] == ["config", "show"]:
        assert main(args) == 0
    elif command == "sweep":
        assert (ROOT / "lionfer" / "configs" / "sweeps" / f"{args[1]}.toml").is_file()
    elif command in RUN_TAKING:
        assert parsed.func is not None  # needs a trained run: its own tests run it
    else:  # train, prepare, data stats: the config they would run
        config_from_args(parsed.items)


def check_other(tokens: list[str]) -> None:
    if tokens[0] == "make":
        makefile = (ROOT / "Makefile").read_text()
        for target in [t for t in tokens[1:] if "=" not in t]:
            assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE), target
    elif tokens[0] == "pip":
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        for requirement in tokens[2:]:
            name, _, extras = requirement.partition("[")
            assert name in ("lionfer", "."), requirement
            for extra in extras.rstrip("]").split(","):
                assert not extra or extra in project["optional-dependencies"], extra
    elif tokens[0] == "python":
        script = ROOT / tokens[1]
        text = script.read_text()
        for flag in [t for t in tokens[2:] if t.startswith("--")]:
            assert f'"{flag}"' in text, f"{script.name} has no {flag}"
    else:
        assert tokens[0] == "source"


def dry_runnable(tokens: list[str]) -> bool:
    args = lionfer_args(tokens)
    if not args or args[0] != "train" or is_synopsis(args) or tokens[0] == "torchrun":
        return False
    items = " ".join(args)
    return "data.root" not in items and "=hub" not in items and ".toml" not in items


DRY = [c for c in COMMANDS if dry_runnable(c)]


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory) -> Path:
    """Stand-ins for the weight files the README's commands name, with the real key names."""
    folder = tmp_path_factory.mktemp("readme")
    torch.manual_seed(0)
    state = torchvision.models.efficientnet_b0(weights=None).state_dict()
    torch.save(state, folder / "efficientnet_b0.pth")
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, folder / "r.pth")
    (folder / "resnet18_msceleb.pth").write_bytes((folder / "r.pth").read_bytes())
    return folder


@pytest.mark.parametrize("tokens", DRY, ids=[" ".join(c)[:70] for c in DRY])
def test_each_readme_train_command_runs_as_a_dry_run(tokens, weights_folder, monkeypatch, capsys):
    monkeypatch.chdir(weights_folder)
    args = lionfer_args(tokens)
    out = args.index("--out") if "--out" in args else None
    if out is not None:
        args = args[:out] + args[out + 2 :]
    assert main([*args, *SHRINK, "--dry-run", "--no-progress"]) == 0
    assert "dry run ok" in capsys.readouterr().out
