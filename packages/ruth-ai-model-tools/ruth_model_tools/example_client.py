"""Talk to a model daemon the way Ruth AI Core does, end to end.

Writes a few synthetic frames into a camera ring (unless ``--camera`` names a
ring that already exists), asks the daemon for its health, sends one
inference request per frame on one persistent connection and prints what
came back.

    python -m ruth_model_tools.example_container --model-id example &
    python -m ruth_model_tools.example_client --model-id example
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import click

from ai_model_container.contract.client import ClientError, ModelClient, inference_request
from ai_model_container.contract.errors import RequestError
from ai_model_container.contract.frame_reader import FrameReader
from ai_model_container.contract.paths import socket_path
from ruth_model_tools.frame_writer import FrameWriter, synthetic_scene


@click.command()
@click.option("--model-id", default="example", show_default=True)
@click.option("--camera", "camera_id", default="example_cam", show_default=True,
              help="Camera ring to use; created with synthetic frames if it does not exist.")
@click.option("--frames", default=5, show_default=True, help="Inference requests to send.")
@click.option("--socket-dir", default=None, metavar="DIR")
def main(model_id: str, camera_id: str, frames: int, socket_dir: Optional[str]) -> None:
    """Send health and inference requests to MODEL_ID and print the answers."""
    writer: Optional[FrameWriter] = None
    try:
        header, newest, _ = FrameReader().newest_frame(camera_id)
        width, height = header.width, header.height
    except RequestError:
        width, height = 1280, 720
        writer = FrameWriter(camera_id, width, height, slot_count=max(frames, 1))
        for index in range(frames):
            writer.write_bgr(synthetic_scene(index, width, height)[0])
        newest = writer.last_frame_id
    try:
        with ModelClient(socket_path(model_id, socket_dir)) as client:
            click.echo(f"health: {client.health().model_dump_json()}")
            for frame_id in range(max(newest - frames + 1, 1), newest + 1):
                response = client.infer(inference_request(model_id, camera_id, frame_id, width, height))
                click.echo(json.dumps(response.model_dump(mode="json")))
    except ClientError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(3)
    finally:
        if writer is not None:
            writer.close()


if __name__ == "__main__":
    main()
