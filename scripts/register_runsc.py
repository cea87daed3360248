"""Registers gVisor's runsc in Docker's daemon.json, keeping every other setting.

Prints "changed" when the file was written, "unchanged" otherwise.
--network=none is required on this kind of machine (runsc misdetects the
network namespace otherwise) and is what untrusted code wants anyway. --oci-seccomp: without
it runsc ignores the container's seccomp profile (Docker's default one, here), and a
program in the sandbox could make every call the profile refuses.
"""

import json
import os
import sys

PATH = sys.argv[1] if len(sys.argv) > 1 else "/etc/docker/daemon.json"
WANTED = {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--oci-seccomp"]}

try:
    with open(PATH) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}

runtimes = config.setdefault("runtimes", {})
if runtimes.get("runsc") == WANTED:
    print("unchanged")
else:
    runtimes["runsc"] = WANTED
    os.makedirs(os.path.dirname(PATH), exist_ok=True)
    tmp = PATH + ".tmp"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(tmp, PATH)
    print("changed")
