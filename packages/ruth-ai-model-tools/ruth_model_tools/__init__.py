"""Ruth AI developer tools: the model template and scaffolder, the reference frame writer, examples.

Not part of the runtime image: these are for a model author's machine, tests,
benchmarks and the demo. ``ruth-model new`` and ``ruth-model write-frames`` come
from here (see ``cli``).
"""
