"""DVC stage `report`: thin wrapper over `asn report` (reports/README.md, the index of Tables 1-8)."""

import sys

from asn.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
