resource "coffer_worker_configuration" "use1" {
  name               = "use1"
  region             = "us-east-1"
  subnet_id          = "subnet-0123456789abcdef0"
  security_group_ids = ["sg-0123456789abcdef0"]
  instance_type      = "c6i.large"
  instance_profile   = "coffer-worker"

  tags = {
    Team = "platform"
  }
}
