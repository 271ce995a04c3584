"""The env file: quoting that systemd and sh read alike, the editing program, the scripts."""
import grp
import json
import os
import subprocess
import sys

import pytest

from deploy.lock import Holder
from deploy import envfile, settings
from deploy.errors import KitError

TRICKY = [
    "plain", "", "with space  and\ttab", "$HOME ${X} $(id) `id`", 'dq " inside', "sq ' inside",
    "back\\slash \\n \\\\ end\\", "#not-a-comment", "a=b=c", "'quoted'", '"quoted"', "ünïcødé ✓",
    " leading and trailing ", "semi;colon && amp | pipe > gt", "*glob?[x]", "~tilde", "!bang",
]


def systemd_value(line: str) -> str:
    """systemd's EnvironmentFile= value parser (src/basic/env-file.c), for one NAME=... line."""
    value, state, i = [], "pre", line.index("=") + 1
    last_ws = None
    for c in line[i:]:
        if state == "pre":
            if c == "'":
                state = "sq"
            elif c == '"':
                state = "dq"
            elif c == "\\":
                state = "esc"
            elif not c.isspace():
                state, last_ws = "val", None
                value.append(c)
        elif state == "val":
            if c == "\\":
                state = "esc"
            else:
                if c.isspace():
                    last_ws = last_ws if last_ws is not None else len(value)
                else:
                    last_ws = None
                value.append(c)
        elif state == "esc":
            state = "val"
            value.append(c)
        elif state == "sq":
            if c == "'":
                state = "pre"
            else:
                value.append(c)
        elif state == "dq":
            if c == '"':
                state = "pre"
            elif c == "\\":
                state = "dqesc"
            else:
                value.append(c)
        elif state == "dqesc":
            state = "dq"
            if c not in '"\\`$':
                value.append("\\")
            value.append(c)
    if state == "val" and last_ws is not None:
        value = value[:last_ws]
    return "".join(value)


@pytest.mark.parametrize("value", TRICKY)
def test_systemd_and_sh_read_back_the_same_value(value, tmp_path):
    line = envfile.assignment("K", value)
    assert systemd_value(line) == value
    f = tmp_path / "env"
    f.write_text("# comment\n" + line + "\n")
    out = subprocess.run(["sh", "-c", 'set -a; . "$1"; set +a; printf %s "$K"', "sh", str(f)],
                         capture_output=True, env={"PATH": os.environ["PATH"]})
    assert out.returncode == 0 and out.stdout.decode() == value


def test_the_shell_idiom_for_single_quotes_would_differ_under_systemd():
    # why the kit double-quotes: sh's 'a'\''b' is "a'b", systemd reads something else
    assert systemd_value("K='a'\\''b'") != "a'b"


def test_quote_renders_double_quotes_with_four_escapes():
    assert envfile.assignment("SECRET_KEY", 'a$b"c\\d`e f') == 'SECRET_KEY="a\\$b\\"c\\\\d\\`e f"'


@pytest.mark.parametrize("value,what", [("a\nb", "newline"), ("a\rb", "carriage return"),
                                        ("a\0b", "NUL"), ("a\x1bb", "control character 0x1b"),
                                        ("a\x7f", "control character 0x7f"),
                                        ("\udcff", "UTF-8"), ("x" * 40000, "limit")])
def test_values_neither_can_carry_are_refused_in_one_line(value, what):
    with pytest.raises(KitError) as e:
        envfile.assignment("K", value)
    assert what in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A B", "A=B", "LISTEN_FDS", "NOTIFY_SOCKET"])
def test_bad_names_are_refused(name):
    with pytest.raises(KitError):
        envfile.check_name(name)


def test_parse_argument():
    assert envfile.parse_argument("SECRET_KEY") == ("SECRET_KEY", None)
    assert envfile.parse_argument("A=b=c") == ("A", "b=c")
    assert envfile.parse_argument("A=") == ("A", "")


# -- the editing program ----------------------------------------------------------------------

HEADER = ["# head"]
B, E = ("# >>> env: from fabric.yaml (fab setup rewrites these lines)", "# <<< env: from fabric.yaml")


def edit(text, sets=None, unsets=(), block=None):
    return envfile.edit_env(text, HEADER, sets or {}, list(unsets), block)


