"""DVC stage `train`: thin wrapper over `asn train` (same code path as the CLI and Prefect)."""

import sys

from asn.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
