"""DVC stage `aggregate`: thin wrapper over `asn aggregate` (Table 4 from the per-seed evaluations)."""

import sys

from asn.cli import main

if __name__ == "__main__":
    sys.exit(main(["aggregate", *sys.argv[1:]]))