def test_edit_creates_with_header_and_keeps_nothing_for_nothing():
    assert edit("") == ("", [])
    assert edit("", block=[]) == ("", ["block unchanged"])
    text, rep = edit("", {"A": 'A="1"'})
    assert text == '# head\nA="1"\n' and rep == ["added A"]


def test_edit_replaces_in_place_drops_duplicates_and_reports_names_only():
    old = '# head\nA="1"\nB="2"\nA="old dup"\n'
    text, rep = edit(old, {"A": 'A="9"', "C": 'C="3"'})
    assert text == '# head\nA="9"\nB="2"\nC="3"\n'
    assert rep == ["changed A", "added C"]
    assert edit(text, {"A": 'A="9"'}) == (text, ["unchanged A"])
    assert not any("9" in line for line in rep)


def test_edit_unsets():
    text, rep = edit('# head\nA="1"\nB="2"\n', unsets=["A", "Z"])
    assert text == '# head\nB="2"\n' and rep == ["removed A", "absent Z"]


def test_block_goes_after_the_header_and_server_values_after_it():
    text, rep = edit('# head\nS="secret"\n', block=['L="info"'])
    assert text == f'# head\n{B}\nL="info"\n{E}\nS="secret"\n' and rep == ["block changed"]
    text2, rep = edit(text, block=['L="debug"', 'M="x"'])
    assert text2 == f'# head\n{B}\nL="debug"\nM="x"\n{E}\nS="secret"\n'
    text3, rep = edit(text2, {"S": 'S="new"'}, block=None)
    assert text3 == f'# head\n{B}\nL="debug"\nM="x"\n{E}\nS="new"\n'
    assert edit(text3, unsets=["L"])[1] == ["in-block L"]
    assert edit(text3, block=[])[0] == '# head\nS="new"\n'


def test_list_env_gives_names_and_sources_only():
    text = f'# head\n{B}\nL="info"\n{E}\nS="secret"\nexport T="x"\n'
    assert envfile.list_env(text) == [("L", "fabric.yaml"), ("S", "server"), ("T", "server")]


@pytest.mark.skipif(os.geteuid() != 0, reason="the program chowns the file to root")
def test_the_shipped_program_edits_a_file_as_on_the_server(tmp_path):
    s = settings.build({})
    path = tmp_path / "env"
    group = grp.getgrgid(0).gr_name

    def run(op, stdin=""):
        return subprocess.run([sys.executable, "-c", envfile.PROGRAM, op, str(path), group],
                              input=stdin, capture_output=True, text=True, check=True).stdout

    payload = envfile.payload(s, sets={"SECRET_KEY": "v$1 'x'"}, block={"LOG": "info"})
    out = run("edit", payload)
    assert "added SECRET_KEY" in out and "::env changed" in out and "v$1" not in out
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o640)
    assert 'SECRET_KEY="v\\$1 \'x\'"' in path.read_text()
    assert run("edit", payload).endswith("::env unchanged\n")
    assert run("list") == "::var LOG fabric.yaml\n::var SECRET_KEY server\n"


# -- the scripts ------------------------------------------------------------------------------

def test_values_travel_in_the_payload_never_in_the_script():
    s = settings.build({})
    payload = json.loads(envfile.payload(s, sets={"SECRET_KEY": "hunter2"}))
    assert payload["set"] == {"SECRET_KEY": 'SECRET_KEY="hunter2"'}
    text = envfile.change_script(s, Holder("me@here", "t"))
    assert "hunter2" not in text
    assert 'python3 -c "$ENV_PROGRAM" edit "$ENV_FILE" "$APP_USER"' in text
    assert "\nENV_FILE=/srv/flasksample/shared/env\n" in text


ENV_STUBS = r"""
systemctl() { echo "systemctl $*" >> "$CALLS"; }
supervisorctl() { echo "supervisorctl $*" >> "$CALLS"; if [ "$1" = status ]; then echo "app RUNNING"; fi; }
curl() { echo "curl" >> "$CALLS"; if [ -n "${DOWN:-}" ]; then echo "000 "; return 7; fi; printf '200 \n200 \n200 \n'; }
sleep() { :; }
python3() { cat > /dev/null; echo "changed X"; echo "::env changed"; printf 'X="new"\n' > "$4"; }
"""


@pytest.mark.parametrize("manager, restart", [("systemd", "systemctl restart flasksample.service"),
                                              ("supervisor", "supervisorctl restart flasksample")])
