"""`vadmil <command> [key=value ...]`: one console script; each command is the ``main`` of
``vadmil.commands.<module>`` (a thin Hydra application around library code)."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("vadmil.commands.train", "train one MIL head; -m sweeps (e.g. -m model=fcn seed=0,1,2)"),
    "eval": (
        "vadmil.commands.eval",
        "recompute a finished run's test metrics: vadmil eval run=<run dir>",
    ),
    "import": (
        "vadmil.commands.import_features",
        "convert public feature files into a store: vadmil import format=rtfm ...",
    ),
    "extract": (
        "vadmil.commands.extract",
        "raw videos -> feature store: vadmil extract input=<videos> output=<store.h5>",
    ),
    "extract-merge": (
        "vadmil.commands.extract_merge",
        "join shard stores: vadmil extract-merge inputs=[a.h5,b.h5] output=c.h5",
    ),
    "store": (
        "vadmil.commands.store",
        "one self-contained file from a store and its segments: vadmil store compact store=<store.h5>",
    ),
    "report": (
        "vadmil.commands.report",
        "leaderboard (CSV, Markdown, HTML with plots) of run dirs: vadmil report runs=<dir> output=<dir>",
    ),
    "score": (
        "vadmil.commands.score",
        "a video -> per-frame scores (CSV, JSON, plot): vadmil score video=<file> checkpoint=<run dir>",
    ),
    "demo": ("vadmil.commands.demo", "the whole pipeline on generated videos: extract, sweep, report, score"),
    "synthesize": (
        "vadmil.commands.synthesize",
        "write the embedded synthetic store + manifest: vadmil synthesize",
    ),
    "gt-check": ("vadmil.commands.gt_check", "compare rebuilt ground truth with a released gt-*.npy vector"),
}

USAGE = "usage: vadmil <command> [key=value ...] [--help] [--cfg job] [-m]\n\ncommands:\n" + "\n".join(
    f"  {name:<15}{text}" for name, (_, text) in COMMANDS.items()
)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"vadmil: error: unknown command '{command}'\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [f"vadmil-{command}", *rest]  # Hydra parses sys.argv
    importlib.import_module(COMMANDS[command][0]).main()


if __name__ == "__main__":
    main()
