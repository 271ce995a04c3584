# shellcheck shell=bash
# abort: undo a prepared, never switched release (another host failed, or Ctrl-C): remove it
# and free the lock, only when this run holds the lock (another deploy's is never taken), and
# never the release `current` or `previous` points to.
# Values: RELEASE and the common ones.
if lock_ours; then
  if is_release "$RELEASE" && [ "$(current_release)" != "$RELEASE" ] && [ "$(previous_release)" != "$RELEASE" ]; then
    rm -rf "${RELEASES:?}/$RELEASE"
  fi
  rm -rf "${RELEASES:?}/$RELEASE.partial"
  lock_free
fi
