#!/usr/bin/env python3
"""Seed a small demo estate into the local AWS emulator (moto server).

    python3 scripts/seed_estate.py --endpoint-url http://127.0.0.1:4566

Creates, in account 123456789012:

  us-east-1  EC2 web-1, web-2, db-host (+ 100 GiB gp3 data volume on /dev/sdf),
             all tagged Backup=daily; EC2 scratch (no Backup tag, out of scope);
             RDS postgres instance orders-db (Backup=daily);
             Aurora PostgreSQL cluster ledger (Backup=daily) with writer ledger-1
  eu-west-1  EC2 eu-web-1 (Backup=daily); RDS postgres instance eu-orders-db
             (Backup=daily)

and prints what it created. Meant for a freshly started (or
`POST /moto-api/reset`) emulator; it refuses to seed twice. Needs boto3 only.
"""

import argparse
import os
import sys

import boto3

ACCOUNT = "123456789012"
PRIMARY = "us-east-1"
SECONDARY = "eu-west-1"

# Demo only: a throwaway master password for emulator databases. Never use it
# (or this script) against a real AWS account.
DEMO_DB_USER = "coffer"
DEMO_DB_PASSWORD = "coffer-demo-only-not-a-secret"

BACKUP_TAG = {"Key": "Backup", "Value": "daily"}

# The AMI's root device name. moto's RegisterImage ignores RootDeviceName and
# always reports /dev/sda1, and an instance takes its root device name from its
# AMI, so the root mapping below uses the same name.
ROOT_DEVICE = "/dev/sda1"


def tags_of(pairs):
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def fmt_tags(tag_list):
    return ",".join(
        "{}={}".format(t["Key"], t["Value"]) for t in sorted(tag_list or [], key=lambda t: t["Key"])
    )


