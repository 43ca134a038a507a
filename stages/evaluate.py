"""DVC stage `evaluate`: thin wrapper over `asn evaluate` (same code path as the CLI and Prefect)."""

import sys

from asn.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
