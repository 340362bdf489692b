"""Reports from ``run.json`` alone: Markdown, self-contained HTML and PNG plots.

Never imports TensorFlow, so ``tfopt report`` re-renders an old run anywhere in seconds.

Example:
    >>> from tfopt.report import render
    >>> render("reports/mnist_prune/run.json")  # writes report.md, report.html, *.png beside it
"""

from tfopt.report.render import render

__all__ = ["render"]
