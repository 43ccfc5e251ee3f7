"""Pure detectors shared by the gateway and the scanner: text in, findings out.

Nothing here does I/O or imports from ``portcullis.gateway`` or ``portcullis.scan``.
"""
