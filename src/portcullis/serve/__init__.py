"""``portcullis serve``: the authenticated Streamable HTTP front.

Imported only by ``portcullis serve`` and ``portcullis keys``: nothing here is on the stdio path.
"""
