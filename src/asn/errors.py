"""Error types shared by every layer: a bad input names its file, its record and the reason."""

from __future__ import annotations


class AsnError(Exception):
    """Base class of the errors the `asn` command reports as one clear line and exit code 2."""


class InputError(AsnError):
    """A bad input file or record.

    Formats as ``<file>: <record>: <reason>`` so a user sees at once what to fix, e.g.
    ``update_train_2020.json: image 12, annotation 345: polygon has an odd number of coordinates``.
    """

    def __init__(self, file: object, reason: str, record: str | None = None):
        self.file = str(file) if file is not None else None
        self.record = record
        self.reason = reason
        parts = [p for p in (self.file, record, reason) if p]
        super().__init__(": ".join(parts))
