"""DVC stage `convert`: thin wrapper over `asn convert` (same code path as the CLI)."""

import sys

from asn.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
