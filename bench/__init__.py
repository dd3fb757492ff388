"""Runtime benchmarks: ``python -m bench`` (or ``make bench``) runs every section and prints one table.

Each section measures ours next to a reference in the same run, with
interleaved repeats, and reports medians: this machine is shared and noisy,
so only side-by-side figures mean anything. A section is a module with a
``run(options) -> SectionResult`` function, listed in ``bench.__main__.SECTIONS``.
"""
