"""``make soak`` (bench.soak) as CI runs it, briefly: the whole chain starts with the options Core has
today, every selected frame is accounted for, and the command says so. A renamed Core option or a
changed metric would otherwise only show the next time someone runs a ten-minute soak."""

from __future__ import annotations

import subprocess
import sys

from bench.procs import REPO_ROOT


def test_a_short_soak_runs_the_chain_and_loses_nothing():
    result = subprocess.run([sys.executable, "-m", "bench.soak", "--cameras", "2", "--minutes", "0.4",
                             "--sample-s", "8", "--warmup-s", "8"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "balanced" in output and "nothing lost" in output, output[-4000:]
