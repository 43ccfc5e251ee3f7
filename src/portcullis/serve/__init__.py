"""``portcullis serve``: the authenticated Streamable HTTP front.

Imported only by ``portcullis serve`` and ``portcullis keys`` (and ``listen`` by ``portcullis
console``): nothing here is on the stdio path.
"""
