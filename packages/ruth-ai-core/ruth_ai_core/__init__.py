"""Ruth AI Core: the control plane that feeds camera frames to model daemons.

It watches each camera's shared-memory ring, selects frames to meet every
subscription's FPS, sends them to the model daemons over their sockets, and
turns every answer into an event. It owns subscriptions, routing, the model
registry and metrics; it never touches pixels and never retries an inference.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ruth-ai-core")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
