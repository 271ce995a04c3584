# shellcheck shell=bash
# Functions every remote program uses; sent ahead of the program, in the same script.
#
# The Python side (deploy/shell.py `program`) sends, in one round trip:
#   the header (strict mode, a per-run root-only scratch dir $KIT_TMP), the values as
#   NAME=value lines (validated and quoted in Python), this file, the process manager's
#   functions (systemd.sh or supervisor.sh), and the program itself.
# Output protocol (parsed in one place, deploy/protocol.py): lines starting with `::` are for
# fab: `::step NAME EPOCH`, `::error PROBLEM — FIX`, `::previous RELEASE`, `::prepared`, …
# Anything the app prints goes through `app_output`, so it can never look like a marker.

# Exit codes: the same table as deploy/protocol.py's Exit (a unit test checks they agree).
# shellcheck disable=SC2034  # used by the programs sent after this file
readonly EXIT_FAILED=1 EXIT_USAGE=2 EXIT_PREFLIGHT=3 EXIT_UNHEALTHY=4 EXIT_RELEASE_COMMAND=5 EXIT_LOCKED=75 EXIT_GONE=141

# fail CODE PROBLEM FIX: the one-line error fab shows, then stop with CODE.
fail() {
  error_line "$2" "$3"
  exit "$1"
}

# error_line PROBLEM FIX: the error line alone (the last one printed is the one fab shows).
error_line() { printf '::error %s — %s\n' "$1" "$2"; }

# step NAME: a marker that times the steps of a program.
step() { printf '::step %s %s\n' "$1" "$(date +%s.%N)"; }

# mark NAME [VALUE]: a marker carrying a value back to fab (e.g. `::previous R`).
mark() { printf '::%s%s\n' "$1" "${2:+ $2}"; }

# app_output: the app's own lines (logs), indented, so none can pose as a marker.
app_output() { sed 's/^/  > /'; }

