"""``amikeeper``: the operator CLI of an amikeeper stack (docs/cli.md).

It runs with the operator's own AWS credentials, learns the stack's settings from the deployed
PlannerFunction, and reuses the functions' own domain code (amikeeper.report, amikeeper.retention,
amikeeper.backups), so what it shows is what the stack decides.
"""
