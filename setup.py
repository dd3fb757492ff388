"""Packaging for the Ruth AI model runtime and Ruth AI Core.

The version lives in ai_model_container/__init__.py only; everything else
(this file, build.sh, the base image tag) reads it from there.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (ROOT / "ai_model_container" / "__init__.py").read_text(), re.M).group(1)

setup(
    name="ruth-ai-model-runtime",
    version=VERSION,
    description="Ruth AI model runtime: UDS inference server, NV12 shared-memory reader, model lifecycle",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["ai_model_container", "ai_model_container.*", "ruth_ai_core", "ruth_ai_core.*"]),
    package_data={
        "ai_model_container": ["example_model/*.yaml", "example_model/*.py", "py.typed"],
        # Alembic reads the migration scripts as files: ship them with the package.
        "ruth_ai_core.storage.migrations": ["script.py.mako", "versions/*.py"],
    },
    install_requires=[
        "numpy>=1.26",
        "opencv-python-headless>=4.10,<5",
        "pydantic>=2.6,<3",
        "pyyaml>=6",
        "posix-ipc>=1.1",
        "click>=8.1",
    ],
    extras_require={
        "core": [
            "prometheus-client>=0.20",
            # Storage: one code path over SQLite (embedded default) and PostgreSQL (production).
            "sqlalchemy>=2.0.30,<2.2",
            "alembic>=1.13,<2",
            "psycopg[binary]>=3.2,<4",
            # The discovery API (`ruth-ai api`); imported only by that command.
            "fastapi>=0.115,<1",
            "uvicorn>=0.30,<1",
        ],
        "test": ["pytest>=8", "hypothesis>=6.100", "docker>=7", "schemathesis>=4,<5"],
    },
    entry_points={
        "console_scripts": [
            "ruth-model=ai_model_container.cli:main",
            "ruth-ai=ruth_ai_core.cli:main",
        ],
    },
)
