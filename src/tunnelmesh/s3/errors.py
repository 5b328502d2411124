"""The one exception type of the S3 API, and the HTTP status and default message of each S3 error code."""

from __future__ import annotations

STATUS: dict[str, int] = {
    "AccessControlListNotSupported": 400,
    "AccessDenied": 403,
    "AccessForbidden": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "BadDigest": 400,
    "BadRequest": 400,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IllegalLocationConstraintException": 400,
    "IncompleteBody": 400,
    "InsufficientStorage": 507,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "ServerSideEncryptionConfigurationNotFoundError": 404,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidBucketState": 409,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidRetentionPeriod": 400,
    "InvalidPartNumber": 416,
    "InvalidPartOrder": 400,
    "InvalidPolicyDocument": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "InvalidStorageClass": 400,
    "InvalidTag": 400,
    "InvalidURI": 400,
    "KeyTooLongError": 400,
    "MalformedACLError": 400,
    "MalformedPolicy": 400,
    "MalformedPOSTRequest": 400,
    "MalformedXML": 400,
    "MaxMessageLengthExceeded": 400,
    "MaxPostPreDataLengthExceeded": 400,
    "MetadataTooLarge": 400,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "MissingRequestBodyError": 400,
    "MissingSecurityHeader": 400,
    "NoSuchBucket": 404,
    "NoSuchBucketPolicy": 404,
    "NoSuchCORSConfiguration": 404,
    "NoSuchKey": 404,
    "NoSuchLifecycleConfiguration": 404,
    "NoSuchObjectLockConfiguration": 404,
    "NoSuchPublicAccessBlockConfiguration": 404,
    "NoSuchTagSet": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "NotImplemented": 501,
    "ObjectLockConfigurationNotFoundError": 404,
    "PreconditionFailed": 412,
    "QuotaExceeded": 403,
    "RequestTimeout": 400,
    "RequestTimeTooSkewed": 403,
    "SignatureDoesNotMatch": 403,
    "UnexpectedContent": 400,
    "XAmzContentSHA256Mismatch": 400,
}

