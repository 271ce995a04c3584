"""The app's environment file on the server (/srv/<app>/shared/env, root:<app>, 0640): its
format, and the scripts that list it, change it and apply the change.

Format — one `NAME="value"` per line. Three readers load it: systemd (`EnvironmentFile=`) and
sh (`set -a; . env`, in the supervisor program and the deploy's preflight). Inside double
quotes both keep every character literally, except that a backslash escapes exactly
\\ " $ ` (systemd's SHELL_NEED_ESCAPE is the same set as sh's), and neither expands anything
else there (systemd never expands; `$` and backquote are escaped for sh). So the kit writes
every value double-quoted with those four escaped and all three read back the same bytes.
Values a line cannot carry identically are refused: newline, CR, NUL and the other control
characters but tab (systemd ends or drops such lines), and text that is not UTF-8.

    # >>> env: from fabric.yaml (fab setup rewrites these lines)
    LOG_LEVEL="info"                  the `env:` setting: non-secret, written by `fab setup`
    # <<< env: from fabric.yaml
    SECRET_KEY="…"                    `fab env.set` / `fab env.unset`: after the block, so they win

Values travel on the SSH channel's stdin (JSON read by the editing program on the server),
never in a command line: not in `ps`, not in sudo's log line in the journal. The program that
edits the file is `edit_env` + `remote_main` below, shipped as source (`PROGRAM`), so the
unit tests exercise the very code that runs there; it prints names only, never values.

Applying a change: systemd reads EnvironmentFile= and sh sources the file only when gunicorn's
master starts; `systemctl reload` (HUP) forks new workers from the same master, with the same
environment, so a reload would not apply it. A change therefore needs a new master: under
systemd the kit hands over (gunicorn's USR2, deploy/kit/handover.py: the new master re-reads
the env file and takes over the listening socket once its workers are ready, then the old one
stops), so no request waits or fails; under supervisor the same, through the kit's keeper
(deploy/kit/keeper.py).
Then the health gate runs through nginx; if it fails, the previous file is put back and the
app restarted again.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import re
import textwrap

from deploy import audit, layout, settings
from deploy.errors import KitError
from deploy.facts import MISSING, Probe
from deploy.shell import q, script

ESCAPED = ("\\", '"', "$", "`")
BACKUP = "env.prev"


# -- names and values -------------------------------------------------------------------------

check_name = settings.check_env_name
check_value = settings.check_env_value


def quote(value: str) -> str:
    """Double-quote a value so systemd's EnvironmentFile= and sh read it identically."""
    out = "".join("\\" + ch if ch in ESCAPED else ch for ch in value)
    return f'"{out}"'


def assignment(name: str, value: str) -> str:
    return f"{check_name(name)}={quote(check_value(name, value))}"


def parse_argument(arg: str) -> tuple[str, str | None]:
    """'NAME=VALUE' → (NAME, VALUE); 'NAME' → (NAME, None): ask for the value."""
    name, sep, value = arg.partition("=")
    check_name(name)
    return name, (check_value(name, value) if sep else None)


def header_lines(s) -> list[str]:
    return [
        f"# The environment of {s.app_name}, read by systemd (EnvironmentFile=) and sh (. file).",
        "# Managed by flasksample: `fab env.set NAME`, `fab env.unset NAME`, `fab env.list`;",
        "# the block comes from env: in fabric.yaml (fab setup). Values: \"…\" with \\ \" $ ` escaped.",
    ]


def block_lines(env: dict) -> list[str]:
    """The `env:` setting as assignment lines, sorted by name."""
    return [assignment(k, str(v)) for k, v in sorted(env.items())]


# -- the program that runs on the server (self-contained, Python 3.7+, no annotations) -------

def edit_env(text, header, sets, unsets, block):
    """Apply changes to an env file's text → (new text, report lines with names only).

    sets: {name: line}; unsets: [name]; block: None (keep) or the lines of the fabric.yaml block.
    """
    import re

    begin = "# >>> env: from fabric.yaml (fab setup rewrites these lines)"
    end = "# <<< env: from fabric.yaml"
    name_re = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")

    def name_of(line):
        m = name_re.match(line)
        return m.group(1) if m else None

    lines = text.splitlines()
    if begin in lines and end in lines[lines.index(begin):]:
        b = lines.index(begin)
        e = lines.index(end, b)
        head, old_block, rest = lines[:b], lines[b + 1:e], lines[e + 1:]
    else:
        i = 0
        while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
            i += 1
        head, old_block, rest = lines[:i], [], lines[i:]
    if not text:
        head = list(header)
    report = []
    new_block = old_block if block is None else list(block)
    if block is not None:
        report.append("block " + ("changed" if new_block != old_block else "unchanged"))
    block_names = [name_of(line) for line in new_block]
    out, done, removed = [], set(), set()
    for line in rest:
        n = name_of(line)
        if n in unsets:
            removed.add(n)
            continue
        if n in sets:
            if n not in done:
                done.add(n)
                report.append(("unchanged " if line == sets[n] else "changed ") + n)
                out.append(sets[n])
            continue
        out.append(line)
    for n in sets:
        if n not in done:
            out.append(sets[n])
            report.append("added " + n)
    for n in unsets:
        if n in removed:
            report.append("removed " + n)
        else:
            report.append(("in-block " if n in block_names else "absent ") + n)
    if not text and not new_block and not out:
        return "", report
    new = head + ([begin] + new_block + [end] if new_block else []) + out
    return "\n".join(new) + "\n", report


