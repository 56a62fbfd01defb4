"""The error of bad user input: what the command line reports as one line on stderr with exit status 2.

Library code raises ``InputError`` where a user's argument or file is wrong (a missing input, an output path that
is a file, an id list that does not parse); everything else that goes wrong is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: an argument, a path or a file's content that the job cannot use."""
