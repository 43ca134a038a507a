"""Subcommands of the `asn` command.

Each module here exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported lazily, only when their command runs, so that
`asn --help` and light commands never import torch.
"""
