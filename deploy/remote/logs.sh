# shellcheck shell=bash
# logs: the app's log (LINES lines, since SINCE when given, FOLLOW=1 to keep printing), the
# log of one of its processes: (PROCESS, a unit/program name), or nginx's access and error
# logs for the app (WEB=1). Values: LINES SINCE FOLLOW WEB PROCESS NGINX_LOGS, common.
if [ "$WEB" = 1 ]; then
  if [ -n "$SINCE" ]; then
    fail "$EXIT_USAGE" "--since works for the app's journal, not for nginx's log files" "leave out --since with -w"
  fi
  args=(-n "$LINES")
  if [ "$FOLLOW" = 1 ]; then args+=(-F); fi
  tail "${args[@]}" "$NGINX_LOGS/$APP.access.log" "$NGINX_LOGS/$APP.error.log"
else
  mgr_process_logs "${PROCESS:-$APP}" "$LINES" "$SINCE" "$([ "$FOLLOW" = 1 ] && echo follow)"
fi