@pytest.mark.parametrize("down", [False, True])
def test_change_script_restarts_behind_the_health_gate_and_reverts(tmp_path, manager, restart, down):
    import subprocess

    root = tmp_path / "srv"
    (root / "shared").mkdir(parents=True)
    (root / "shared/env").write_text('X="old"\n')
    s = settings.build({"base_dir": str(root), "health_timeout": 1, "process_manager": manager})
    calls = tmp_path / "calls"
    calls.write_text("")
    env = f"export CALLS={calls}\n" + (f"export DOWN=1\n" if down else "")
    result = subprocess.run(["bash", "-c", env + ENV_STUBS + envfile.change_script(s, Holder("me", "t"))],
                            input="{}", capture_output=True, text=True, timeout=30)
    done = calls.read_text().splitlines()
    assert not (root / ".kit/lock").exists() and not (root / ".kit/env.prev").exists()
    if not down:
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1].startswith("applied: flasksample restarted")
        assert done.count(restart) == 1
        assert (root / "shared/env").read_text() == 'X="new"\n'
    else:
        assert result.returncode == 4
        assert result.stdout.splitlines()[-1] == ("::error the app failed its health check with the new "
                                                  "environment; the previous one is back — see fab logs")
        assert done.count(restart) == 2
        assert (root / "shared/env").read_text() == 'X="old"\n'


def test_list_script_prints_no_values():
    text = envfile.list_script(settings.build({}))
    assert " list /srv/flasksample/shared/env flasksample" in text


# -- fab setup's fact about the block: nothing is sent when it shows the block in place ------

KIT_HEADER = envfile.header_lines(settings.Settings())
BEGIN, END = envfile.BLOCK_BEGIN, envfile.BLOCK_END
BLOCK_TEXTS = [
    None, "", "\n".join(KIT_HEADER) + "\n", f"{BEGIN}\nA=\"1\"\n{END}\n", f"{BEGIN}\nA=\"1\"\n{END}\nS=\"x\"\n",
    f"# c\n\n{BEGIN}\nA=\"1\"\nB=\"t\\ab\"\n{END}\nS=\"x\"\n", f"{BEGIN}\nA=\"1\"\n{END}",  # no final newline
    f"{BEGIN}\n{END}\nS=\"x\"\n",  # empty block between markers: edit_env drops the markers
    f"{BEGIN}\nA=\"1\"\r\n{END}\n", f"{BEGIN}\nA=\"1\u2028\"\n{END}\n", f"{BEGIN}\nA=\"1\x85\"\n{END}\n",
    f"S=\"x\"\n{END}\n{BEGIN}\nA=\"1\"\n", f"{BEGIN}\nA=\"1\"\n", "S=\"x\"\n", f"S=\"1\x0c\"\n",
    f"{BEGIN}\nA=\"1\"\n{END}\n{BEGIN}\nA=\"2\"\n{END}\n", "ünïcødé=\"✓\"\n",
]


@pytest.mark.parametrize("env", [{}, {"A": "1"}, {"A": "1", "B": "t\\ab"}, {"A": "2"}])
@pytest.mark.parametrize("text", BLOCK_TEXTS)
def test_block_fact_says_in_place_only_when_edit_env_would_change_nothing(tmp_path, run_bash, text, env):
    s = settings.Settings(base_dir=str(tmp_path / "srv"), env=env)
    path = tmp_path / "srv" / "shared" / "env"
    path.parent.mkdir(parents=True)
    if text is not None:
        path.write_bytes(text.encode())
    probe = envfile.block_probe(s)
    assert probe.arg == str(path)
    from deploy.facts import parse, probe_script
    result = run_bash("set -euo pipefail\nexport LC_ALL=C\n" + probe_script([probe]))
    assert result.returncode == 0, result.stderr
    old = text or ""
    new, _ = envfile.edit_env(old, KIT_HEADER, {}, [], envfile.block_lines(env))
    in_place = envfile.block_in_place(s, parse(result.stdout))
    assert in_place == (new == old), (text, env)


def test_the_block_markers_are_those_of_the_editing_program():
    text, _ = envfile.edit_env("", [], {}, [], ['A="1"'])
    assert text.splitlines() == [envfile.BLOCK_BEGIN, 'A="1"', envfile.BLOCK_END]
