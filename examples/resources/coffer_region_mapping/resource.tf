# Replicas in another region of the same account.
resource "coffer_region_mapping" "use1_to_euw1" {
  name          = "use1-to-euw1"
  source_region = "us-east-1"
  target_region = "eu-west-1"
}

# Replicas in a disaster-recovery account, every copy encrypted with its key.
resource "coffer_region_mapping" "dr" {
  name            = "use1-to-dr-euw1"
  source_region   = "us-east-1"
  target_region   = "eu-west-1"
  target_role_arn = "arn:aws:iam::222222222222:role/coffer-backup"
  kms_key_arn     = "arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  encrypt         = "all"
}
