# By name:
terraform import coffer_backup_policy.prod prod-ec2
