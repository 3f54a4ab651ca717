#!/usr/bin/env python3
"""Create a KMS key in the local AWS emulator and print its ARN: the key a demo
repository's workers' envelope is wrapped with (worker_kms_key_arn).

    python3 scripts/demo_kms_key.py --endpoint-url http://127.0.0.1:4566 [--account 111111111111]

With --account, the key is made in that account, through the role the examples' provider
assumes there (arn:aws:iam::<account>:role/coffer), as on AWS each account's repository
uses a key of its own account. For the emulator only. Needs boto3 only.
"""

import argparse

import boto3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", default="http://127.0.0.1:4566")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--account", help="make the key in this account (through its coffer role)")
    args = parser.parse_args()
    session = {"endpoint_url": args.endpoint_url, "region_name": args.region}
    if args.account:
        sts = boto3.client("sts", **session)
        role = f"arn:aws:iam::{args.account}:role/coffer"
        credentials = sts.assume_role(RoleArn=role, RoleSessionName="coffer-demo")["Credentials"]
        session.update(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
    kms = boto3.client("kms", **session)
    key = kms.create_key(Description="coffer demo: workers open the repository with it")
    print(key["KeyMetadata"]["Arn"])


if __name__ == "__main__":
    main()
