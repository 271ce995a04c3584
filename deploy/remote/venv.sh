# shellcheck shell=bash
# The one venv builder, sent ahead of the programs that build venvs: prepare (a deploy's venv
# step) and fab setup (a bare host's first venv, in the background while apt installs).
# Values: APP_USER PYTHON VENVS CURRENT.
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
#
# A requirements change starts from a copy of the live venv ($CURRENT/.venv: root's, so the app
# never wrote it) when the new list pins every package (name==version, no options): what it
# does not list is uninstalled (transitive dependencies too: pip puts back what is needed, at
# the versions a fresh build gets), and pip downloads, installs and byte-compiles only what
# changed. No pip cache is kept: the app user writes it, so a compromised app could plant code
# in its next release.
system_python=/usr/bin/python3
pip_wheels=/usr/share/python-wheels
apt_archives=/var/cache/apt/archives
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
# pip_wheel_wait PID: until Debian's pip wheel is here, while PID (setup's script, whose one apt
# run installs it with nginx) runs. apt downloads (and checks) every package before dpkg unpacks
# any, so the wheel is taken from python3-pip-whl's .deb as soon as that is downloaded; else
# from where dpkg puts it (renamed into place whole, so complete when seen).
pip_wheel_wait() {
  local deb dir=$VENVS/.deb-pip
  until compgen -G "$pip_wheels/pip-*.whl" > /dev/null; do
    deb=$(compgen -G "$apt_archives/python3-pip-whl_*.deb" | sort -V | tail -n 1) || true
    if [ -n "$deb" ]; then
      rm -rf "$dir" "$dir.partial" && mkdir -m 755 "$dir.partial" &&
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir.partial" --no-same-owner --strip-components=4 \
          --wildcards './usr/share/python-wheels/pip-*.whl' &&
        compgen -G "$dir.partial/pip-*.whl" > /dev/null && mv -T "$dir.partial" "$dir" &&
        pip_wheels=$dir && return 0
    fi
    if ! kill -0 "$1" 2> /dev/null; then
      echo "the pip wheel ($pip_wheels/pip-*.whl) did not arrive: setup ended first"
      return 1
    fi
    sleep 0.1
  done
}
# canonical NAME: a distribution name as pip compares them (PEP 503).
canonical() {
  local n=${1,,}
  n=${n//[._]/-}
  while [[ $n == *--* ]]; do n=${n//--/-}; done
  echo "$n"
}
# pins FILE: each requirement of FILE as `name==version` (the name canonical), followed by ` [`
# when it has extras and ` ;` when it has a marker; fails unless every line is a comment or such
# a pin: no options, URLs, ranges or continuations.
pins() {
  local line pin re='^[[:space:]]*([A-Za-z0-9][A-Za-z0-9._-]*)[[:space:]]*(\[[A-Za-z0-9,._ -]*\])?[[:space:]]*==[[:space:]]*([A-Za-z0-9.+!_-]+)[[:space:]]*(;[^\\]*)?$'
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}
    [[ $line =~ ^[[:space:]]*$ ]] && continue
    [[ $line =~ $re ]] || return 1
    pin="$(canonical "${BASH_REMATCH[1]}")==${BASH_REMATCH[3]}"
    [ -z "${BASH_REMATCH[2]}" ] || pin+=" ["
    [ -z "${BASH_REMATCH[4]}" ] || pin+=" ;"
    echo "$pin"
  done < "$1"
}
# installed VENV: `name==version` of each distribution installed in VENV; fails on a legacy
# (egg-info) install, whose name this cannot read reliably.
installed() {
  local d n
  for d in "$1"/lib/python3*/site-packages/*.egg-info; do
    [ ! -e "$d" ] || return 1
  done
  for d in "$1"/lib/python3*/site-packages/*.dist-info; do
    [ -e "$d" ] || continue
    n=${d##*/}
    n=${n%.dist-info}
    echo "$(canonical "${n%%-*}")==${n#*-}"
  done
}
# seed_of VENV REQUIREMENTS: the venv to start VENV from (the live one) when that is sound (the
# same python, the system pip, REQUIREMENTS all pinned); fails otherwise.
seed_of() {
  local seed lib
  [ -n "$pip" ] && [ -L "$CURRENT/.venv" ] || return 1
  seed=$VENVS/$(basename "$(readlink "$CURRENT/.venv")")
  [ "$seed" != "$1" ] && [ -e "$seed/.complete" ] || return 1
  [ "$(readlink -f "$seed/bin/python")" = "$(readlink -f "$(command -v "$PYTHON")")" ] || return 1
  lib=$("$PYTHON" -c 'import sys; print("python%d.%d" % sys.version_info[:2])') || return 1
  [ "$(echo "$seed"/lib/python3*)" = "$seed/lib/$lib" ] || return 1
  pins "$2" > /dev/null && installed "$seed" > /dev/null || return 1
  echo "$seed"
}
# seeded_build VENV REQUIREMENTS SEED: VENV as a copy of SEED (its dot files, .complete among
# them, left out) with its own path in its scripts, less what REQUIREMENTS does not name (a
# package whose line has a marker is reinstalled if the marker holds); then pip installs
# REQUIREMENTS, unless they are plain pins of exactly what the seed holds (a comment changed):
# the seed's pip checked those. (A dropped package may still be another's dependency: pip puts
# it back.)
seeded_build() {
  local want gone
  want=$(pins "$2" | sort -u) || return 1
  gone=$(comm -23 <(installed "$3" | sed 's/==.*//' | sort -u) <(grep -v ' ;$' <<< "$want" | sed 's/==.*//' | sort -u))
  runuser -u "$APP_USER" -- cp -RP --preserve=mode,timestamps "$3"/* "$1"/ || return 1
  runuser -u "$APP_USER" -- grep -rlIZF --exclude-dir=__pycache__ -e "$3" "$1" |
    runuser -u "$APP_USER" -- xargs -0 -r sed -i "s#${3//./\\.}#$1#g" || return 1
  if [ -n "$gone" ]; then
    # shellcheck disable=SC2086 # one name a word
    runuser -u "$APP_USER" -- "$1/bin/python" "$pip" uninstall -q -y --disable-pip-version-check $gone || return 1
  fi
  if [ -z "$gone" ] && [ "$want" = "$(installed "$1" | sort -u)" ]; then
    echo "the venv it starts from holds exactly these pins: nothing to install"
    return 0
  fi
  pip_install "$1" "$2"
}
pip_install() {
  runuser -u "$APP_USER" -- "$1/bin/python" "$pip" install -q --disable-pip-version-check --no-input -r "$2"
}
# build_venv VENV REQUIREMENTS [SEED]: python -m venv (or a copy of SEED) and pip install, as
# the app user.
build_venv() {
  if [ -n "${3:-}" ]; then
    seeded_build "$1" "$2" "$3" && return 0
    echo "that failed: building venv ${1##*/} from nothing"
    find "$1" -mindepth 1 -delete || return 1
  fi
  runuser -u "$APP_USER" -- "$PYTHON" -m venv "$1" --without-pip || return 1
  if [ -z "$pip" ]; then
    runuser -u "$APP_USER" -- "$1/bin/python" -m ensurepip --default-pip || return 1
    pip=$1/bin/pip
  fi
  pip_install "$1" "$2"
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
    local pip seed rc=0
    system_pip
    seed=$(seed_of "$1" "$2") || seed=
    echo "building venv ${1##*/} (requirements changed${seed:+; starting from venv ${seed##*/}})"
    rm -rf "$1" && mkdir -m 755 "$1" && chown -h "$APP_USER:$APP_USER" "$1" &&
      (cd / && export PIP_NO_CACHE_DIR=1 && build_venv "$1" "$2" "$seed") > "$3" 2>&1 &&
      chown -R -P -h root:root "$1" && touch "$1/.complete" || rc=1
    wait # the system pip's unpacking, if it ran: only an optimisation for the next build
    [ "$rc" = 0 ] || rm -rf "$1"
    exit "$rc"
  )
}
