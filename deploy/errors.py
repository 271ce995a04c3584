"""The one exception type the kit raises for problems a user can fix.

`str(KitError)` is a single line that names the problem and the fix; the task layer prints it
without a traceback and exits non-zero.
"""


class KitError(Exception):
    """A user-fixable problem: the message is one line, naming the problem and the fix."""

    def __init__(self, problem: str, fix: str | None = None):
        message = problem if not fix else f"{problem} — fix: {fix}"
        super().__init__(" ".join(message.split()))
