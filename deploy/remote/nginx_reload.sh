# shellcheck shell=bash
# nginx_reload: setup's reload of nginx after it changed the site (deploy/steps/site.py, run
# inside setup's script: shell.py `subprogram`). `systemctl reload nginx` only signals the
# master and returns before the new configuration serves; this returns once it does: every
# worker of the old one has exited or stopped accepting (lib.sh `nginx_closing`). At most WAIT
# seconds: a master that could not load the new configuration keeps its workers, and the
# steps after this one find that out. Values: WAIT NGINX_PID (nginx's pid file).
nginx_reload "$NGINX_PID" "$WAIT" nginx_closing || [ $? = 124 ]
