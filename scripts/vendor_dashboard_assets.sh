#!/usr/bin/env bash
# Rebuild the dashboard's vendored charting library (uPlot, MIT) from the npm registry, so the
# dashboard works with no internet. Usage: scripts/vendor_dashboard_assets.sh [VERSION]
set -euo pipefail
version="${1:-1.6.32}"
dest="$(cd "$(dirname "$0")/.." && pwd)/src/kiln/dashboard/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "uplot@${version}" >/dev/null
tar xzf "uplot-${version}.tgz"
license="$(node -p "require('./package/package.json').license")"
[ "$license" = "MIT" ] || { echo "uplot@${version} is licensed $license, not MIT: check it" >&2; exit 1; }
mkdir -p "$dest"
cp package/dist/uPlot.iife.min.js package/dist/uPlot.min.css "$dest/"
cp package/LICENSE "$dest/uPlot.LICENSE"
echo "uplot ${version} (MIT) from npm: uPlot.iife.min.js, uPlot.min.css, uPlot.LICENSE" > "$dest/README.txt"
echo "vendored uplot ${version} into $dest"
