"""Channels that reach a person for ``confirm`` calls: console queue, tty, elicitation.

The session decides *that* a call needs approval and keeps the call; this package asks a person
and reports an :class:`~portcullis.approval.request.Outcome`. Nothing here approves on its own.
"""
