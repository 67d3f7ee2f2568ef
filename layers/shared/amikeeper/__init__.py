"""amikeeper: tag-driven EC2 AMI backups with restic-style retention."""
