"""Serve the built-in example model (bright-region detector) under any model id.

    python -m ruth_model_tools.example_container --model-id example
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ai_model_container.daemon.cli import serve

EXAMPLE_MODEL_DIR = Path(__file__).with_name("example_model")


@click.command()
@click.option("--model-id", default="example", show_default=True, help="Id to serve the example model under.")
@click.option("--socket-dir", default=None, metavar="DIR", help="Socket directory (default: $VAS_MODEL_SOCKET_DIR or /tmp).")
@click.pass_context
def main(ctx: click.Context, model_id: str, socket_dir: Optional[str]) -> None:
    """Start the example model daemon and serve until SIGTERM or Ctrl-C."""
    ctx.invoke(serve, model_dir=EXAMPLE_MODEL_DIR, socket_dir=socket_dir, model_id=model_id,
               drain_timeout=10.0, verbose=False)


if __name__ == "__main__":
    main()
