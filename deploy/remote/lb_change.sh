# shellcheck shell=bash
# lb_change: put a new balancer config in place and return once no request is in flight to a
# web host it takes out. nginx's workers as they are now finish the requests they have and
# exit after a graceful reload, so waiting for exactly those workers waits for those requests.
# Values: WAIT (seconds: proxy_timeout, the longest a request may take), NGINX_PID (nginx's
# pid file). Functions: site_apply (the site swap behind `nginx -t`, then the graceful reload;
# deploy/steps/site.py `apply_lines`, which fails with the one-line error and puts the old
# config back).
old=()
if [ -s "$NGINX_PID" ]; then mapfile -t old < <(pgrep -P "$(cat "$NGINX_PID")" nginx || true); fi
site_apply
deadline=$(($(date +%s) + WAIT))
for p in "${old[@]}"; do
  while kill -0 "$p" 2> /dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "warning: an old nginx worker ($p) still has requests in flight after ${WAIT}s"
      break 2
    fi
    sleep 0.05
  done
done
