"""The sections of ``make demo`` (``python -m certkit_app.demo``), one module per method, and the code-sets demo.

Each ``demo_*`` function prints a table on the embedded digits data (or prompts, or code) and can be
run on its own, e.g. ``python -c "from certkit_app.demos.bounds import demo_bounds; demo_bounds()"``.
"""

__all__ = ["bounds", "certified_sets", "certified_training", "code_sets", "erase_and_check", "rscp", "smoothing"]
