"""Access control: one pure evaluator of IAM-style statements (docs/access-control.md, section 2).

Nothing here imports the S3 layer or the store: the edge builds asks and views, this package decides.
"""
