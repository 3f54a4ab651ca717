"""Prints the PreSignedUrl botocore (the project's pinned one, in .venv) puts in a
cross-region CopyDBSnapshot or CopyDBClusterSnapshot, for the inputs given as JSON on
stdin: the reference our aws-sigv4 presigning is compared with. Nothing is sent: the
call is stopped by a before-call handler once botocore's own inject_presigned_url_rds
has run, and the signing clock is fixed."""

import datetime
import json
import sys
from unittest import mock

import botocore.auth
import botocore.session
from botocore.awsrequest import AWSResponse

spec = json.load(sys.stdin)
session = botocore.session.get_session()
client = session.create_client(
    "rds",
    region_name=spec["destination_region"],
    aws_access_key_id=spec["access_key_id"],
    aws_secret_access_key=spec["secret_access_key"],
    aws_session_token=spec.get("session_token"),
)
captured = {}


def capture(params, **kwargs):
    captured["url"] = params["body"]["PreSignedUrl"]
    return AWSResponse("https://example.invalid", 200, {}, None), {}


operation = "CopyDBClusterSnapshot" if spec["cluster"] else "CopyDBSnapshot"
client.meta.events.register(f"before-call.rds.{operation}", capture)
kind = "DBClusterSnapshot" if spec["cluster"] else "DBSnapshot"
arguments = {
    f"Source{kind}Identifier": spec["source_arn"],
    f"Target{kind}Identifier": spec["target_id"],
    "KmsKeyId": spec["kms_key_id"],
    "SourceRegion": spec["source_region"],
}
signing_time = datetime.datetime.fromtimestamp(spec["time"], tz=datetime.timezone.utc).replace(tzinfo=None)
with mock.patch.object(botocore.auth, "get_current_datetime", return_value=signing_time):
    getattr(client, "copy_db_cluster_snapshot" if spec["cluster"] else "copy_db_snapshot")(**arguments)
print(captured["url"])
