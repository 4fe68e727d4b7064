#!/usr/bin/env python3
"""Fetches the vendored browser libraries of GraphiQL from the npm registry.

Each package in manifest.json is pinned to a version; its tarball is checked against the
registry's `dist.integrity` (sha512) and, once that matches, the listed files and the
package's licence are copied here. manifest.json also records each copied file's sha256,
which the test suite checks (tests/api/dashboard.rs) so an edited vendor file is caught
without the network.

    python3 assets/vendor/fetch.py          # download, verify, write files + sha256s
    python3 assets/vendor/fetch.py --check  # download, verify, and compare with what is
                                            # checked in; exit 1 on any difference
"""

import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
REGISTRY = "https://registry.npmjs.org"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return answer.read()


def verified_tarball(name: str, version: str, integrity: str) -> bytes:
    meta = json.loads(get(f"{REGISTRY}/{name}/{version}"))
    published = meta["dist"]["integrity"]
    # The manifest pins the integrity too: a re-published version must not slip in.
    if published != integrity:
        sys.exit(f"{name}@{version}: the registry says {published}, the manifest pins {integrity}")
    algo, _, digest = integrity.partition("-")
    if algo != "sha512":
        sys.exit(f"{name}@{version}: only sha512 integrity is accepted, got {algo}")
    tarball = get(meta["dist"]["tarball"])
    actual = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if actual != digest:
        sys.exit(f"{name}@{version}: tarball sha512 {actual} does not match {digest}")
    return tarball


def main() -> int:
    check = "--check" in sys.argv[1:]
    manifest = json.loads(MANIFEST.read_text())
    failures = 0
    for package in manifest["packages"]:
        name, version = package["name"], package["version"]
        tarball = verified_tarball(name, version, package["integrity"])
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
            for entry in package["files"]:
                member = tar.extractfile(f"package/{entry['from']}")
                if member is None:
                    sys.exit(f"{name}@{version}: {entry['from']} is not a file in the tarball")
                data = member.read()
                target = HERE / entry["to"]
                sha = hashlib.sha256(data).hexdigest()
                if check:
                    on_disk = target.read_bytes() if target.exists() else None
                    if on_disk != data or entry.get("sha256") != sha:
                        print(f"DIFFERS: {entry['to']} ({name}@{version} {entry['from']})")
                        failures += 1
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                entry["sha256"] = sha
                print(f"wrote {entry['to']} ({len(data)} bytes)")
    if check:
        print("vendor: OK" if failures == 0 else f"vendor: {failures} file(s) differ")
        return 1 if failures else 0
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
