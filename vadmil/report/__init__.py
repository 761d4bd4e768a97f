"""`vadmil report`: the leaderboard of run dirs — CSV, Markdown and a self-contained HTML page with plots.

``runs`` (find and read run dirs) → ``keys`` (what makes runs comparable) → ``aggregate`` (sections, groups,
mean ± std) → ``tables`` (CSV, Markdown) and ``curves`` / ``plots`` / ``figures`` → ``html``; ``leaderboard``
writes the files (:mod:`vadmil.commands.report` is the command).
"""

from vadmil.report.leaderboard import ReportOptions, write_report

__all__ = ["ReportOptions", "write_report"]
