# By the repository's id (its UUID, as recorded in the catalog):
terraform import coffer_repository.main 0b8f4f34-5d1e-4a4e-9a9c-1f2d3c4b5a69

# By location, s3://<bucket>/<prefix> (also finds repositories not in the catalog):
terraform import coffer_repository.main s3://acme-backups-eu/coffer/main

# A repository at the root of its bucket:
terraform import coffer_repository.immutable s3://acme-backups-immutable
