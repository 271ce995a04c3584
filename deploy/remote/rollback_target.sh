# shellcheck shell=bash
# rollback_target: print the release to roll back to: TO when given (it must exist here),
# else the release that was live before the last switch (`previous`). Hosts deployed before
# `previous` was recorded fall back to the release sorted just before current.
# Values: TO ('' or a release name) and the common ones.
if [ -n "$TO" ]; then
  if ! is_release "$TO" || [ ! -d "$RELEASES/$TO" ]; then
    fail "$EXIT_USAGE" "no release $TO on this host" "pick one from fab releases"
  fi
  echo "$TO"
  exit 0
fi
cur=$(current_release)
target=$(previous_release)
if [ -z "$target" ] && [ ! -L "$PREVIOUS" ]; then
  target=$(sorted_releases | grep -B1 -xF -- "$cur" | head -n1 || true)
fi
if [ -z "$target" ] || [ "$target" = "$cur" ]; then
  fail "$EXIT_USAGE" "there is no release before the current one to roll back to" \
    "deploy one first, or name one with --to"
fi
echo "$target"
