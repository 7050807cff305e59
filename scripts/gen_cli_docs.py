"""Regenerate docs/cli.md from the argument parser: ``python scripts/gen_cli_docs.py``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"

INTRO = """# Command line reference

Generated from `cellseek --help` by `scripts/gen_cli_docs.py` (a test checks it is current).
Every long command shows a progress bar on the terminal (`-q` hides it); errors a user can cause
print one line naming the file or model and the problem, and exit with status 1.
"""


def render() -> str:
    """The Markdown text of the CLI reference."""
    os.environ["COLUMNS"] = "100"
    from cellseek.cli.main import build_parser

    parser = build_parser()
    parts = [INTRO, "## `cellseek`\n", "```\n" + parser.format_help() + "```\n"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        parts += [f"## `cellseek {name}`\n", "```\n" + p.format_help() + "```\n"]
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        for action_name, q in (nested[0].choices.items() if nested else ()):
            parts += [f"### `cellseek {name} {action_name}`\n",
                      "```\n" + q.format_help() + "```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}")
