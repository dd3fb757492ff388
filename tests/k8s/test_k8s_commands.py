"""The commands in the manifests are real: each is parsed by the installed CLI's own click parser.

A container of ruth-ai/core runs `ruth-ai ARGS` (the image's entry point), a probe runs `ruth-model
...`, a model container runs its image's entry point with no arguments. Parsing is click's, with
$(VAR) expanded as the kubelet would, so a renamed command or option, or a value click refuses,
fails here and not on a cluster.
"""

from __future__ import annotations

import re

import click
import pytest
from k8s_manifests import REPO, TARGETS, all_containers, expand, is_core, is_model, pod_objects, pod_spec, render

from ai_model_container.daemon.cli import main as ruth_model
from ruth_ai_core.cli import main as ruth_ai

CLIS = {"ruth-ai": ruth_ai, "ruth-model": ruth_model}


def parse(argv: list[str]) -> list[str]:
    """Parse argv the way invoking it would, down to its last subcommand; returns the command path.

    The groups themselves take no options here (only --help and --version), so a group's word is
    the name of its subcommand.
    """
    name, *arguments = argv
    command: click.Command = CLIS[name]
    context = None
    path = [name]
    while isinstance(command, click.Group):
        context = click.Context(command, info_name=name, parent=context)
        assert arguments, f"{argv}: {name} needs a subcommand"
        name, *arguments = arguments
        found = command.get_command(context, name)
        if found is None:
            raise click.UsageError(f"no such command {name!r}", context)
        command = found
        path.append(name)
    command.make_context(name, arguments, parent=context)
    return path


def entrypoint(dockerfile: str) -> list[str]:
    match = re.search(r'^ENTRYPOINT \[(.*)\]$', (REPO / dockerfile).read_text(), re.MULTILINE)
    assert match, f"{dockerfile} has no ENTRYPOINT"
    return [part.strip().strip('"') for part in match.group(1).split(",")]


def test_the_core_image_runs_ruth_ai_and_a_model_image_its_model() -> None:
    assert entrypoint("core-image/Dockerfile") == ["ruth-ai"]
    assert entrypoint("runtime-base-image/Dockerfile") == ["ruth-serve"]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_command_and_probe_parses(target: str) -> None:
    commands = set()
    for obj in pod_objects(render(target)):
        for container in all_containers(pod_spec(obj)):
            if is_core(container):
                assert "command" not in container, "the image's entry point is ruth-ai"
                commands.add(" ".join(parse(["ruth-ai", *expand(container["args"], container)])))
            elif is_model(container):
                assert "command" not in container and "args" not in container, "ruth-serve takes no arguments"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                argv = container.get(probe, {}).get("exec", {}).get("command")
                if argv and argv[0] in CLIS:
                    commands.add(" ".join(parse(expand(argv, container))))
    assert commands == {"ruth-ai run", "ruth-ai db upgrade", "ruth-ai api", "ruth-model health"}


@pytest.mark.parametrize("argv", [
    ["ruth-ai", "run", "--node", "n1", "--metrics-prt", "9464"],
    ["ruth-ai", "run", "--event-sink", "kafka"],
    ["ruth-ai", "serve-api"],
    ["ruth-model", "health", "face-detection", "--socket-directory", "/run/ruth-ai"],
], ids=["renamed option", "refused value", "no such command", "renamed probe option"])
def test_a_command_the_clis_do_not_have_fails_to_parse(argv: list[str]) -> None:
    with pytest.raises(click.UsageError):
        parse(argv)
