"""The task layer's glue: turns KitError (and Ctrl-C) into a one-line message and an exit code.

Every task in fabfile.py is declared with `@kit_task` instead of `@task`, so bad input never
shows a traceback. Importing it also masks secrets in log records: `fab --debug` makes Invoke
log every config layer, including the sudo/login password and the key passphrase that
`--prompt-for-*` and `FABRIC_SUDO_PASSWORD` put there.
"""
import functools
import logging
import os
import re
import sys

from invoke import task
from invoke.exceptions import Exit

from deploy import fastexit
from deploy.errors import KitError


SECRET_KEYS = ("password", "passphrase")
# 'password': 'value' in the repr of a config dict (either quote style, escapes included)
_SECRET_ITEM = re.compile(r"""(['"](?:%s)['"]\s*:\s*)(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
                          % "|".join(SECRET_KEYS))


def mask_secrets(text: str) -> str:
    """`{'sudo': {'password': 'x'}}` → `{'sudo': {'password': '***'}}`."""
    return _SECRET_ITEM.sub(r"\1'***'", text)


def _masking_factory(make):
    def factory(*args, **kwargs):
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return record
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        return record
    factory.kit_masking = True
    return factory


def mask_secrets_in_logs() -> None:
    """Every log record created from now on has its passwords and passphrases masked (a record
    factory, so it holds for every logger and handler, including those --debug adds later)."""
    make = logging.getLogRecordFactory()
    if not getattr(make, "kit_masking", False):
        logging.setLogRecordFactory(_masking_factory(make))


mask_secrets_in_logs()
# paramiko logs a failed handshake (a host still booting resets the connection) with a
# traceback through logging's last-resort handler, on stderr; the kit reports it as one line.
# With --debug the records still reach the root logger's handlers.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


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
