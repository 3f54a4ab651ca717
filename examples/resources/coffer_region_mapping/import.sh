# By name:
terraform import coffer_region_mapping.use1_to_euw1 use1-to-euw1