# Run every function registered with `at_exit` (last first) when the script ends, however it
# ends; each sees the script's exit status in $KIT_RC. Then the scratch dir goes.
KIT_AT_EXIT=()
at_exit() { KIT_AT_EXIT+=("$1"); }
kit_exit() {
  KIT_RC=$?
  local i
  for ((i = ${#KIT_AT_EXIT[@]} - 1; i >= 0; i--)); do "${KIT_AT_EXIT[i]}" || true; done
  rm -rf "$KIT_TMP"
  exit "$KIT_RC"
}
trap kit_exit EXIT

# is_release NAME: a release id as the kit makes them (deploy/package.py), nothing else; a
# name read back from the host or given with --to must pass this before any use.
is_release() { [[ $1 =~ ^[0-9]{8}-[0-9]{6}\.[0-9]{3}-[0-9a-f]{7,40}$ ]]; }

# link_release LINK: the release LINK points to ('' when it points to none).
link_release() {
  local r
  r=$(readlink "$1" 2>/dev/null) || true
  r=${r%/}
  if is_release "${r##*/}"; then echo "${r##*/}"; fi
}

# current_release: the release `current` points to ('' when there is none).
current_release() { link_release "$CURRENT"; }

# previous_release: the release that was live before the last switch ('' when none).
previous_release() {
  local r
  r=$(link_release "$PREVIOUS")
  if [ -n "$r" ] && [ -d "$RELEASES/$r" ]; then echo "$r"; fi
}

# sorted_releases: the release names, oldest first (half-unpacked ones left out).
sorted_releases() {
  local d
  for d in "$RELEASES"/*; do
    d=${d##*/}
    if is_release "$d"; then echo "$d"; fi
  done | sort
}

# point LINK RELEASE: repoint a symlink by renaming a new one over it (never a moment without).
point() {
  ln -sfn "releases/$2" "$1.kit-new"
  mv -T "$1.kit-new" "$1"
}

# utc_now VAR: the time now, e.g. 2026-11-27T06:34:15Z, into VAR (bash's own clock: no date).
utc_now() { TZ=UTC printf -v "$1" '%(%Y-%m-%dT%H:%M:%SZ)T' -1; }

# audit WHAT: one line in the host's audit log (deploy/audit.py: `fab audit`): when, who
# ($AUDIT_WHO), what; nothing on a host without the kit's directory.
audit() {
  local now
  if [ -d "$KIT_DIR" ]; then
    utc_now now
    (umask 077 && printf '%s\t%s\t%s\n' "$now" "$AUDIT_WHO" "$1" >> "$AUDIT_LOG")
  fi
}

# -- the deploy lock: a directory made atomically, naming its holder; freed only by it ------
# $LOCK holds `holder` (who, for people), `since` and `token` (random per fab run, compared
# exactly before the lock is freed, so a deploy whose lock was broken never frees the next one's).

# A lock is stale when nothing that could still finish its deploy is left: the host rebooted
# since it was taken, or the fab connection that took it (its sshd process) and every kit
# program that worked under it have ended. Processes are named "PID STARTTIME", so a reused
# pid never passes for the one that held the lock. A lock without these records (taken by an
# older kit, or not over SSH) is never judged stale: only --force breaks it.
# proc_stat PID: the fields of /proc/PID/stat after its name, in proc_fields (state first);
# fails when there is no such process.
proc_stat() {
  local line
  read -r line 2> /dev/null < "/proc/$1/stat" || return 1
  read -ra proc_fields <<< "${line##*) }"
}
proc_id() {
  if proc_stat "$1" && [ -n "${proc_fields[19]:-}" ]; then echo "$1 ${proc_fields[19]}"; fi
}
proc_alive() { [ -n "$1" ] && [ "$(proc_id "${1%% *}")" = "$1" ]; }
# session_id: the sshd process serving this program's connection (its first sshd ancestor).
session_id() {
  local p=$$ comm
  while [ "$p" -gt 1 ]; do
    read -r comm 2> /dev/null < "/proc/$p/comm" || return 0
    case $comm in sshd*) proc_id "$p"; return 0 ;; esac
    proc_stat "$p" || return 0
    p=${proc_fields[1]}
  done
}
boot_id() {
  local id
  read -r id < /proc/sys/kernel/random/boot_id && echo "$id"
}
lock_worker() { proc_id "$$" >> "$LOCK/workers"; } # this program works under the lock
lock_stale() { # prints why the lock is stale; fails when it may still be in use
  local id
  [ -s "$LOCK/boot" ] && [ -s "$LOCK/session" ] && [ -s "$LOCK/workers" ] || return 1
  if [ "$(cat "$LOCK/boot")" != "$(boot_id)" ]; then
    echo "the host rebooted since"
    return 0
  fi
  proc_alive "$(cat "$LOCK/session")" && return 1
  while read -r id; do proc_alive "$id" && return 1; done < "$LOCK/workers"
  echo "the fab run that took it and its programs on this host are gone"
}
# lock_break_stale: free a stale lock, removing the release its dead deploy never switched to.
lock_break_stale() {
  local why r
  why=$(lock_stale) || return 0
  r=$(sed -n 's/.*, release \([^ ]*\)$/\1/p' "$LOCK/holder" 2> /dev/null) || true
  echo "broke a stale lock held by $(cat "$LOCK/holder" 2> /dev/null) since $(cat "$LOCK/since" 2> /dev/null): $why"
  if is_release "$r" && [ "$r" != "$(current_release)" ] && [ "$r" != "$(previous_release)" ]; then
    rm -rf "${RELEASES:?}/$r" "$RELEASES/$r.partial"
  fi
  rm -rf "$LOCK"
}

lock_take() { # WHAT: take the lock for $HOLDER/$TOKEN (FORCE=1 breaks an old one first)
  install -d -m 700 "$KIT_DIR"
  if [ -d "$LOCK" ] && [ "${FORCE:-0}" != 1 ]; then lock_break_stale; fi
  if [ "${FORCE:-0}" = 1 ] && [ -d "$LOCK" ]; then
    echo "broke the lock held by $(cat "$LOCK/holder" 2>/dev/null) since $(cat "$LOCK/since" 2>/dev/null)"
    rm -rf "$LOCK"
  fi
  if ! mkdir "$LOCK" 2>/dev/null; then
    fail "$EXIT_LOCKED" "deploy locked by $(cat "$LOCK/holder" 2>/dev/null || echo unknown) since $(cat "$LOCK/since" 2>/dev/null || echo unknown)" \
      "wait for it, or if it died run again with --force"
  fi
  printf '%s\n' "$TOKEN" > "$LOCK/token"
  boot_id > "$LOCK/boot"
  session_id > "$LOCK/session"
  lock_worker
  printf '%s, %s\n' "$HOLDER" "$1" > "$LOCK/holder"
  local now
  utc_now now
  echo "$now" > "$LOCK/since"
}

lock_ours() {
  local t=''
  [ -n "$TOKEN" ] && [ -f "$LOCK/token" ] || return 1
  read -r t < "$LOCK/token" || true
  [ "$t" = "$TOKEN" ]
}

lock_free() { if lock_ours; then rm -rf "$LOCK"; fi; }

lock_status() {
  if [ -d "$LOCK" ]; then
    echo "locked by $(cat "$LOCK/holder" 2>/dev/null || echo unknown) since $(cat "$LOCK/since" 2>/dev/null || echo unknown)"
  else
    echo unlocked
  fi
}

# app_process PID: PID is a running process of the app's user (a pid read from a file that
# user can write is signalled only then: nothing the user could not signal itself).
app_process() {
  local key value _ uid
  [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -gt 1 ] || return 1
  uid=$(id -u "$APP_USER") || return 1
  while read -r key value _; do
    if [ "$key" = Uid: ]; then [ "$value" = "$uid" ]; return; fi
  done 2> /dev/null < "/proc/$1/status"
  return 1
}

# handover MASTER FALLBACK RETIRE: a new gunicorn master beside the old one. USR2 to the master
# (MASTER prints its pid; gunicorn forks and execs a new one on the same socket:
# deploy/kit/handover.py), then wait until MASTER names a new one (the manager changes it only
# once every new worker has imported the app); RETIRE=1: TERM the old one here. A master that
# was itself handed over ignores USR2 until it notices that its parent is gone (at its next
# wake-up, each signal is one, else within 1 s): USR2 is repeated every 0.1 s while no new
# master runs (none was born yet, or the one born died); MASTER (systemctl is no small program)
# is asked every 0.1 s while one does, else every 0.5 s. No master (of the app's user): FALLBACK. Not ready in $HEALTH_TIMEOUT s: the
# new master (if one started) is stopped and the old one serves on.
handover() {
  local master=$1 fallback=$2 retire=$3 old new i=0 deadline
  old=$("$master" 2> /dev/null || true)
  if ! app_process "$old"; then
    "$fallback"
    return
  fi
  deadline=$((${EPOCHREALTIME/[.,]/} + HEALTH_TIMEOUT * 1000000))
  while [ "${EPOCHREALTIME/[.,]/}" -lt "$deadline" ]; do
    new_master_of "$old"
    if [ -z "$kit_born" ] && [ $((i % 2)) -eq 0 ]; then kill -USR2 "$old" 2> /dev/null || break; fi
    if { [ -n "$kit_born" ] && [ $((i % 2)) -eq 1 ]; } || [ $((i % 10)) -eq 9 ]; then
      new=$("$master" 2> /dev/null || true)
      if [ -n "$new" ] && [ "$new" != "$old" ] && [ "$new" != 0 ]; then
        if [ "$retire" = 1 ]; then kill -TERM "$old" 2> /dev/null || true; fi
        return 0
      fi
    fi
    i=$((i + 1))
    nap 0.05
  done
  new_master_of "$old"
  if [ -n "$kit_born" ]; then kill -TERM "$kit_born" || true; fi
  echo "the new gunicorn master was not ready within $HEALTH_TIMEOUT s; the old one still serves"
  return 1
}

# new_master_of MASTER: kit_born= the child MASTER forked and exec'd on USR2 (gunicorn gives it
# GUNICORN_PID=MASTER), '' if none; read from /proc by bash alone (it is asked every 50 ms).
kit_born=''
new_master_of() {
  local kids=() env=() c e
  kit_born=''
  read -r -a kids 2> /dev/null < "/proc/$1/task/$1/children" || true # (no newline at its end)
  for c in "${kids[@]}"; do
    mapfile -d '' -t env 2> /dev/null < "/proc/$c/environ" || continue
    for e in "${env[@]}"; do
      if [ "$e" = "GUNICORN_PID=$1" ]; then kit_born=$c && return 0; fi
    done
  done
}

# nap SECONDS: sleep without starting a program (the kit's waits poll every few ms, on a host
# that is busy with what they wait for): a read that times out on a pipe nobody writes to.
kit_nap_fd=''
nap() {
  if [ -z "$kit_nap_fd" ]; then exec {kit_nap_fd}<> <(:); fi
  read -rt "$1" -u "$kit_nap_fd" _ || true
}

# -- the health gate -------------------------------------------------------------------------

# The health probe of `fab status`: curl printing the answer's headers, then `kit-status CODE`.
# shellcheck disable=SC2034  # used by the programs sent after this file
readonly HEALTH_CURL=(curl -s -m 2 -o /dev/null -D - -w 'kit-status %{http_code}\n')

# healthy WANT: ask the health path through nginx (gate_nginx) until the answer is good and
# carries the header `X-Flasksample-Release: WANT` ('' = any release; the kit's gunicorn config
# adds it, so the app needs no health endpoint), three times in a row. Good: a status from 200
# to below $HEALTH_TOP (300 with a health_path; 500 on / without one, where a redirect or a 404
# is an app that runs). Fails after $HEALTH_TIMEOUT seconds.
healthy() {
  local want=$1 good=0 code got last='' deadline
  deadline=$(($(date +%s%N) / 1000000 + HEALTH_TIMEOUT * 1000))
  while [ $(($(date +%s%N) / 1000000)) -lt "$deadline" ]; do
    while read -r code got; do
      got=${got%$'\r'}
      last="HTTP ${code:-none}, release ${got:-none}"
      if [ "$code" -ge 200 ] 2> /dev/null && [ "$code" -lt "$HEALTH_TOP" ] &&
        { [ -z "$want" ] || [ "$got" = "$want" ]; }; then
        good=$((good + 1))
      else
        good=0
      fi
    done < <(gate_nginx 2> /dev/null || true)
    if [ "$good" -ge 3 ]; then return 0; fi
    nap 0.01
  done
  echo "last health answer: ${last:-HTTP none, release none}"
  return 1
}

# nginx_args: curl's arguments that reach the app through the host's own nginx, as a client
# would (in nginx_curl). With TLS on, port 80 redirects to https://NAME/…: followed to
# 127.0.0.1:443 (-k: our own nginx).
nginx_args() {
  nginx_curl=(-H "Host: $HEALTH_HOST")
  if [ "${HEALTH_TLS:-0}" = 1 ]; then nginx_curl+=(-L -k --resolve "$HEALTH_HOST:443:127.0.0.1"); fi
}

# probe_nginx: one health answer through nginx, headers and `kit-status CODE` (fab status).
probe_nginx() {
  nginx_args
  "${HEALTH_CURL[@]}" "${nginx_curl[@]}" "http://127.0.0.1$HEALTH_PATH"
}

# gate_nginx: three health answers through nginx from one curl, one after the other (each a
# new request nginx hands to any worker), each a line `CODE RELEASE` (the release header).
gate_nginx() {
  local url="http://127.0.0.1$HEALTH_PATH"
  nginx_args
  curl -s -m 2 -w '%{http_code} %header{x-flasksample-release}\n' "${nginx_curl[@]}" \
    -o /dev/null "$url" -o /dev/null "$url" -o /dev/null "$url"
}

# processes_up: every process of processes: keeps running for 2 s after its restart (as
# supervisor's startsecs); else it names the first one down and shows its log.
processes_up() {
  local i p
  if [ ${#PROCESSES[@]} -eq 0 ]; then return 0; fi
  for i in $(seq 20); do
    if ! mgr_processes_running; then
      echo '--- a process of processes: is not running; its log:'
      for p in "${PROCESSES[@]}"; do mgr_process_logs "$p" 10 2>&1 | tail -n 10 | app_output; done
      return 1
    fi
    sleep 0.1
  done
}

# gated CHANGE UNDO WANT: change → health gate (nginx answers as release WANT, '' = any, and
# every process of processes: runs) → undo if it fails (returns 1). A failing CHANGE does not
# stop here: the gate, not the manager's exit code, decides.
gated() {
  "$1" || echo "warning: $MANAGER reported an error; the health check decides"
  if healthy "$3" && processes_up; then return 0; fi
  "$2" || true
  return 1
}

# -- a master's children, replaced ------------------------------------------------------------

# retire_children PARENT SECONDS DONE COMMAND...: run COMMAND, which tells PARENT (a pid; none:
# nothing to wait for) to replace its children (a reload), then wait until DONE (a function,
# given a pid) says each child PARENT had before is done with, every 10 ms. Returns COMMAND's
# status when it fails, 124 when some old child is not done after SECONDS, else 0.
# gunicorn's workers: `reload_retiring_old_workers`; nginx's: `nginx_reload`.
retire_children() {
  local parent=$1 seconds=$2 done=$3 old=() left p deadline
  shift 3
  if [ "${parent:-0}" -gt 1 ] 2> /dev/null; then mapfile -t old < <(pgrep -P "$parent" || true); fi
  "$@" || return
  deadline=$((${EPOCHREALTIME/[.,]/} + seconds * 1000000))
  while :; do
    left=()
    for p in "${old[@]}"; do
      if ! "$done" "$p"; then left+=("$p"); fi
    done
    old=("${left[@]}")
    if [ ${#old[@]} -eq 0 ]; then return 0; fi
    if [ "${EPOCHREALTIME/[.,]/}" -ge "$deadline" ]; then return 124; fi
    nap 0.01
  done
}

# Tests for DONE, given a child's pid. exited: gone, or a zombie its parent has not reaped yet.
exited() { ! proc_stat "$1" || [ "${proc_fields[0]}" = Z ]; }
# gunicorn_retired: exited, or named so by the kit's worker_exit hook (deploy/kit/handover.py
# RETIRED): it answered its last request and only Python's own teardown is left. (The kit's
# preflight zygote is no child of the master: deploy/kit/zygote.py forks twice.)
gunicorn_retired() {
  local comm=''
  if exited "$1"; then return 0; fi
  read -r comm 2> /dev/null < "/proc/$1/comm" || return 0
  [ "$comm" = kit-retired ]
}
# nginx_closing: exited, or the title nginx gives a worker that closed its listening sockets
# (it finishes the requests it has, but takes no new ones).
nginx_closing() {
  local title=''
  if exited "$1"; then return 0; fi
  IFS= read -r -d '' title 2> /dev/null < "/proc/$1/cmdline" || true
  [ -z "$title" ] || [[ $title == *'shutting down'* ]]
}

# nginx_reload PIDFILE SECONDS DONE: reload nginx's configuration (start nginx when it is not
# running), then wait, at most SECONDS, until DONE says each worker nginx had before is done
# with: nginx_closing (the new configuration serves; setup) or exited (the requests they had in
# flight finished too; the balancer). PIDFILE: nginx's. retire_children's status.
nginx_reload() {
  local master=''
  if ! systemctl is-active -q nginx; then
    systemctl start nginx
    return
  fi
  if [ -s "$1" ]; then read -r master < "$1" || true; fi
  retire_children "$master" "$2" "$3" systemctl reload nginx
}

# reload_retiring_old_workers: HUP the master, then wait (at most HEALTH_TIMEOUT s) until the
# workers it had before answer no more. The kit's on_reload hook keeps them serving until every
# new worker has imported the app, so without this wait the gate could count three answers
# from new workers while an old one still takes requests with the release it had.
reload_retiring_old_workers() {
  local rc=0
  retire_children "$(mgr_main_pid 2> /dev/null || true)" "$HEALTH_TIMEOUT" gunicorn_retired mgr_reload || rc=$?
  if [ "$rc" = 124 ]; then echo "warning: workers of the release before still run after $HEALTH_TIMEOUT s" && rc=0; fi
  return "$rc"
}

# -- plain log files (nginx's; supervisor's programs) ----------------------------------------

# log_files LINES SINCE FOLLOW FILE...: the last LINES lines of the FILEs; with SINCE (a time
# the server's `date -d` reads, e.g. '10 min ago') only those from then on; FOLLOW=follow keeps
# printing. The filter reads the stamps these files carry, in the server's local time:
#   10.0.0.9 - - [27/Nov/2026:03:45:00 +0000] "GET / …"      nginx access log
#   2026/11/27 03:45:00 [error] 123#123: …                    nginx error log
#   [2026-11-27 03:45:00 +0000] [42] [INFO] Booting worker    gunicorn
# A line without a stamp (a traceback's) goes with the line before it.
log_files() {
  local lines=$1 since=$2 follow=$3 from f
  shift 3
  if [ -z "$since" ]; then
    if [ "$follow" = follow ]; then tail -n "$lines" -F "$@"; else tail -n "$lines" "$@"; fi
    return
  fi
  from=$(date -d "$since" '+%Y %m %d %H %M %S') ||
    fail "$EXIT_USAGE" "--since $since is not a date the server understands" "write e.g. 10 min ago"
  for f in "$@"; do  # the last LINES of each file, as tail does without SINCE
    if [ -r "$f" ]; then awk -v since="$from" "$LOG_SINCE_AWK" "$f" | tail -n "$lines"; fi
  done
  if [ "$follow" = follow ]; then tail -n 0 -F "$@"; fi
}

# The filter: a stamp's seconds since 1970 by the days-from-civil formula (POSIX awk: mawk
# does as well as gawk); `keep` carries over to the unstamped lines after it.
# shellcheck disable=SC2016  # awk's $0, not the shell's
readonly LOG_SINCE_AWK='
function ep(y, mo, d, h, mi, se,   yy, era, yoe, doy, doe) {
  y += 0; mo += 0; d += 0; h += 0; mi += 0; se += 0  # substr() gives strings
  yy = y - (mo <= 2); era = int(yy / 400); yoe = yy - era * 400
  doy = int((153 * (mo > 2 ? mo - 3 : mo + 9) + 2) / 5) + d - 1
  doe = yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy
  return ((era * 146097 + doe - 719468) * 86400) + h * 3600 + mi * 60 + se
}
BEGIN {
  split("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec", names, " ")
  for (i = 1; i <= 12; i++) mon[names[i]] = i
  split(since, t, " "); from = ep(t[1], t[2], t[3], t[4], t[5], t[6]); keep = 0
}
{
  if (match($0, /[0-9][0-9]\/[A-Z][a-z][a-z]\/[0-9][0-9][0-9][0-9]:[0-9][0-9]:[0-9][0-9]:[0-9][0-9]/)) {
    s = substr($0, RSTART, RLENGTH)
    keep = ep(substr(s, 8, 4), mon[substr(s, 4, 3)], substr(s, 1, 2), substr(s, 13, 2), substr(s, 16, 2), substr(s, 19, 2)) >= from
  } else if (match($0, /[0-9][0-9][0-9][0-9][-\/][0-9][0-9][-\/][0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]/)) {
    s = substr($0, RSTART, RLENGTH)
    keep = ep(substr(s, 1, 4), substr(s, 6, 2), substr(s, 9, 2), substr(s, 12, 2), substr(s, 15, 2), substr(s, 18, 2)) >= from
  }
  if (keep) print
}'