class Estate:
    def __init__(self, endpoint_url):
        self.endpoint_url = endpoint_url
        self.rows = []  # (kind, region, id, name, tags)

    def client(self, service, region):
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint_url)

    def record(self, kind, region, resource_id, name, tag_list):
        self.rows.append((kind, region, resource_id, name, fmt_tags(tag_list)))

    # --- EC2 ---------------------------------------------------------------

    def demo_ami(self, region):
        """Registers a demo AMI. The emulator runs with MOTO_EC2_LOAD_DEFAULT_AMIS=false,
        so there is no public AMI to launch from. (moto backs the image with an
        auto-created snapshot owned by the account, as AWS would.)"""
        ec2 = self.client("ec2", region)
        image_id = ec2.register_image(
            Name="coffer-demo-base",
            Description="Coffer demo base image",
            Architecture="x86_64",
            RootDeviceName=ROOT_DEVICE,
            VirtualizationType="hvm",
        )["ImageId"]
        ec2.create_tags(Resources=[image_id], Tags=tags_of({"Name": "coffer-demo-base"}))
        return image_id

    def instance(self, region, image_id, name, backup=True):
        ec2 = self.client("ec2", region)
        tags = tags_of({"Name": name})
        if backup:
            tags.append(BACKUP_TAG)
        reservation = ec2.run_instances(
            ImageId=image_id,
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            BlockDeviceMappings=[
                {
                    "DeviceName": ROOT_DEVICE,
                    "Ebs": {"VolumeSize": 8, "VolumeType": "gp3", "DeleteOnTermination": True},
                }
            ],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags_of({"Name": name + "-root"})},
            ],
        )
        inst = reservation["Instances"][0]
        self.record("ec2-instance", region, inst["InstanceId"], name, tags)
        return inst

    def data_volume(self, region, inst, name, device, size_gib):
        ec2 = self.client("ec2", region)
        tags = tags_of({"Name": name})
        volume_id = ec2.create_volume(
            AvailabilityZone=inst["Placement"]["AvailabilityZone"],
            Size=size_gib,
            VolumeType="gp3",
            TagSpecifications=[{"ResourceType": "volume", "Tags": tags}],
        )["VolumeId"]
        ec2.attach_volume(VolumeId=volume_id, InstanceId=inst["InstanceId"], Device=device)
        self.record("ebs-volume", region, volume_id, "{} ({} on {})".format(name, device, inst["InstanceId"]), tags)
        return volume_id

    # --- RDS ---------------------------------------------------------------

    def db_instance(self, region, identifier, tag_list, **extra):
        rds = self.client("rds", region)
        params = dict(
            DBInstanceIdentifier=identifier,
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            AllocatedStorage=20,
            StorageType="gp3",
            MasterUsername=DEMO_DB_USER,
            MasterUserPassword=DEMO_DB_PASSWORD,
            CopyTagsToSnapshot=True,
            Tags=tag_list,
        )
        params.update(extra)
        db = rds.create_db_instance(**params)["DBInstance"]
        # The ARN, not DbiResourceId: moto gives every DB instance the same one.
        self.record("rds-instance", region, db["DBInstanceArn"], identifier, tag_list)
        return db

    def aurora_cluster(self, region, identifier, writer):
        rds = self.client("rds", region)
        tags = [BACKUP_TAG]
        cluster = rds.create_db_cluster(
            DBClusterIdentifier=identifier,
            Engine="aurora-postgresql",
            MasterUsername=DEMO_DB_USER,
            MasterUserPassword=DEMO_DB_PASSWORD,
            CopyTagsToSnapshot=True,
            Tags=tags,
        )["DBCluster"]
        self.record("rds-cluster", region, cluster["DBClusterArn"], identifier, tags)
        # The writer carries no Backup tag: an Aurora cluster is backed up as a
        # cluster, its member instances cannot be snapshotted on their own.
        rds.create_db_instance(
            DBInstanceIdentifier=writer,
            DBInstanceClass="db.r6g.large",
            Engine="aurora-postgresql",
            DBClusterIdentifier=identifier,
        )
        db = rds.describe_db_instances(DBInstanceIdentifier=writer)["DBInstances"][0]
        self.record("rds-cluster-member", region, db["DBInstanceArn"], writer, db.get("TagList"))
        return cluster

    # --- the estate --------------------------------------------------------

    def already_seeded(self):
        rds = self.client("rds", PRIMARY)
        try:
            rds.describe_db_instances(DBInstanceIdentifier="orders-db")
        except rds.exceptions.DBInstanceNotFoundFault:
            return False
        return True

    def seed(self):
        ami = self.demo_ami(PRIMARY)
        self.record("ami", PRIMARY, ami, "coffer-demo-base", tags_of({"Name": "coffer-demo-base"}))
        self.instance(PRIMARY, ami, "web-1")
        self.instance(PRIMARY, ami, "web-2")
        db_host = self.instance(PRIMARY, ami, "db-host")
        self.data_volume(PRIMARY, db_host, "db-host-data", "/dev/sdf", 100)
        self.instance(PRIMARY, ami, "scratch", backup=False)

        eu_ami = self.demo_ami(SECONDARY)
        self.record("ami", SECONDARY, eu_ami, "coffer-demo-base", tags_of({"Name": "coffer-demo-base"}))
        self.instance(SECONDARY, eu_ami, "eu-web-1")

        self.db_instance(PRIMARY, "orders-db", [BACKUP_TAG])
        self.db_instance(SECONDARY, "eu-orders-db", [BACKUP_TAG])
        self.aurora_cluster(PRIMARY, "ledger", "ledger-1")

    def print_table(self):
        header = ("kind", "region", "id", "name", "tags")
        widths = [max(len(str(r[i])) for r in self.rows + [header]) for i in range(len(header))]
        line = "  ".join("{:<%d}" % w for w in widths[:-1]) + "  {}"
        print(line.format(*header))
        print(line.format(*("-" * w for w in widths)))
        for row in self.rows:
            print(line.format(*row[:-1], row[-1] or "-"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", default="http://127.0.0.1:4566",
                        help="the emulator's endpoint (default %(default)s)")
    args = parser.parse_args()

    # The emulator accepts any credentials; demo.sh exports these same values.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")

    estate = Estate(args.endpoint_url)
    if estate.already_seeded():
        print("the emulator at {} already holds the demo estate; reset it first "
              "(curl -X POST {}/moto-api/reset)".format(args.endpoint_url, args.endpoint_url),
              file=sys.stderr)
        return 1
    estate.seed()
    print("seeded demo estate in account {} at {}".format(ACCOUNT, args.endpoint_url))
    estate.print_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
