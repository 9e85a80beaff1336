"""The package's shape: the module map is true, modules stay small, imports cost nothing, extras stay extras."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "forecaster"
MAX_LINES = 450


def _map() -> list[str]:
    """The top-level modules in the order the package docstring lists them (``model/`` as ``model``)."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    assert doc is not None
    return [m.group(1) for m in re.finditer(r"^    (\w+)(?:\.py|/)\s", doc, re.M)]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_module_map_names_every_module_and_each_imports_only_those_above_it():
    order = _map()
    top_level = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _modules()}
    assert top_level - {"__init__", "__main__", "_preload"} == set(order)
    rank = {name: i for i, name in enumerate(order)}
    upward = []
    for path in _modules():
        owner = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if owner not in rank:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("forecaster"):
                parts = node.module.split(".")
                # ``from forecaster import __version__`` takes a name from the package's __init__, which imports
                # nothing but errors: only the modules among the names rank.
                imported = parts[1:2] or [alias.name for alias in node.names if alias.name in rank]
                upward += [f"{path.name} -> {m}" for m in imported if m != owner and rank[m] > rank[owner]]
    assert upward == []


def test_the_model_map_names_every_model_module():
    doc = ast.get_docstring(ast.parse((PACKAGE / "model" / "__init__.py").read_text()))
    assert doc is not None
    listed = set(re.findall(r"^    (\w+)\.py\s", doc, re.M))
    assert listed == {p.stem for p in (PACKAGE / "model").glob("*.py")} - {"__init__"}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_longer_than_the_limit(path: Path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_importing_the_package_loads_no_model_library_and_the_config_no_numeric_code():
    modules = [f"forecaster.{p.relative_to(PACKAGE).with_suffix('').as_posix().replace('/', '.')}" for p in _modules()]
    # _preload loads Prophet on purpose: the fit workers' fork server imports it to start them warm.
    modules = [m.removesuffix(".__init__") for m in modules if not m.endswith(("__main__", "_preload"))]
    probe = (
        "import importlib, sys\n"
        "import forecaster.config\n"
        "early = sorted(m for m in ('numpy', 'pandas') if m in sys.modules)\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "late = sorted(m for m in ('pandas', 'prophet', 'cmdstanpy', 'matplotlib', 'tqdm') if m in sys.modules)\n"
        "print(early, late)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[] []"


@pytest.mark.slow
def test_the_wheel_holds_no_demo_or_test_tooling_and_needs_no_plotting(tmp_path: Path):
    source = tmp_path / "src"
    # A copy, so no build/ left in the checkout from an earlier build can slip stale modules into the wheel.
    shutil.copytree(PACKAGE, source / "forecaster", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*build, str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("forecaster-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        code = {name: archive.read(name).decode() for name in names if name.endswith(".py")}
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {name.split("/")[0] for name in names} == {"forecaster", wheel.name.split("-")[0] + "-0.1.0.dist-info"}
    for name, text in code.items():
        # The one process the package starts is Prophet's compiled Stan model, as cmdstanpy would.
        starts_processes = "subprocess" in text and name != "forecaster/model/stan_optimize.py"
        assert not starts_processes and "/api/v1/write" not in text, f"{name} starts processes or writes to Prometheus"
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    always = " ".join(line for line in requires if "extra ==" not in line)
    assert "matplotlib" not in always and "tqdm" not in always
    plot = " ".join(line for line in requires if 'extra == "plot"' in line)
    assert "matplotlib" in plot and "tqdm" in plot
