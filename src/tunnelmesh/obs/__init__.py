"""Observability: the log's formats (logfmt.py) and the access line's fields (access.py).

Kept free of imports: the CLI and the supervisor import pieces of this package and must stay light.
"""
