# shellcheck shell=bash
# Installs Debian packages on a host that may have just booted; part of `fab setup`'s script
# (bash, set -euo pipefail). A fresh cloud VM's cloud-init or unattended-upgrades hold the
# dpkg lock for a while after boot: wait for it, bounded, then install. Lines starting
# "::progress " reach the user as they are printed; "::error PROBLEM — FIX" ends the script.

# The pid holding one of apt's or dpkg's locks (fcntl locks, listed in /proc/locks), or nothing.
# pids of other pid namespaces show as 0 there and are skipped.
apt_lock_holder() {
    local inodes
    inodes=$(stat -c %i /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock \
                        /var/cache/apt/archives/lock 2>/dev/null || true)
    awk -v inodes="$inodes" '
        BEGIN { n = split(inodes, list); for (i = 1; i <= n; i++) wanted[list[i]] = 1 }
        $2 != "->" { split($6, id, ":"); if ((id[3] in wanted) && $5 > 0) { print $5; exit } }
    ' /proc/locks
}

# "1234 (unattended-upgr)"
apt_process() {
    echo "$1 ($(cat "/proc/$1/comm" 2>/dev/null || echo gone))"
}

# apt_wait_for_lock SECONDS: return once nobody holds the package locks; fail after SECONDS.
apt_wait_for_lock() {
    local limit=$1 waited=0 holder
    if command -v cloud-init >/dev/null && ! cloud-init status 2>/dev/null | grep -q 'done'; then
        echo "::progress waiting for cloud-init to finish (up to ${limit}s)"
        timeout "$limit" cloud-init status --wait >/dev/null 2>&1 || true
    fi
    while holder=$(apt_lock_holder) && [ -n "$holder" ]; do
        if [ "$waited" -ge "$limit" ]; then
            echo "::error the dpkg lock is still held by $(apt_process "$holder") after ${limit}s —" \
                 "let it finish (cloud-init status --wait; systemctl status unattended-upgrades)," \
                 "then run setup again, or raise apt_lock_wait"
            exit 1
        fi
        if [ "$waited" -eq 0 ]; then
            echo "::progress waiting for the dpkg lock, held by $(apt_process "$holder") (up to ${limit}s)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# apt-get with its output shown as it comes (and kept in $APT_LOG for the error message).
apt_get() {
    apt-get -q -y -o DPkg::Lock::Timeout=60 -o Dpkg::Use-Pty=0 "$@" 2>&1 \
        | tee -a "$APT_LOG" | sed -u 's/^/::progress apt: /'
}

# apt_install LOCK_WAIT PACKAGE...: install what is missing, refreshing the lists once if needed.
apt_install() {
    local limit=$1
    shift
    : >"$APT_LOG"
    apt_wait_for_lock "$limit"
    if apt_get install --no-install-recommends "$@"; then
        return
    fi
    if apt_get update && apt_get install --no-install-recommends "$@"; then
        return
    fi
    grep -E '^(E|W):' "$APT_LOG" | tail -n 3 || true
    echo "::error apt-get install $* failed —" \
         "read apt's messages above; check the package names and the host's apt sources"
    exit 1
}
