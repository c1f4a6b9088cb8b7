"""docs/configuration.md and ragtune.environment hold to the code (issue #20).

The registry of environment variables names exactly the ``RAGTUNE_*`` variables that
src/ uses, and each default it states is what the code falls back to with the variable
unset, found by calling the code that resolves it. The page's generated tables are
what scripts/gen_config_docs.py makes now, on any machine, and --check says so.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from ragtune.environment import ENVIRONMENT_VARIABLES, EnvironmentVariable, environment_variable

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "ragtune"
SCRIPT = REPO / "scripts" / "gen_config_docs.py"
PAGE = REPO / "docs" / "configuration.md"
REGISTRY_FILE = SRC / "environment.py"
RAGTUNE_NAME = re.compile(r"\bRAGTUNE_[A-Z0-9]+(?:_[A-Z0-9]+)*\b")


def _sources() -> dict[Path, str]:
    return {
        path: path.read_text(encoding="utf-8")
        for path in sorted(SRC.rglob("*.py"))
        if path != REGISTRY_FILE
    }


def _module_file(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    package = SRC / relative / "__init__.py"
    return package if package.exists() else SRC / relative.with_suffix(".py")


def _default(name: str) -> str:
    return environment_variable(name).default


def _unset(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    for name in names:
        monkeypatch.delenv(name, raising=False)


# --- the registry against the source -------------------------------------------------------


def test_the_registry_names_exactly_the_ragtune_variables_in_src() -> None:
    used = {name for text in _sources().values() for name in RAGTUNE_NAME.findall(text)}
    registered = {v.name for v in ENVIRONMENT_VARIABLES if v.ragtune_own}
    assert used - registered == set(), "used in src/ but not in ragtune.environment"
    assert registered - used == set(), "in ragtune.environment but used nowhere in src/"


def test_each_outside_variable_is_one_ragtune_honours() -> None:
    text = "\n".join(_sources().values())
    for variable in ENVIRONMENT_VARIABLES:
        if not variable.ragtune_own:
            assert re.search(rf"\b{variable.name}\b", text), variable.name


def test_the_registry_is_well_formed() -> None:
    names = [v.name for v in ENVIRONMENT_VARIABLES]
    assert len(names) == len(set(names))
    for variable in ENVIRONMENT_VARIABLES:
        assert isinstance(variable, EnvironmentVariable)
        assert variable.default and variable.meaning and variable.read_by, variable.name
        # What users read must not be this machine's: no home path, no user name.
        assert str(Path.home()) not in variable.default + variable.meaning
    with pytest.raises(KeyError):
        environment_variable("RAGTUNE_NO_SUCH_THING")


@pytest.mark.parametrize("variable", ENVIRONMENT_VARIABLES, ids=lambda v: v.name)
def test_the_modules_said_to_read_it_mention_it(variable: EnvironmentVariable) -> None:
    for module in variable.read_by:
        if not module.startswith("ragtune."):
            continue  # a library's own reading (huggingface_hub, libpq)
        path = _module_file(module)
        assert path.exists(), f"{variable.name}: {module} is no module of ragtune"
        assert variable.name in path.read_text(encoding="utf-8"), f"{module} never names it"


# --- each stated default is the code's -----------------------------------------------------


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ragtune.runtime import cache_dir

    _unset(monkeypatch, "RAGTUNE_CACHE_DIR", "XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("onnx") == tmp_path / "home" / ".cache" / "ragtune" / "onnx"
    assert _default("XDG_CACHE_HOME") == "~/.cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("onnx") == tmp_path / "xdg" / "ragtune" / "onnx"
    assert _default("RAGTUNE_CACHE_DIR") == "$XDG_CACHE_HOME/ragtune, else ~/.cache/ragtune"
    monkeypatch.setenv("RAGTUNE_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir("onnx") == tmp_path / "mine" / "onnx"


def test_chromium_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ragtune.web.render import chromium_path

    _unset(monkeypatch, "RAGTUNE_CHROMIUM")
    stated = _default("RAGTUNE_CHROMIUM")
    names = re.fullmatch(r"the first of (.+) on PATH", stated)
    assert names, stated
    order = [name.strip() for name in names[1].split(",")]
    # Each executable found only when those stated before it are absent: the stated order.
    for position, name in enumerate(order):
        folder = tmp_path / str(position)
        folder.mkdir()
        for present in order[position:]:
            executable = folder / present
            executable.write_text("#!/bin/sh\n")
            executable.chmod(executable.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", str(folder))
        assert chromium_path() == str(folder / name)


@pytest.mark.parametrize(
    ("variable", "module"),
    [
        ("RAGTUNE_LLM_API_KEY", "ragtune.llm.openai_compat"),
        ("RAGTUNE_EMBED_API_KEY", "ragtune.index.embedding.remote"),
    ],
)
def test_api_key_defaults(monkeypatch: pytest.MonkeyPatch, variable: str, module: str) -> None:
    import importlib

    from ragtune.net.openai_client import api_key

    key_vars = importlib.import_module(module).API_KEY_VARS
    _unset(monkeypatch, variable, "OPENAI_API_KEY")
    assert api_key(key_vars) is None
    assert _default(variable) == "$OPENAI_API_KEY"
    monkeypatch.setenv("OPENAI_API_KEY", "from-openai")
    assert api_key(key_vars) == "from-openai"
    monkeypatch.setenv(variable, "from-ragtune")
    assert api_key(key_vars) == "from-ragtune"


def test_embed_backend_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragtune.index.embedding.local import resolve_backend

    _unset(monkeypatch, "RAGTUNE_EMBED_BACKEND")
    onnx_installed = bool(find_spec("onnxruntime") and find_spec("onnx"))
    assert resolve_backend(None) == ("onnx-int8" if onnx_installed else "torch")
    assert (
        _default("RAGTUNE_EMBED_BACKEND")
        == "onnx-int8 where the onnx extra is installed, else torch"
    )
    monkeypatch.setenv("RAGTUNE_EMBED_BACKEND", "torch")
    assert resolve_backend(None) == "torch"
    assert resolve_backend("onnx") == "onnx"  # the flag wins over the variable


@pytest.mark.parametrize("variable", ["RAGTUNE_LLM_MODEL", "RAGTUNE_EMBED_MODEL"])
def test_model_defaults(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    from ragtune.assets import MODELS

    (asset,) = [model for model in MODELS if model.env_var == variable]
    stated = _default(variable)
    assert f"(package {asset.package.replace('_', '-')})" in stated
    assert stated.split(" ")[2] in asset.name  # "the bundled NAME ...": the model's name
    _unset(monkeypatch, variable)
    located = asset.locate()
    spec = find_spec(asset.package)
    if spec is None:
        assert located is None
    else:
        assert located is not None
        assert Path(next(iter(spec.submodule_search_locations or []))) in located.parents


def test_extract_workers_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragtune.web.extraction_pool import extraction_workers

    _unset(monkeypatch, "RAGTUNE_EXTRACT_WORKERS")
    assert extraction_workers() == (os.cpu_count() or 1)
    assert _default("RAGTUNE_EXTRACT_WORKERS") == "CPU count"
    monkeypatch.setenv("RAGTUNE_EXTRACT_WORKERS", "3")
    assert extraction_workers() == 3


def test_llm_threads_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragtune.runtime import llm_threads

    _unset(monkeypatch, "RAGTUNE_LLM_THREADS")
    assert llm_threads() == min(8, os.cpu_count() or 1)
    assert _default("RAGTUNE_LLM_THREADS") == "the smaller of 8 and the CPU count"


def test_progress_interval_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragtune.terminal import progress_interval

    _unset(monkeypatch, "RAGTUNE_PROGRESS_INTERVAL")
    assert progress_interval() == float(_default("RAGTUNE_PROGRESS_INTERVAL"))
    assert "at least 0.05" in environment_variable("RAGTUNE_PROGRESS_INTERVAL").meaning
    monkeypatch.setenv("RAGTUNE_PROGRESS_INTERVAL", "0")
    assert progress_interval() == 0.05


def test_torch_threads_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragtune.runtime import torch_threads, training_threads

    _unset(monkeypatch, "RAGTUNE_TORCH_THREADS")
    usable = len(os.sched_getaffinity(0))
    assert torch_threads() == 1
    assert training_threads() == usable
    assert training_threads(processes=2) == max(1, usable // 2)
    assert training_threads(processes=usable + 1) == 1
    assert _default("RAGTUNE_TORCH_THREADS") == (
        "1; for training on CPU (finetune, align, pretrain), the CPUs this process may "
        "use divided by the training processes (at least 1)"
    )
    monkeypatch.setenv("RAGTUNE_TORCH_THREADS", "3")
    assert torch_threads() == 3 and training_threads(processes=2) == 3


def test_hugging_face_defaults(tmp_path: Path) -> None:
    # huggingface_hub reads its variables once, when imported: a fresh interpreter.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HF_") and key != "XDG_CACHE_HOME"
    }
    env["HOME"] = str(tmp_path)
    code = (
        "from huggingface_hub import constants\n"
        "from ragtune.llm.hub import cache_dir\n"
        "print(cache_dir()); print(constants.ENDPOINT); print(constants.HF_HUB_OFFLINE)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    cache, endpoint, offline = done.stdout.split()
    assert cache == str(tmp_path / ".cache" / "huggingface" / "hub")
    assert _default("HF_HOME") == "$XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface"
    assert _default("HF_HUB_CACHE") == "$HF_HOME/hub"
    assert endpoint == _default("HF_ENDPOINT")
    assert offline == "False" and _default("HF_HUB_OFFLINE").startswith("unset")


# --- the generated page --------------------------------------------------------------------


def _generate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )


def test_the_page_is_up_to_date() -> None:
    done = _generate("--check")
    assert done.returncode == 0, (
        f"{done.stderr.strip()}\n(run: python scripts/gen_config_docs.py, and commit the page)"
    )


def test_the_page_does_not_depend_on_the_machine(tmp_path: Path) -> None:
    # Another home, cache and thread settings: the same page.
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "RAGTUNE_CACHE_DIR": str(tmp_path / "cache"),
        "RAGTUNE_TORCH_THREADS": "7",
        "RAGTUNE_LLM_THREADS": "3",
        "COLUMNS": "40",
    }
    done = _generate("--check", env=env)
    assert done.returncode == 0, done.stderr
    text = PAGE.read_text(encoding="utf-8")
    assert str(Path.home()) not in text and str(REPO) not in text


def test_check_fails_on_a_stale_page_and_writing_fixes_it(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    text = PAGE.read_text(encoding="utf-8")
    stale = text.replace(
        "| `ragtune retrieve` | `--top-k`, `-k` | `5` |",
        "| `ragtune retrieve` | `--top-k`, `-k` | `6` |",
    )
    assert stale != text
    page.write_text(stale, encoding="utf-8")
    done = _generate("--check", "--page", str(page))
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "out of date" in done.stderr
    assert page.read_text(encoding="utf-8") == stale  # --check writes nothing
    assert _generate("--page", str(page)).returncode == 0
    assert page.read_text(encoding="utf-8") == text
    assert _generate("--check", "--page", str(page)).returncode == 0


def test_a_broken_marker_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    page.write_text("# X\n\n<!-- generated: nonsense -->\n<!-- end generated -->\n")
    done = _generate("--check", "--page", str(page))
    assert done.returncode == 1 and "no generator for 'nonsense'" in done.stderr
    page.write_text("# X\n\n<!-- generated: options -->\n")
    done = _generate("--page", str(page))
    assert done.returncode == 1 and "has no <!-- end generated -->" in done.stderr


def _prose() -> str:
    """The page without its generated parts: what was written by hand."""
    return re.sub(
        r"<!-- generated: [a-z-]+ -->.*?<!-- end generated -->",
        "",
        PAGE.read_text(encoding="utf-8"),
        flags=re.DOTALL,
    )


def _all_flags() -> set[str]:
    import typer

    from ragtune.cli import build_app

    root: Any = typer.main.get_command(build_app())
    flags = {"--help"}  # every command's, added by click rather than a parameter
    pending = [root]
    while pending:
        command = pending.pop()
        pending.extend(getattr(command, "commands", {}).values())
        for param in command.params:
            flags.update(param.opts, param.secondary_opts)
    return flags


def test_the_prose_names_real_flags_and_variables() -> None:
    prose = _prose()
    named = set(re.findall(r"`(--[a-z][a-z0-9-]*)", prose))
    assert named and named - _all_flags() == set()
    variables = set(re.findall(r"`([A-Z][A-Z0-9_]*_[A-Z0-9_]+)`", prose))
    assert variables - {v.name for v in ENVIRONMENT_VARIABLES} == set()


def test_the_registry_names_real_flags() -> None:
    flags = _all_flags()
    for variable in ENVIRONMENT_VARIABLES:
        named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", variable.meaning))
        assert named - flags == set(), variable.name


def test_the_top_k_defaults_the_prose_states() -> None:
    import typer

    from ragtune.cli import build_app

    root: Any = typer.main.get_command(build_app())

    def top_k(command: str) -> object:
        (param,) = [p for p in root.commands[command].params if p.name == "top_k"]
        return param.default

    prose = _prose()
    assert top_k("retrieve") == 5 and "`ragtune retrieve` returns 5 passages" in prose
    assert top_k("ask") == top_k("chat") == top_k("serve") == 4
    assert "`ragtune ask`, `chat` and `serve` put 4" in prose
