"""The web console at /console/ on the main listener (docs/operations.md section 1): server-rendered pages that
act in process as the signed-in principal, through the same S3 and admin APIs as any client."""
