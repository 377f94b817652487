"""The one error type for problems in what the user gave us: a config value, a data row, a file, a package.

Its message is a full paragraph (what was wrong, where, how to fix it). ``run.py`` prints it without a traceback.
"""


class UserError(ValueError):
    """Bad input from the user. The message names the key or file:line and says how to fix it."""
