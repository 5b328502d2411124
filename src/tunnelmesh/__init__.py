"""tunnelmesh: the S3-compatible object store of a mesh-network coordinator."""

__version__ = "0.1.0"
