"""DVC stage `download`: fetch (or generate) the raw dataset named by params.yaml data.*.

Usage: python stages/download.py --params params.yaml --out data/raw [--cache data/cache]
"""

import sys

from asn.cli import main

sys.exit(main(["download", *sys.argv[1:]]))
