"""``ruth-model new``: start a model directory from the model template with a new id.

The template is a working model (its own tests run in CI), so rendering is a
copy plus a few exact substitutions: the id in model.yaml, the image name in
the Dockerfile, and the smoke test's file name (pytest needs test module names
to be unique across models/). Nothing else is templated, so what a new
engineer gets is exactly what CI tested; the README stays the guide.
"""

from __future__ import annotations

import os
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Optional

from ai_model_container.contract.model_config import MODEL_FILE
from ai_model_container.contract.schema import IDENTIFIER_PATTERN

TEMPLATE_ENV = "RUTH_MODEL_TEMPLATE"
TEMPLATE_ID = "template"
TEMPLATE_DIR_NAME = "_template"
TEMPLATE_PACKAGE_DIR = "template"
SMOKE_TEST = Path("tests") / "test_template_smoke.py"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".wheelhouse")


class ScaffoldError(ValueError):
    """The model cannot be created; the message says why."""


def default_template() -> Path:
    """$RUTH_MODEL_TEMPLATE, else the template shipped as this package's data (models/_template in the repository)."""
    if os.environ.get(TEMPLATE_ENV):
        return Path(os.environ[TEMPLATE_ENV])
    return Path(str(resources.files("ruth_model_tools") / TEMPLATE_PACKAGE_DIR))


def _substitute(path: Path, replacements: list[tuple[str, str]]) -> None:
    text = path.read_text(encoding="utf-8")
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text, flags=re.M)
        if count == 0:
            raise ScaffoldError(f"{path}: the template no longer contains {pattern!r}; update scaffold.py with it")
    path.write_text(text, encoding="utf-8")


def render_model(model_id: str, destination: Path, template: Optional[Path] = None) -> Path:
    """Copy the template to ``destination/<model_id>`` with the new id; return the new directory."""
    if not re.fullmatch(IDENTIFIER_PATTERN, model_id):
        raise ScaffoldError(f"model id {model_id!r}: use 1-64 letters, digits, '-' or '_'")
    template = template or default_template()
    if not (template / MODEL_FILE).is_file():
        raise ScaffoldError(f"no model template at {template} (set ${TEMPLATE_ENV} or pass --template)")
    target = destination / model_id
    if target.exists():
        raise ScaffoldError(f"{target} already exists")
    shutil.copytree(template, target, ignore=IGNORED)
    image = re.escape(f"ruth-ai/{TEMPLATE_ID}")
    _substitute(target / MODEL_FILE, [(rf"^model_id: {TEMPLATE_ID}$", f"model_id: {model_id}"),
                                      (r"^model_name: .*$", f"model_name: {model_id}")])
    _substitute(target / "Dockerfile", [(image, f"ruth-ai/{model_id}"),
                                        (re.escape(f"models/{TEMPLATE_DIR_NAME}"), f"models/{model_id}")])
    smoke_test = target / SMOKE_TEST
    smoke_test.rename(smoke_test.with_name(f"test_{model_id.replace('-', '_')}_smoke.py"))
    return target
