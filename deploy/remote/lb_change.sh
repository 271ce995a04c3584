# shellcheck shell=bash
# lb_change: put a new balancer config in place and return once no request is in flight to a
# web host it takes out. nginx's workers as they are now finish the requests they have and
# exit after a graceful reload, so waiting for exactly those workers waits for those requests.
# Values: WAIT (seconds: proxy_timeout, the longest a request may take), NGINX_PID (nginx's
# pid file). Functions: site_apply (the site swap behind `nginx -t`; deploy/steps/site.py
# `apply_lines`, which fails with the one-line error and puts the old config back).
site_apply
rc=0
nginx_reload "$NGINX_PID" "$WAIT" exited || rc=$?
if [ "$rc" = 124 ]; then
  echo "warning: an old nginx worker still has requests in flight after ${WAIT}s"
elif [ "$rc" != 0 ]; then
  exit "$rc"
fi
