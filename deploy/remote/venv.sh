# shellcheck shell=bash
# The one venv builder, sent ahead of the programs that build venvs: prepare (a deploy's venv
# step) and fab setup (a bare host's first venv, in the background while apt installs).
# Values: APP_USER PYTHON VENVS.
#
# Built by the app user (pip and any build backend never run as root), then made root's, so
# the app cannot change the code it runs. Only a venv with `.complete` is ever used; builders
# of one app take turns (flock on $VENVS), so a deploy waits for setup's build of the same
# venv and then reuses it, and no two write one directory. A failed build leaves no venv.
# The venv gets no pip of its own: ensurepip installs and byte-compiles all of pip into every
# venv, most of a first build's time. When the venv's python is the system's python3, pip is
# Debian's own wheel (what ensurepip would copy in), run by the app user under the venv's
# python: from the wheel file itself the first time, while root unpacks and byte-compiles it
# into $VENVS/.pip-VERSION (root's; root unzips and compiles it, never runs it), which later
# builds run. Any other python gets its own pip through ensurepip.
system_python=/usr/bin/python3
pip_wheels=/usr/share/python-wheels
# system_pip: sets pip to the system pip to run with the venv's python (empty: none), and
# starts unpacking it in the background when that is not done yet.
system_pip() {
  local whl dir
  pip=
  [ "$(readlink -f "$(command -v "$PYTHON")")" = "$(readlink -f "$system_python")" ] || return 0
  whl=$(find "$pip_wheels" -maxdepth 1 -name 'pip-*.whl' 2> /dev/null | sort -V | tail -n 1)
  [ -n "$whl" ] || return 0
  dir=$VENVS/.$(basename "$whl" .whl)
  if [ -e "$dir/.complete" ]; then
    pip=$dir/pip
    return 0
  fi
  pip=$whl/pip
  {
    find "$VENVS" -maxdepth 1 -name '.pip-*' -exec rm -rf {} + &&
      "$system_python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
        "$whl" "$dir.partial" &&
      "$system_python" -m compileall -q "$dir.partial" &&
      touch "$dir.partial/.complete" && mv -T "$dir.partial" "$dir"
  } > /dev/null 2>&1 &
}
# build_venv VENV REQUIREMENTS: python -m venv and pip install, as the app user.
build_venv() {
  local pip rc=0
  runuser -u "$APP_USER" -- "$PYTHON" -m venv "$1" --without-pip || return 1
  system_pip
  if [ -z "$pip" ]; then
    runuser -u "$APP_USER" -- "$1/bin/python" -m ensurepip --default-pip || return 1
    pip=$1/bin/pip
  fi
  runuser -u "$APP_USER" -- "$1/bin/python" "$pip" install -q --disable-pip-version-check --no-input \
    -r "$2" || rc=1
  wait # the system pip's unpacking, if it ran: only an optimisation for the next build
  return "$rc"
}
# venv_ensure VENV REQUIREMENTS LOG: the venv VENV with REQUIREMENTS (a file the app user can
# read) installed, built unless complete; pip's output goes to LOG. Fails leaving no VENV.
venv_ensure() {
  [ ! -e "$1/.complete" ] || return 0
  (
    exec 9< "$VENVS"
    if ! flock -n 9; then
      echo "waiting for the build of venv ${1##*/} another run started"
      flock 9
    fi
    [ ! -e "$1/.complete" ] || exit 0
    echo "building venv ${1##*/} (requirements changed)"
    {
      rm -rf "$1" && mkdir -m 755 "$1" && chown -h "$APP_USER:$APP_USER" "$1" &&
        (cd / && export PIP_NO_CACHE_DIR=1 && build_venv "$1" "$2") > "$3" 2>&1 &&
        chown -R -P -h root:root "$1" && touch "$1/.complete"
    } || {
      rm -rf "$1"
      false
    }
  )
}
