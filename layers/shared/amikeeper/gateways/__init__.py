"""Every boto3 call amikeeper makes lives in this package, one module per AWS service."""
