"""DVC stage `pretrain`: thin wrapper over `asn pretrain` (the shared trunk, trained once)."""

import sys

from asn.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
