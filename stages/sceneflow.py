"""DVC stage `sceneflow`: thin wrapper over `asn sceneflow` (paper Table 8 on the synthetic stereo world)."""

import sys

from asn.cli import main

if __name__ == "__main__":
    sys.exit(main(["sceneflow", *sys.argv[1:]]))
