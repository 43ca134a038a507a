"""DVC stage `stats`: dataset statistics of the normalized ground truth (see `asn stats --help`)."""

import sys

from asn.cli import main

sys.exit(main(["stats", *sys.argv[1:]]))
