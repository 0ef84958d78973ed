"""One exception type for everything a user can get wrong.

The CLI turns a MoodError into one line on stderr and exit code 2; anything
else is a bug and keeps its traceback.
"""


class MoodError(Exception):
    """A user-facing error whose message is one clear line."""
