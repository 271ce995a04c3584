# shellcheck shell=bash
# prepare: lock, unpack the release (archive base64 on stdin), reuse or build its venv, load it
# as the app runs and check its health in-process (the preflight). Nothing takes traffic yet.
# Values (and venv.sh's): RELEASE REL (its dir) VENV REQ_HASH REQUIREMENTS (the pinned list) PYTHON SHARED_DIRS
# STATIC_DIR RELEASE_COMMAND(_RUN) and the
# common ones (deploy/shell.py `common_values`). On any failure once the lock is ours the
# release is removed and the lock freed, so the next deploy just works; a client that
# vanishes (Ctrl-C, kill, a closed connection) makes the next output line fail with SIGPIPE,
# which is such a failure too.

# Read all of stdin first, whatever happens next (a refused lock must not leave the client
# writing into a closed channel). The archive goes to the target filesystem (root-only .kit),
# not to /run, which is small.
drop_archive() { rm -f "${archive:-}"; }
if [ -d "$RELEASES" ]; then
  install -d -m 700 "$KIT_DIR"
  archive=$(mktemp "$KIT_DIR/upload.XXXXXX")
  at_exit drop_archive
  base64 -d > "$archive"
else
  cat > /dev/null
fi
if [ ! -d "$RELEASES" ] || [ ! -e "$SETUP_CONFIG" ]; then
  fail "$EXIT_USAGE" "this host is not set up for $APP under $MANAGER ($SETUP_CONFIG is missing)" \
    "run fab setup first"
fi

step lock
lock_take "release $RELEASE"
undo_prepare() {
  if [ "$KIT_RC" -ne 0 ]; then
    preflight_stop
    rm -rf "$REL" "$REL.partial"
    lock_free
    no_space_left "$RELEASES" || no_space_left "$VENVS" || true
  fi
}
# no_space_left DIR: name a full disk as the cause (the tools' own messages rarely do).
no_space_left() {
  local avail
  avail=$(df -Pk "$1" 2> /dev/null | awk 'NR == 2 { print $4 }')
  if [ -n "$avail" ] && [ "$avail" -lt 10240 ]; then
    error_line "no space left on device in $1" "free space there (or lower keep_releases) and deploy again"
    return 0
  fi
  return 1
}
at_exit undo_prepare
trap 'exit "$EXIT_GONE"' PIPE

step unpack
rm -rf "$REL.partial"
mkdir -p "$REL.partial"
tar -xzf "$archive" -C "$REL.partial" --no-same-owner
drop_archive
echo "$RELEASE" > "$REL.partial/REVISION"
# Each shared_dirs entry: shared/<path>, made app-writable once. Its parents are root's (the
# settings refuse nested entries), so no app-made symlink is ever followed here.
for path in "${SHARED_DIRS[@]}"; do
  mkdir -p "$(dirname "$SHARED/$path")"
  if [ ! -d "$SHARED/$path" ] || [ -L "$SHARED/$path" ]; then
    rm -f "$SHARED/$path"
    mkdir -m 750 "$SHARED/$path"
    chown -h "$APP_USER:$APP_USER" "$SHARED/$path"
  fi
  rm -rf "${REL:?}.partial/$path"
  mkdir -p "$(dirname "$REL.partial/$path")"
  ln -s "$SHARED/$path" "$REL.partial/$path"
done
# Root's and readable by the app's group only: a secret a release carries is no other local
# user's (X2). nginx (other) only walks down to static_dir and reads what is in it.
chown -R root:"$APP_USER" "$REL.partial"
chmod -R u=rwX,g=rX,o= "$REL.partial"
chmod o+x "$REL.partial"
if [ -n "$STATIC_DIR" ] && [ -d "$REL.partial/$STATIC_DIR" ]; then
  d=$REL.partial
  IFS=/ read -ra parts <<< "$STATIC_DIR"
  for p in "${parts[@]}"; do
    d=$d/$p
    chmod o+x "$d"
  done
  chmod -R o+rX "$REL.partial/$STATIC_DIR"
fi
mv -T "$REL.partial" "$REL"

step venv
# deploy/remote/venv.sh: reused when complete (setup may have built it), else built now
if ! venv_ensure "$VENV" "$REQUIREMENTS" "$KIT_TMP/pip.log"; then
  tail -n 5 "$KIT_TMP/pip.log" | app_output
  fail "$EXIT_FAILED" "pip install of the pinned requirements failed (its log is above)" \
    "correct the app's requirements and deploy again"
fi
ln -sfn "../../venvs/$REQ_HASH" "$REL/.venv"

# release_command: once per deploy (the first host), before the preflight, as the app under the
# service's sandbox (deploy/appcmd.py builds RELEASE_COMMAND_RUN); failure switches nothing.
if [ "${#RELEASE_COMMAND_RUN[@]}" -gt 0 ]; then
  step release_command
  echo "--- release_command: $RELEASE_COMMAND"
  if [ "$MANAGER" = systemd ]; then systemctl reset-failed "$APP-release-command.service" 2> /dev/null || true; fi
  if ! (cd / && "${RELEASE_COMMAND_RUN[@]}") 2>&1 | app_output; then
    fail "$EXIT_RELEASE_COMMAND" "the release_command failed (its output is above); nothing was switched, the previous release still serves" \
      "fix it and deploy again"
  fi
fi

step preflight
# The new release, loaded as a gunicorn worker loads it, answers its health path in-process
# (deploy/kit/preflight.py), as the app runs: warm, forked by the running service's zygote
# (deploy/kit/zygote.py) when the release runs the service's venv and env file, else cold, in a
# process of its own (the manager's preflight_run). The zygote answers 200 good, 422 bad (with
# the preflight's output), 503 no verdict (why).
preflight_how=cold preflight_why="the service runs no zygote" preflight_rc=0
if [ -S "$PREFLIGHT_ZYGOTE" ]; then
  preflight_code=$(printf '%s\0' "$PREFLIGHT_LIMIT" "${PREFLIGHT_ARGV[@]:1}" |
    curl -s -m $((PREFLIGHT_LIMIT + 5)) -H 'Expect:' --unix-socket "$PREFLIGHT_ZYGOTE" --data-binary @- \
      -o "$KIT_TMP/preflight.log" -w '%{http_code}' http://zygote/preflight/1) || preflight_code=000
  case $preflight_code in
    200) preflight_how=warm ;;
    422) preflight_how=warm preflight_rc=1 ;;
    503) preflight_why=$(head -n 1 "$KIT_TMP/preflight.log" | cut -c 1-200 | tr -cd '[:print:]') ;;
    *) preflight_why="the zygote gave no answer (HTTP $preflight_code)" ;;
  esac
fi
if [ "$preflight_how" = warm ]; then
  echo "preflight: warm (forked by the running service's zygote)"
else
  echo "preflight: cold ($preflight_why)"
  preflight_rc=0
  preflight_run || preflight_rc=$?
fi
if [ "$preflight_rc" != 0 ]; then
  echo '--- the new release failed its health check before taking traffic; its log:'
  { grep -v '^\[.*\] \[INFO\]' "$KIT_TMP/preflight.log" || true; } | tail -n 15 | app_output
  fail "$EXIT_PREFLIGHT" "the new release failed its health check before taking traffic; nothing was switched, the previous release still serves" \
    "correct the app (its log is above) and deploy again"
fi
mark prepared # a vanished client makes this write fail: the release is undone
