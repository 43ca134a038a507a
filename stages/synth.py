"""DVC stage `synth`: the embedded synthetic KINS world (thin wrapper around `asn synth`)."""

import sys

from asn.cli import main

sys.exit(main(["synth", *sys.argv[1:]]))