def list_env(text):
    """(name, 'fabric.yaml' | 'server') for each variable, in file order; never a value."""
    import re

    name_re = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")
    out, in_block = [], False
    for line in text.splitlines():
        if line.startswith("# >>> env: from fabric.yaml"):
            in_block = True
        elif line.startswith("# <<< env: from fabric.yaml"):
            in_block = False
        else:
            m = name_re.match(line)
            if m:
                out.append((m.group(1), "fabric.yaml" if in_block else "server"))
    return out


def remote_main():
    """argv: list|edit PATH GROUP; edit reads {"header","set","unset","block"} JSON on stdin."""
    import grp
    import json
    import os
    import sys

    op, path, group = sys.argv[1:4]
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    if op == "list":
        for name, source in list_env(old):
            print("::var {} {}".format(name, source))
        return
    req = json.loads(sys.stdin.read())
    new, report = edit_env(old, req["header"], req.get("set") or {}, req.get("unset") or [],
                           req.get("block"))
    for line in report:
        print(line)
    if new == old:
        print("::env unchanged")
        return
    tmp = path + ".kit-new"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(new)
        f.flush()
        os.fsync(f.fileno())
    os.chown(tmp, 0, grp.getgrnam(group).gr_gid)
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)
    print("::env changed")


PROGRAM = "\n\n".join(textwrap.dedent(inspect.getsource(fn))
                      for fn in (edit_env, list_env, remote_main)) + "\n\nremote_main()\n"


# -- what `fab setup` reads with the host's other facts ---------------------------------------

BLOCK_BEGIN = "# >>> env: from fabric.yaml (fab setup rewrites these lines)"  # as in edit_env
BLOCK_END = "# <<< env: from fabric.yaml"
# A line break for Python's splitlines() (edit_env) inside what awk reads as one line, as bytes.
_SPLITLINES_BREAKS = r"\015|\013|\014|\034|\035|\036|\302\205|\342\200\250|\342\200\251"


class BlockProbe(Probe):
    """The env file's fabric.yaml block, as the sha256 of its lines (`missing`: no file).

    A file that edit_env would rewrite even with the same block (no final newline, a line
    break awk and Python split differently, an empty block between markers) answers a digest
    no block has, so setup hands it to the editing program as before."""

    def __init__(self, path: str):
        super().__init__("envblock", path)

    def command(self) -> str:
        a = q(self.arg)
        find = ("/" + _SPLITLINES_BREAKS + "/ {bad = 1} {line[NR] = $0} "
                "END {for (i = 1; i <= NR; i++) if (line[i] == b) break; "
                "for (j = i + 1; j <= NR; j++) if (line[j] == e) break; "
                "if (i <= NR && j <= NR) {if (j == i + 1) bad = 1; for (k = i + 1; k < j; k++) print line[k]} "
                "if (bad) print \"\\001unclean\"}")
        return (f"if [ ! -e {a} ]; then echo {MISSING}; elif [ -n \"$(tail -c1 {a})\" ]; then "
                f"echo unclean; else awk -v b={q(BLOCK_BEGIN)} -v e={q(BLOCK_END)} {q(find)} {a} "
                "| sha256sum | cut -c1-64; fi")


def block_probe(s) -> BlockProbe:
    return BlockProbe(layout.env_file(s))


def block_in_place(s, f: dict[str, str]) -> bool:
    """Do the facts show the env file as `fab setup` would leave it (the `env:` setting's
    lines in its block, nothing else to rewrite)? Then there is nothing to send."""
    lines = block_lines(s.env)
    fact = f.get(block_probe(s).key)
    if fact == MISSING:
        return not lines  # edit_env leaves a missing file missing when the block is empty
    return fact == hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()


# -- the scripts (pure: settings in, shell text out) ------------------------------------------

def run_program(s, op: str) -> str:
    return f"python3 -c {q(PROGRAM)} {op} {q(layout.env_file(s))} {q(s.app_user)}"


def payload(s, sets: dict[str, str] | None = None, unsets: list[str] | None = None,
            block: dict | None = None) -> str:
    """The JSON sent on stdin: already-quoted lines, so the server only moves lines around."""
    return json.dumps({
        "header": header_lines(s),
        "set": {k: assignment(k, v) for k, v in (sets or {}).items()},
        "unset": [check_name(k) for k in (unsets or [])],
        "block": None if block is None else block_lines(block),
    })


def list_script(s) -> str:
    return script(f"[ -e {q(layout.env_file(s))} ] || echo '::missing'", run_program(s, "list"))


def change_script(s, who, what: str = "env change") -> str:
    """Edit the env file (changes on stdin) under the deploy lock; if it changed and the app
    runs, give it a new master (hand-over) behind the health gate, putting the previous file
    back if unhealthy (deploy/remote/env_change.sh). A change is recorded in the audit log as
    `what` (names only, never values)."""
    from deploy import release

    return release.run("env_change", s, who, ENV_PROGRAM=PROGRAM,
                       ENV_PREV=f"{layout.kit_dir(s)}/{BACKUP}", AUDIT_WHAT=audit.clean(what))


def digest_script(s) -> str:
    """Print `::digest NAME HASH` for every variable in the env file, HASH a sha256 of the
    line keyed by a salt read from stdin: `fab env.list` compares hosts with it; without the
    salt (one per run, never stored) the hash says nothing about the value."""
    return script(
        "IFS= read -r salt",
        f"[ -r {q(layout.env_file(s))} ] || exit 0",
        "while IFS= read -r line; do",
        "  case \"$line\" in [A-Za-z_]*=*) ;; *) continue ;; esac",
        "  echo \"::digest ${line%%=*} $(printf '%s\\n%s' \"$salt\" \"$line\" | sha256sum | cut -c1-16)\"",
        f"done < {q(layout.env_file(s))}",
    )
