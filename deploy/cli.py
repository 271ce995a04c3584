"""The task layer's glue: turns KitError (and Ctrl-C) into a one-line message and an exit code.

Every task in fabfile.py is declared with `@kit_task` instead of `@task`, so bad input never
shows a traceback.
"""
import functools
import os
import sys

from invoke import task
from invoke.exceptions import Exit

from deploy import fastexit
from deploy.errors import KitError


def kit_task(*args, **kwargs):
    """Like invoke's @task, but KitError becomes `error: <message>` on stderr and exit 1."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            ok = False
            try:
                result = fn(*a, **kw)
                ok = True
                return result
            except KitError as e:
                raise Exit(f"error: {e}", code=1)
            except KeyboardInterrupt:
                raise Exit("interrupted", code=130)
            except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise Exit(code=0)
            finally:
                fastexit.task_done(ok)

        return task(*args, **kwargs)(wrapper)

    if len(args) == 1 and callable(args[0]) and not kwargs:
        fn, args = args[0], ()
        return decorate(fn)
    return decorate


def say(message: str) -> None:
    """Print one line of progress to stdout, flushed so it interleaves with remote output."""
    print(message, flush=True)
    sys.stdout.flush()