# The message a code carries when the raiser has nothing more specific to say: the text S3 itself sends on the
# wire (which is sometimes worded differently from AWS's error-code table, e.g. no final period on NoSuchBucket);
# clients and tests compare these byte for byte. The last few codes are this server's own (no AWS wording).
MESSAGE: dict[str, str] = {
    "AccessControlListNotSupported": "The bucket does not allow ACLs",
    "AccessDenied": "Access Denied",
    "AccessForbidden": "CORSResponse: This CORS request is not allowed.",
    "AuthorizationHeaderMalformed": "The authorization header is malformed.",
    "AuthorizationQueryParametersError": "Error parsing the query-string authentication parameters.",
    "BadDigest": "The Content-MD5 you specified did not match what we received.",
    "BadRequest": "Bad Request",
    "BucketAlreadyExists": "The requested bucket name is not available. Please select a different name and try again.",
    "BucketAlreadyOwnedByYou": "Your previous request to create the named bucket succeeded and you already own it.",
    "BucketNotEmpty": "The bucket you tried to delete is not empty",
    "EntityTooLarge": "Your proposed upload exceeds the maximum allowed size",
    "EntityTooSmall": "Your proposed upload is smaller than the minimum allowed size",
    "IllegalLocationConstraintException": "The specified location constraint is not valid.",
    "IncompleteBody": "You did not provide the number of bytes specified by the Content-Length HTTP header.",
    "InternalError": "We encountered an internal error. Please try again.",
    "InvalidAccessKeyId": "The AWS Access Key Id you provided does not exist in our records.",
    "InvalidArgument": "Invalid Argument",
    "InvalidBucketName": "The specified bucket is not valid.",
    "InvalidBucketState": "The request is not valid with the current state of the bucket.",
    "InvalidDigest": "The Content-MD5 you specified was invalid.",
    "InvalidPart": "One or more of the specified parts could not be found. The part may not have been uploaded, "
    "or the specified entity tag may not match the part's entity tag.",
    "InvalidRetentionPeriod": "The retention period is not valid.",
    "InvalidPartNumber": "The requested partnumber is not satisfiable",
    "InvalidPartOrder": "The list of parts was not in ascending order. "
    "The parts list must be specified in order by part number.",
    "InvalidPolicyDocument": "The content of the form does not meet the conditions specified in the policy document.",
    "InvalidRange": "The requested range is not satisfiable",
    "InvalidRequest": "Invalid Request",
    "InvalidStorageClass": "The storage class you specified is not valid",
    "InvalidTag": "The tag provided was not a valid tag.",
    "InvalidURI": "Couldn't parse the specified URI.",
    "KeyTooLongError": "Your key is too long",
    "MalformedPOSTRequest": "The body of your POST request is not well-formed multipart/form-data.",
    "MalformedXML": "The XML you provided was not well-formed or did not validate against our published schema.",
    "MaxMessageLengthExceeded": "Your request was too big.",
    "MaxPostPreDataLengthExceeded": "Your POST request fields preceding the upload file were too large.",
    "MetadataTooLarge": "Your metadata headers exceed the maximum allowed metadata size.",
    "MethodNotAllowed": "The specified method is not allowed against this resource.",
    "MissingContentLength": "You must provide the Content-Length HTTP header.",
    "MissingSecurityHeader": "Your request is missing a required header.",
    "NoSuchBucket": "The specified bucket does not exist",
    "NoSuchBucketPolicy": "The bucket policy does not exist",
    "MalformedACLError": "The XML you provided was not well-formed or did not validate against our published schema.",
    "MalformedPolicy": "Policies must be valid JSON and the first byte must be '{'",
    "MissingRequestBodyError": "Request Body is empty",
    "UnexpectedContent": "This request does not support content",
    "NoSuchPublicAccessBlockConfiguration": "The public access block configuration was not found",
    "NoSuchCORSConfiguration": "The CORS configuration does not exist",
    "NoSuchKey": "The specified key does not exist.",
    "NoSuchLifecycleConfiguration": "The lifecycle configuration does not exist",
    "NoSuchObjectLockConfiguration": "The specified object does not have a ObjectLock configuration",
    "NoSuchTagSet": "The TagSet does not exist",
    "ServerSideEncryptionConfigurationNotFoundError": "The server side encryption configuration was not found",
    "NoSuchUpload": "The specified upload does not exist. The upload ID may be invalid, "
    "or the upload may have been aborted or completed.",
    "NoSuchVersion": "The specified version does not exist.",
    "NotImplemented": "A header you provided implies functionality that is not implemented",
    "ObjectLockConfigurationNotFoundError": "Object Lock configuration does not exist for this bucket",
    "PreconditionFailed": "At least one of the pre-conditions you specified did not hold",
    "RequestTimeout": "Your socket connection to the server was not read from or written to within the timeout period.",
    "RequestTimeTooSkewed": "The difference between the request time and the server's time is too large.",
    "SignatureDoesNotMatch": "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method.",
    "XAmzContentSHA256Mismatch": "The provided 'x-amz-content-sha256' header does not match what was computed.",
    # this server's own
    "InsufficientStorage": "The coordinator's disk is full.",
    "ServiceUnavailable": "The metadata database is unavailable. Please try again.",
    "QuotaExceeded": "This write would exceed the bucket quota or the store size limit.",
}


class S3Error(Exception):
    """A protocol error; rendered once, at the edge, as an S3 XML error document."""

    def __init__(self, code: str, message: str = "", *, status: int | None = None, **fields: str) -> None:
        # an unknown code without a message still says something: its own name
        message = message or MESSAGE.get(code, code)
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS.get(code, 400)
        # code-specific elements of the error document (Region, RequestTime, ProposedSize, ...)
        self.fields = fields
        # extra response headers (e.g. Content-Range on InvalidRange)
        self.headers: list[tuple[str, str]] = []
