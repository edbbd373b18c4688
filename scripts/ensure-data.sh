#!/bin/sh
# Make sure the dataset is on disk: found locally, installed from Debian's package, or
# downloaded (verified) into the user cache.
set -u
DATASET=${DATASET:-fashion-mnist}
PY=${PY:-python3}
found() { "$PY" -c "import sys; from mlp.data import find_dataset; find_dataset(sys.argv[1])" "$DATASET" 2>/dev/null; }
found && exit 0
if [ "$DATASET" = fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
    if [ "$SUDO" != none ]; then
        echo "installing Debian's dataset-fashion-mnist (into /usr/share/datasets/fashion-mnist)"
        $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
            { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
        found && exit 0
    fi
fi
# Not installable from Debian here (or not Fashion-MNIST): download it from the official
# mirrors into the user cache, SHA-256 checked. Offline, this prints what to do instead.
"$PY" -m mlp.cli.download "$DATASET" >/dev/null && exit 0
exit 1
