"""Each distribution, installed on its own into a fresh virtual environment, has working commands.

Not editable installs: wheels built from a copy of packages/<name>, the way a user or the base
image gets them, so a module left out of a distribution, a missing dependency or a template that
is not shipped as package data fails here. (A copy, because setuptools builds in the source tree.)
pip's cache (filled by ``make install``) keeps it fast.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"
NAMES = ("ruth-ai-model-runtime", "ruth-ai-core", "ruth-ai-model-tools")
LEFT_OUT = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache", ".wheelhouse")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """packages/ and the template it links to, copied with the same relative layout."""
    root = tmp_path_factory.mktemp("sources")
    shutil.copytree(PACKAGES, root / "packages", symlinks=True, ignore=LEFT_OUT)
    shutil.copytree(ROOT / "models" / "_template", root / "models" / "_template", ignore=LEFT_OUT)
    return {name: root / "packages" / name for name in NAMES}


def fresh_env(directory: Path, *projects: Path) -> Path:
    """A new virtual environment with ``projects`` pip-installed (not editable); returns its bin/."""
    venv.EnvBuilder(with_pip=True).create(directory)
    bin_dir = directory / "bin"
    result = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             *map(str, projects)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return bin_dir


def run(bin_dir: Path, command: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / command), *arguments], capture_output=True, text=True, timeout=120)


def modules_loaded_by(bin_dir: Path, statement: str) -> set[str]:
    probe = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = run(bin_dir, "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_the_runtime_alone_serves_models_and_ships_no_core_or_tools(tmp_path: Path, sources: dict[str, Path]) -> None:
    bin_dir = fresh_env(tmp_path / "env", sources["ruth-ai-model-runtime"])
    for command in ("ruth-model", "ruth-serve", "ruth-install-model"):
        result = run(bin_dir, command, "--help")
        assert result.returncode == 0, f"{command} --help: {result.stderr}"
    commands = run(bin_dir, "ruth-model", "--help").stdout
    assert all(name in commands for name in ("serve", "serve-all", "validate", "health", "infer"))
    assert "write-frames" not in commands and " new " not in commands
    assert not (bin_dir / "ruth-ai").exists()
    loaded = modules_loaded_by(bin_dir, "import importlib.util as u; assert u.find_spec('ruth_ai_core') is None "
                                       "and u.find_spec('ruth_model_tools') is None")
    assert "ai_model_container" not in loaded


def test_core_runs_on_the_contract_without_opencv_or_the_daemon(tmp_path: Path, sources: dict[str, Path]) -> None:
    bin_dir = fresh_env(tmp_path / "env", sources["ruth-ai-model-runtime"], sources["ruth-ai-core"])
    for arguments in (("--help",), ("run", "--help"), ("status", "--help"), ("models", "--help")):
        result = run(bin_dir, "ruth-ai", *arguments)
        assert result.returncode == 0, f"ruth-ai {' '.join(arguments)}: {result.stderr}"
    loaded = modules_loaded_by(bin_dir, "import ruth_ai_core.cli, ruth_ai_core.core, ruth_ai_core.reconcile")
    assert "cv2" not in loaded, "Ruth AI Core must not load OpenCV"
    assert not {name for name in loaded if name.startswith(("ai_model_container.daemon", "ai_model_container.backends"))}


def test_core_source_imports_nothing_of_the_runtime_but_the_contract() -> None:
    imports = re.compile(r"^\s*(?:from|import) (ai_model_container[\w.]*)", re.M)
    for path in (PACKAGES / "ruth-ai-core" / "ruth_ai_core").rglob("*.py"):
        for module in imports.findall(path.read_text()):
            assert module.startswith("ai_model_container.contract"), f"{path.name} imports {module}"


def test_the_tools_add_their_commands_and_ship_the_template(tmp_path: Path, sources: dict[str, Path]) -> None:
    bin_dir = fresh_env(tmp_path / "env", sources["ruth-ai-model-runtime"], sources["ruth-ai-model-tools"])
    commands = run(bin_dir, "ruth-model", "--help").stdout
    assert "write-frames" in commands and "new" in commands
    assert run(bin_dir, "ruth-model", "write-frames", "--help").returncode == 0
    created = run(bin_dir, "ruth-model", "new", "packaged-model", "--dest", str(tmp_path / "models"))
    assert created.returncode == 0, created.stderr
    model = tmp_path / "models" / "packaged-model"
    assert sorted(path.name for path in model.iterdir()) == sorted(
        path.name for path in (ROOT / "models" / "_template").iterdir()
        if path.name not in ("__pycache__", ".pytest_cache", ".wheelhouse"))
    validated = run(bin_dir, "ruth-model", "validate", str(model / "model.yaml"))
    assert validated.returncode == 0, validated.stderr


def test_every_distribution_has_the_same_version_and_pins_the_runtime() -> None:
    import tomllib

    projects = {path.parent.name: tomllib.loads(path.read_text())["project"] for path in PACKAGES.glob("*/pyproject.toml")}
    assert set(projects) == {"ruth-ai-model-runtime", "ruth-ai-core", "ruth-ai-model-tools"}
    versions = {project["version"] for project in projects.values()}
    assert len(versions) == 1, f"the distributions disagree on the version: {versions}"
    (version,) = versions
    for name in ("ruth-ai-core", "ruth-ai-model-tools"):
        assert f"ruth-ai-model-runtime=={version}" in projects[name]["dependencies"]
    build_sh = subprocess.run([str(ROOT / "build.sh"), "version"], capture_output=True, text=True, check=True)
    assert build_sh.stdout.strip() == version
    assert sys.version_info >= (3, 10)
