#!/usr/bin/env bash
# Re-fetch the console's vendored front-end files with npm and verify them against
# src/portcullis/console/static/vendor/vendor.json (tarball integrity, then file digest).
# Usage: scripts/vendor-frontend.sh            verify the shipped files against npm
# To upgrade: change the versions in vendor.json, run this, read the upstream diff, then
# update the sha256 values it prints.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vendor="$here/src/portcullis/console/static/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$vendor/vendor.json" "$work" "$vendor" <<'PY'
import hashlib, json, pathlib, subprocess, sys, tarfile
manifest, work, vendor = json.load(open(sys.argv[1])), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
bad = 0
for name, meta in manifest["files"].items():
    spec = f'{meta["package"]}@{meta["version"]}'
    out = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", str(work)],
                         check=True, capture_output=True, text=True).stdout
    packed = json.loads(out)[0]
    if packed["integrity"] != meta["tarball_integrity"]:
        print(f"{spec}: tarball integrity {packed['integrity']} != {meta['tarball_integrity']}"); bad += 1; continue
    with tarfile.open(work / packed["filename"]) as tar:
        data = tar.extractfile("package/" + meta["source"]).read()
    digest = hashlib.sha256(data).hexdigest()
    shipped = hashlib.sha256((vendor / name).read_bytes()).hexdigest() if (vendor / name).exists() else None
    status = "ok" if digest == meta["sha256"] == shipped else "MISMATCH"
    bad += status != "ok"
    print(f"{name}: npm {digest} shipped {shipped} manifest {meta['sha256']}: {status}")
sys.exit(1 if bad else 0)
PY
