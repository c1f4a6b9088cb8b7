"""What the library logs that a person at the command line should see, on stderr.

The library only logs (the package root gives its loggers a NullHandler). A few of
its records explain a wait or a repair that would otherwise look like a hang or a
mystery, such as the one-time ONNX export of the embedding model; the CLI prints
those loggers' records from INFO up, as plain lines.
"""

from __future__ import annotations

import logging

from ragtune.terminal import err

# By name, not by import: importing the modules would load NumPy before --help.
NOTICE_LOGGERS = ("ragtune.index.embedding.onnx_backend",)


class _StderrLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            err.print(record.getMessage())
        except Exception:  # a notice must never break the command it accompanies
            self.handleError(record)


def show_notices() -> None:
    """Print the notice loggers' records on stderr (once, however often it is called)."""
    for name in NOTICE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(handler, _StderrLines) for handler in logger.handlers):
            logger.addHandler(_StderrLines(logging.INFO))
        logger.setLevel(logging.INFO)
