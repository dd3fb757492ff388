"""The developer tools' ``ruth-model`` commands: ``new`` (scaffold a model) and ``write-frames`` (act as VAS).

They are registered under the runtime CLI's ``ruth_model.commands`` entry-point group, so
installing this distribution adds them to ``ruth-model``; the runtime image, which does not
ship the tools, has a ``ruth-model`` without them.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

import click

EXIT_CONFIG = 2


@click.command("write-frames")
@click.option("--camera", "cameras", multiple=True, required=True, help="Camera id; repeat for several cameras.")
@click.option("--source", default="synthetic", show_default=True,
              help="'synthetic', a video file (looped) or a directory of images.")
@click.option("--fps", default=10.0, show_default=True)
@click.option("--width", type=int, default=None, help="Frame width (default: the source's).")
@click.option("--height", type=int, default=None, help="Frame height (default: the source's).")
@click.option("--slots", default=8, show_default=True, help="Frames kept in each ring.")
@click.option("--duration", type=float, default=None, help="Seconds to run (default: until Ctrl-C).")
@click.option("--hold", type=click.IntRange(min=1), default=1, show_default=True,
              help="With a directory of images: frames each image stays on (a slideshow: --fps 10 --hold 30 "
                   "shows each image for 3 s).")
def write_frames(cameras: tuple[str, ...], source: str, fps: float, width: Optional[int], height: Optional[int],
                 slots: int, duration: Optional[float], hold: int) -> None:
    """Act as VAS: publish NV12 frames into /dev/shm/vas_frames_<camera> rings."""
    from .frame_writer import probe_size, publish  # OpenCV only for this command

    if hold > 1 and not Path(source).is_dir():
        raise click.BadParameter("only a directory of images can be held (a video plays at its own pace)",
                                 param_hint="--hold")

    native_width, native_height = probe_size(source)
    width, height = width or native_width, height or native_height
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    held = f", each image for {hold} frames" if hold > 1 else ""
    click.echo(f"writing {width}x{height} NV12 at {fps} fps to {', '.join(cameras)}{held} (Ctrl-C stops)", err=True)
    written = publish(cameras, source, fps, width, height, slots, duration, stop, hold)
    click.echo(json.dumps(written))


@click.command()
@click.argument("model_id")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=Path("models"), show_default=True,
              help="Directory the new model directory is created in.")
@click.option("--template", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Template to copy (default: $RUTH_MODEL_TEMPLATE, else the template this package ships).")
def new(model_id: str, dest: Path, template: Optional[Path]) -> None:
    """Create DEST/MODEL_ID from the model template: a runnable, tested model to edit; exits 2 if it cannot."""
    from .scaffold import ScaffoldError, render_model

    try:
        target = render_model(model_id, dest, template)
    except ScaffoldError as exc:
        click.echo(f"cannot create {model_id}: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(f"created {target}: edit handler.py, model.yaml and weights/, then follow {target / 'README.md'}")
