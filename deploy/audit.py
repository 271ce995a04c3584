"""The audit trail on each host: one line per change a task made there — when, who, what.

Every task that changes a host (setup's changes, deploy, rollback, restart, env.set/unset,
exec) appends `WHEN<TAB>WHO<TAB>WHAT` to `layout.audit_log(s)` (root-only, in the app's .kit
directory) from the same script that makes the change; `fab audit` shows the last entries.
WHEN is the server's UTC clock. Names only: env changes log variable names, never values.
"""
from __future__ import annotations

import re

from deploy import layout
from deploy.shell import q, script

# anything else in WHO/WHAT becomes '?': an entry is one line of plain text, safe to quote
UNSAFE = re.compile(r"[^A-Za-z0-9 ._:,=@/()+-]", re.A)
MAX_TEXT = 200


def clean(text: str) -> str:
    return UNSAFE.sub("?", text)[:MAX_TEXT]


def append_line(s, who: str, what: str) -> str:
    """Shell that appends one entry; it does nothing on a host without the kit's directory
    (nothing was set up there yet)."""
    kit, log = q(layout.kit_dir(s)), q(layout.audit_log(s))
    return (f"if [ -d {kit} ]; then (umask 077; printf '%s\\t%s\\t%s\\n' "
            f"\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" {q(clean(who))} {q(clean(what))} >> {log}); fi")


def show_script(s, number: int) -> str:
    """The last `number` entries, oldest first."""
    log = q(layout.audit_log(s))
    return script(f"if [ -f {log} ]; then tail -n {int(number)} {log}; "
                  "else echo '::none'; fi")


def format_entry(line: str) -> str:
    """`WHEN  WHO  WHAT` in columns, for `fab audit`."""
    when, _, rest = line.partition("\t")
    who, _, what = rest.partition("\t")
    return f"{when:<21} {who:<36} {what}"
