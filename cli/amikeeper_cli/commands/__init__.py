"""One module per command: each reads what it needs through a Deployment and returns a View."""
