"""The one error type for problems in what the user gave us: a config value, a data row, a file, a package.

Its message is a full paragraph (what was wrong, where, how to fix it). ``run.py`` prints it without a traceback.
"""


class UserError(ValueError):
    """Bad input from the user. The message names the key or file:line and says how to fix it."""

    def exit(self) -> None:
        """How ``run.py`` ends on it: the paragraph logged, exit code 2; inside a submitit job (a sweep point) a
        ``JobUserError`` instead, so that the message reaches the sweep driver."""
        import logging
        import os
        import sys

        logging.getLogger("synpo").error("%s", self)
        if os.environ.get("SUBMITIT_EXECUTOR"):
            raise JobUserError(str(self)) from None
        sys.exit(2)


class JobUserError(RuntimeError):
    """A ``UserError`` inside a submitit job (a sweep point on SLURM or the local launcher), raised instead of
    ``sys.exit(2)``: submitit pickles an exception as the job's result and re-raises it in the sweep driver, message
    included, whereas a ``SystemExit`` leaves no result (the driver then reports only "has not produced any output",
    or, without SLURM accounting, waits forever)."""
