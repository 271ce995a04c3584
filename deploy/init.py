"""`flasksample init`: a commented fabric.yaml and a one-line fabfile.py for the user's app.

What can be read from the files is filled in (WSGI entry, requirements source, static folder,
a name); everything else is left at the kit's defaults, shown commented out. Existing files are
never overwritten.
"""
from __future__ import annotations

from pathlib import Path

from deploy import detect
from deploy.errors import KitError

FABFILE = "from deploy.fabfile import ns  # the flasksample kit's tasks: `fab --list`\n"

CONFIG = """\
# flasksample: how this app is deployed (`flasksample settings -H HOST` shows the effective
# values per host and where each comes from). Relative paths start from this file's directory.
flasksample:
  app_name: {name}             # service, user and /srv/<app_name> on the server
  app_dir: .                   # what is shipped: the committed tree of this directory
  wsgi: {wsgi}{wsgi_note}
  requirements: "{requirements}"{requirements_note}
  static_dir: {static}             # served by nginx at static_url ({static_note})
  # static_url: /static/
  # domains: [example.org]     # nginx server_name; '_' answers any name
  # health_path: /healthz      # optional: an app URL that must answer 2xx after a switch;
  #                            # without it the kit checks that / answers from the new release
  # release_command: flask --app {module} db upgrade   # once per deploy, before the switch
  # processes:                 # background processes, supervised as {name}-<name>
  #   worker: flask --app {module} worker
  # shared_dirs: [instance]    # kept across releases, writable by the app (SQLite, uploads)
  # env: {{LOG_LEVEL: info}}     # non-secret environment; secrets: flasksample env.set NAME
  # process_manager: systemd   # or supervisor
  # workers: 0                 # gunicorn workers; 0 = 2 x cores + 1
  # hosts:
  #   web1.example.org: {{workers: 4}}
"""


def render(app_dir: Path) -> str:
    wsgi = detect.wsgi_entry(app_dir)
    module = wsgi.split(":")[0] if wsgi else "app"
    requirements = detect.requirements_source(app_dir)
    if requirements == "pyproject.toml":
        lock = next((n for n in ("uv.lock", "pylock.toml") if (app_dir / n).is_file()), None)
        requirements_note = (f"   # pyproject.toml + {lock}: exported to a pinned list at deploy"
                             if lock else "   # pyproject.toml needs a lock: run `uv lock`, commit uv.lock")
    else:
        requirements_note = "   # pinned list; gunicorn is added if missing"
    static = detect.static_folder(app_dir, module)
    return align(CONFIG.format(
        name=detect.project_name(app_dir), module=module,
        wsgi=wsgi or "app:app",
        wsgi_note="            # detected" if wsgi else
        "            # NOT detected: set module:attr or module:factory()",
        requirements=requirements if requirements == "pyproject.toml" else "requirements.txt",
        requirements_note=requirements_note,
        static=static,
        static_note="detected" if (app_dir / static).is_dir() else "none found; Flask's default",
    ))


def align(text: str, column: int = 31) -> str:
    """Line up the comments after values (`  key: value   # note`) at one column."""
    out = []
    for line in text.splitlines():
        value, sep, note = line.partition(" # ")
        if sep and value.strip() and not value.lstrip().startswith("#"):
            line = f"{value.rstrip():<{column - 1}} # {note.strip()}"
        out.append(line)
    return "\n".join(out) + "\n"


def init(app_dir: Path) -> list[str]:
    """Write fabric.yaml and fabfile.py in app_dir; returns what was written."""
    app_dir = app_dir.resolve()
    targets = {app_dir / "fabric.yaml": render(app_dir), app_dir / "fabfile.py": FABFILE}
    existing = [p.name for p in targets if p.exists()]
    if existing:
        raise KitError(f"{' and '.join(existing)} already exist in {app_dir}",
                       "edit them, or move them away and run `flasksample init` again")
    for path, text in targets.items():
        path.write_text(text)
    return [str(p) for p in targets]
