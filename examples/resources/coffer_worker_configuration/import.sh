# By launch template id, in the provider's region:
terraform import coffer_worker_configuration.use1 lt-0123456789abcdef0

# In another region:
terraform import coffer_worker_configuration.euw1 eu-west-1/lt-0123456789abcdef0
