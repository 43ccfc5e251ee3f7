"""Package vetting for ``portcullis scan``: npm and PyPI packages that servers run.

``vet_packages`` looks every package up once on the registries the user's own npm and pip
configuration names (see :mod:`.registries`), checks names offline against well-known MCP
packages and known malware, and with ``deep`` scans the package's code. ``RULES`` lists every
rule it can report.
"""

from portcullis.scan.vet.rules import RULES
from portcullis.scan.vet.vetting import vet_packages

__all__ = ["RULES", "vet_packages"]
