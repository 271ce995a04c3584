# shellcheck shell=bash
# logs: the app's log (LINES lines, since SINCE when given, FOLLOW=1 to keep printing), the
# log of one of its processes: (PROCESS, a unit/program name), or nginx's access and error
# logs for the app (WEB=1). Values: LINES SINCE FOLLOW WEB PROCESS NGINX_LOGS (the two
# files), common.
mode=
if [ "$FOLLOW" = 1 ]; then mode=follow; fi
if [ "$WEB" = 1 ]; then
  log_files "$LINES" "$SINCE" "$mode" "${NGINX_LOGS[@]}"
else
  mgr_process_logs "${PROCESS:-$APP}" "$LINES" "$SINCE" "$mode"
fi
