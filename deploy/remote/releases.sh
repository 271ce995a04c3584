# shellcheck shell=bash
# releases: the releases on this host, oldest first (current and previous marked), and the
# last deploys. Values: the common ones.
cur=$(current_release)
prev=$(previous_release)
for r in $(sorted_releases); do
  if [ "$r" = "$cur" ]; then
    echo "* $r (current)"
  elif [ "$r" = "$prev" ]; then
    echo "  $r (previous)"
  else
    echo "  $r"
  fi
done
echo '-- last deploys:'
tail -n 5 "$DEPLOY_LOG" 2>/dev/null || true
