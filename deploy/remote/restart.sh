# shellcheck shell=bash
# restart: restart the app's gunicorn without dropping a request, under the deploy lock (so it
# never races a deploy's health gate), and wait until it is healthy. Values: the common ones.
lock_take "restart"
at_exit lock_free
if ! gated mgr_graceful_restart true ''; then
  fail "$EXIT_UNHEALTHY" "the app did not answer its health check after the restart" "see fab logs"
fi
echo "restarted and healthy"
