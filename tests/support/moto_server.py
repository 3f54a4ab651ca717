"""moto's server with the fixes our tests need where moto differs from AWS.

Run as `python moto_server.py -H 127.0.0.1 -p PORT` (moto_server's own
arguments). Each patch names the AWS behaviour it restores; product code never
special-cases the emulator.
"""

import sys

import moto

# The patches below reach into moto's internals, which change between
# releases (5.2.5 returns ActionResult where 5.2.1 returned JSON text): run
# only on the moto they were written for, pinned with its dependencies in
# tests/support/moto-requirements.txt.
MOTO_VERSION = "5.2.1"
if moto.__version__ != MOTO_VERSION:
    sys.exit(
        f"moto_server.py: written for moto {MOTO_VERSION}, but {sys.executable} has moto "
        f"{moto.__version__} ({moto.__file__}). Run scripts/install-tools.sh, which installs "
        "tests/support/moto-requirements.txt into .venv/, and start this file with .venv/bin/python."
    )

from moto.core.responses import ActionResult  # noqa: E402
from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateBackend
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.server import main


def _current_launch_template_tags(self):
    return self.get_tags()


# AWS: DescribeLaunchTemplates returns a template's current tags, so CreateTags
# and DeleteTags on an lt- id show up there. moto copies the tags into the
# template once, at creation, and keeps answering with that copy.
LaunchTemplate.tags = property(_current_launch_template_tags, lambda self, value: None)



# AWS: DeleteLaunchTemplateVersions deletes versions other than the default
# and reports each version it could not delete; the rest of the API no longer
# shows them. moto lacks the call, and numbers versions by list position, so
# deleted versions are marked and hidden rather than removed.
def _delete_launch_template_versions(self):
    template_id = self._get_param("LaunchTemplateId")
    name = self._get_param("LaunchTemplateName")
    if template_id:
        template = self.ec2_backend.get_launch_template(template_id)
    else:
        template = self.ec2_backend.get_launch_template_by_name(name)
    deleted, failed = [], []
    for requested in self._get_param("Versions", []):
        number = int(requested)
        exists = 1 <= number <= len(template.versions) and not getattr(
            template.versions[number - 1], "coffer_deleted", False
        )
        if exists and number != template.default_version_number:
            template.versions[number - 1].coffer_deleted = True
            deleted.append(number)
        else:
            code = "launchTemplateVersionDoesNotExist" if not exists else "unexpectedError"
            failed.append((number, code))
    ids = {"LaunchTemplateId": template.id, "LaunchTemplateName": template.name}
    return ActionResult(
        {
            "SuccessfullyDeletedLaunchTemplateVersions": [
                dict(ids, VersionNumber=n) for n in deleted
            ],
            "UnsuccessfullyDeletedLaunchTemplateVersions": [
                dict(ids, VersionNumber=n, ResponseError={"Code": code, "Message": code})
                for n, code in failed
            ],
        }
    )


LaunchTemplates.delete_launch_template_versions = _delete_launch_template_versions

_describe_versions = LaunchTemplateBackend.describe_launch_template_versions


def _describe_live_versions(self, *args, **kwargs):
    return [
        (template, version)
        for template, version in _describe_versions(self, *args, **kwargs)
        if not getattr(version, "coffer_deleted", False)
    ]


LaunchTemplateBackend.describe_launch_template_versions = _describe_live_versions


from moto.ec2.responses.instances import InstanceResponse

_run_instances = InstanceResponse.run_instances


# AWS: RunInstances with a launch template launches the instance with the
# template's IamInstanceProfile unless the request names one (EC2 user guide,
# "Launch an instance from a launch template": request parameters override the
# template's). moto applies the template's user data, type, key and security
# groups, but not its instance profile.
def _run_instances_with_template_profile(self):
    result = _run_instances(self)
    template_arg = self._get_param("LaunchTemplate", {})
    named = self._get_param("IamInstanceProfile.Name") or self._get_param("IamInstanceProfile.Arn")
    if template_arg and not named:
        profile = self.ec2_backend._get_template_from_args(template_arg).data.get("IamInstanceProfile") or {}
        if profile.get("Name") or profile.get("Arn"):
            for instance in result.result.instances:
                self.ec2_backend.associate_iam_instance_profile(
                    instance_id=instance.id,
                    iam_instance_profile_name=profile.get("Name"),
                    iam_instance_profile_arn=profile.get("Arn"),
                )
    return result


InstanceResponse.run_instances = _run_instances_with_template_profile


from moto.ec2.models import EC2Backend  # noqa: E402
from moto.ec2.responses.amis import AmisResponse  # noqa: E402

_register_image = AmisResponse.register_image


# AWS: RegisterImage with BlockDeviceMappings registers an EBS-backed AMI of
# those snapshots, with the RootDeviceName, Architecture, EnaSupport, BootMode
# and VirtualizationType asked for (EC2 API reference, RegisterImage; "Create
# an AMI from a snapshot"), and refuses a snapshot that does not exist. moto
# keeps only the name and the description.
def _register_image_from_snapshots(self):
    mappings = self._get_param("BlockDeviceMappings", [])
    for mapping in mappings:
        snapshot_id = (mapping.get("Ebs") or {}).get("SnapshotId")
        if snapshot_id:
            self.ec2_backend.get_snapshot(snapshot_id)  # InvalidSnapshot.NotFound, as AWS
    result = _register_image(self)
    image = self.ec2_backend.amis[result.result["ImageId"]]
    image.root_device_name = self._get_param("RootDeviceName") or image.root_device_name
    image.architecture = self._get_param("Architecture") or image.architecture
    image.virtualization_type = self._get_param("VirtualizationType") or image.virtualization_type
    image.coffer_block_device_mappings = [
        {
            "DeviceName": m["DeviceName"],
            "Ebs": {
                "SnapshotId": m["Ebs"].get("SnapshotId"),
                "VolumeSize": int(m["Ebs"]["VolumeSize"]) if m["Ebs"].get("VolumeSize") else None,
                "VolumeType": m["Ebs"].get("VolumeType"),
                "DeleteOnTermination": str(m["Ebs"].get("DeleteOnTermination", True)).lower() == "true",
            },
        }
        for m in mappings
        if m.get("Ebs")
    ]
    return result


AmisResponse.register_image = _register_image_from_snapshots

_backend_run_instances = EC2Backend.run_instances


# AWS: an instance launched without BlockDeviceMappings gets the AMI's block
# device mapping: a volume per mapped snapshot, on its device (EC2 user guide,
# "Block device mappings for volumes on Amazon EC2 instances"). moto gives
# every such instance one blank 8 GiB volume on /dev/sda1.
def _run_instances_with_image_mappings(self, image_id, count, user_data, security_group_names, **kwargs):
    image = self.amis.get(image_id)
    mappings = getattr(image, "coffer_block_device_mappings", None)
    if mappings and "block_device_mappings" not in kwargs:
        kwargs["block_device_mappings"] = mappings
    return _backend_run_instances(self, image_id, count, user_data, security_group_names, **kwargs)


EC2Backend.run_instances = _run_instances_with_image_mappings


from moto.ec2.responses.elastic_block_store import ElasticBlockStore

_copy_snapshot = ElasticBlockStore.copy_snapshot


# AWS: CopySnapshot with Encrypted=true makes an encrypted copy of an
# unencrypted snapshot (under KmsKeyId, or the account's default EBS key).
# moto copies the source's Encrypted flag and ignores the parameter.
def _copy_snapshot_honouring_encrypted(self):
    result = _copy_snapshot(self)
    if self._get_bool_param("Encrypted", False):
        self.ec2_backend.get_snapshot(result.result["SnapshotId"]).encrypted = True
    return result


ElasticBlockStore.copy_snapshot = _copy_snapshot_honouring_encrypted


from moto.ec2.exceptions import EC2ClientError  # noqa: E402

_detach_volume = EC2Backend.detach_volume


# AWS: "If an EBS volume is the root device of an instance, you must stop the
# instance before you can detach the volume" (EC2 user guide, "Detach an Amazon
# EBS volume from an instance"); DetachVolume answers IncorrectState otherwise.
# moto detaches the root volume of a running instance.
def _detach_root_volume_only_when_stopped(self, volume_id, instance_id, device_path):
    attachment = self.get_volume(volume_id).attachment
    if attachment is not None:
        instance = attachment.instance
        device = device_path or attachment.device
        if device == instance.root_device_name and instance.state != "stopped":
            raise EC2ClientError(
                "IncorrectState",
                f"Unable to detach root volume '{volume_id}' from instance '{instance.id}': it is {instance.state}",
            )
    return _detach_volume(self, volume_id, instance_id, device_path)


EC2Backend.detach_volume = _detach_root_volume_only_when_stopped


# --- EBS direct APIs -------------------------------------------------------
#
# moto keeps the EBS direct APIs (StartSnapshot, PutSnapshotBlock, ...) in a
# backend of their own that only knows snapshots made by StartSnapshot, and
# EC2 volumes hold no data at all. On AWS every EBS snapshot can be read block
# by block, whoever made it. The patches below give each EC2 volume a block
# store (written by tests through the `/_coffer/` endpoint at the end of this
# file), copy it into snapshots and back into volumes, and make the EBS
# backend see every EC2 snapshot.

import base64
import hashlib
import json
from urllib.parse import parse_qs

from moto.core.exceptions import JsonRESTError
from moto.ebs.models import EBSBackend as EbsDirectBackend
from moto.ebs.models import EBSSnapshot, ebs_backends
from moto.ebs.responses import EBSResponse
from moto.ec2.models import ec2_backends
from moto.ec2.models.elastic_block_store import EBSBackend as Ec2VolumeBackend

EBS_BLOCK_SIZE = 512 * 1024


class _EbsError(JsonRESTError):
    """An EBS direct API error as AWS sends it: `Message` and `Reason`."""

    def __init__(self, status, error_type, message, reason=None):
        super().__init__(error_type, message)
        self.code = status
        body = {"__type": error_type, "Message": message}
        if reason:
            body["Reason"] = reason
        self.description = json.dumps(body)


def _snapshot_not_found(snapshot_id):
    return _EbsError(
        404,
        "ResourceNotFoundException",
        f"The snapshot '{snapshot_id}' does not exist.",
        "SNAPSHOT_NOT_FOUND",
    )


def _validation(message, reason):
    return _EbsError(400, "ValidationException", message, reason)


# Snapshots share their blocks' bytes objects with the volume they were taken
# of, so each block's checksum is computed once, not once per snapshot (AWS
# answers list calls without touching the data; hashing 600 MB in Python per
# snapshot made the emulator, not the client, the cost of an incremental).
# The bytes object is kept with its checksum so its id stays unique.
_checksums = {}


def _checksum(data):
    cached = _checksums.get(id(data))
    if cached is not None and cached[0] is data:
        return cached[1]
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    _checksums[id(data)] = (data, checksum)
    return checksum


def _volume_blocks(volume):
    """The volume's contents: block index -> 512 KiB of bytes (absent = zeros)."""
    return volume.__dict__.setdefault("coffer_blocks", {})


def _snapshot_blocks(ec2_backend, snapshot):
    """A snapshot's contents, wherever moto keeps them: the EBS direct
    backend's blocks for StartSnapshot snapshots, else the copy taken of the
    volume when the snapshot was made."""
    direct = ebs_backends[ec2_backend.account_id][ec2_backend.region_name].snapshots.get(snapshot.id)
    if direct is not None:
        return {int(index): bytes(block.block_data) for index, block in direct.blocks.items()}
    return dict(getattr(snapshot, "coffer_blocks", {}))


# AWS: a snapshot holds the data its volume held when it was made
# (CreateSnapshot, and CreateSnapshots through it). moto's volumes hold none.
_create_snapshot = Ec2VolumeBackend.create_snapshot


def _create_snapshot_of_contents(self, volume_id, *args, **kwargs):
    snapshot = _create_snapshot(self, volume_id, *args, **kwargs)
    snapshot.coffer_blocks = dict(_volume_blocks(self.get_volume(volume_id)))
    return snapshot


Ec2VolumeBackend.create_snapshot = _create_snapshot_of_contents

# AWS: CopySnapshot copies the data (to another region too).
_copy_snapshot_model = Ec2VolumeBackend.copy_snapshot


def _copy_snapshot_with_contents(self, source_snapshot_id, source_region, *args, **kwargs):
    copy = _copy_snapshot_model(self, source_snapshot_id, source_region, *args, **kwargs)
    source_backend = ec2_backends[self.account_id][source_region]
    copy.coffer_blocks = _snapshot_blocks(source_backend, source_backend.get_snapshot(source_snapshot_id))
    return copy


Ec2VolumeBackend.copy_snapshot = _copy_snapshot_with_contents

# AWS: a volume created from a snapshot (CreateVolume, RunInstances block
# device mappings) starts with the snapshot's data.
_create_volume = Ec2VolumeBackend.create_volume


def _create_volume_from_contents(self, *args, **kwargs):
    volume = _create_volume(self, *args, **kwargs)
    if volume.snapshot_id:
        _volume_blocks(volume).update(_snapshot_blocks(self, self.get_snapshot(volume.snapshot_id)))
    return volume


Ec2VolumeBackend.create_volume = _create_volume_from_contents

# AWS: the EBS direct APIs use 512 KiB blocks; moto says 512 bytes.
_ebs_snapshot_init = EBSSnapshot.__init__


def _ebs_snapshot_init_512k(self, *args, **kwargs):
    _ebs_snapshot_init(self, *args, **kwargs)
    self.block_size = EBS_BLOCK_SIZE


EBSSnapshot.__init__ = _ebs_snapshot_init_512k


def _direct_snapshot(self, snapshot_id):
    """The EBS direct APIs' view of any EC2 snapshot.

    AWS: every snapshot, however it was made, can be listed and read through
    the EBS direct APIs, and a deleted one is gone for them too (moto answers
    KeyError / HTTP 500 for snapshots StartSnapshot did not make, and keeps
    serving deleted ones).
    """
    ec2_snapshot = self.ec2_backend.snapshots.get(snapshot_id)
    if ec2_snapshot is None:
        self.snapshots.pop(snapshot_id, None)
        raise _snapshot_not_found(snapshot_id)
    snapshot = self.snapshots.get(snapshot_id)
    if snapshot is None:
        snapshot = EBSSnapshot(account_id=self.account_id, snapshot=ec2_snapshot)
        snapshot.status = "completed"
        for index, data in getattr(ec2_snapshot, "coffer_blocks", {}).items():
            snapshot.put_block(index, data, _checksum(data), "SHA256", str(len(data)))
        # Requests run in threads: the first one to get here wins, so every
        # caller sees the same block tokens.
        snapshot = self.snapshots.setdefault(snapshot_id, snapshot)
    return snapshot


EbsDirectBackend.coffer_snapshot = _direct_snapshot


def _complete_snapshot(self, snapshot_id):
    self.coffer_snapshot(snapshot_id).status = "completed"
    self.ec2_backend.get_snapshot(snapshot_id).status = "completed"
    return {"Status": "completed"}


EbsDirectBackend.complete_snapshot = _complete_snapshot


# AWS: PutSnapshotBlock takes whole 512 KiB blocks and rejects data whose
# SHA-256 checksum differs from the one sent (moto stores anything).
def _put_snapshot_block(self, snapshot_id, block_index, block_data, checksum, checksum_algorithm, data_length):
    snapshot = self.coffer_snapshot(snapshot_id)
    if snapshot.status != "pending":
        raise _validation(f"The snapshot '{snapshot_id}' is not pending.", "INVALID_SNAPSHOT_ID")
    data = bytes(block_data)
    if len(data) != EBS_BLOCK_SIZE or str(data_length) != str(EBS_BLOCK_SIZE):
        raise _validation(
            f"The block data length must be {EBS_BLOCK_SIZE} bytes (got {len(data)}, DataLength {data_length}).",
            "INVALID_PARAMETER_VALUE",
        )
    if checksum_algorithm != "SHA256" or checksum != _checksum(data):
        raise _validation("The checksum of the block data does not match.", "INVALID_PARAMETER_VALUE")
    # Indexed by number (moto keys blocks by the URL's string).
    snapshot.put_block(int(block_index), data, checksum, checksum_algorithm, str(len(data)))
    return checksum, checksum_algorithm


EbsDirectBackend.put_snapshot_block = _put_snapshot_block


def _query(response, name):
    # Not response.querystring: moto fills that with the headers when the
    # URL has no query.
    values = parse_qs(response.parsed_url.query).get(name)
    return values[0] if values else None


def _page(response, indexes):
    """AWS: list calls return blocks in index order, from StartingBlockIndex,
    at most MaxResults (100-10000, default 10000) a page, with a NextToken
    for the rest. moto returns one unsorted page."""
    token = _query(response, "pageToken")
    start = int(token) if token else int(_query(response, "startingBlockIndex") or 0)
    limit = min(max(int(_query(response, "maxResults") or 10000), 100), 10000)
    selected = [i for i in sorted(indexes) if i >= start]
    page, rest = selected[:limit], selected[limit:]
    return page, (str(rest[0]) if rest else None)


def _list_snapshot_blocks(self):
    snapshot = self.ebs_backend.coffer_snapshot(self.path.split("/")[-2])
    page, next_token = _page(self, snapshot.blocks)
    body = {
        "Blocks": [{"BlockIndex": i, "BlockToken": snapshot.blocks[i].block_token} for i in page],
        "VolumeSize": snapshot.volume_size,
        "BlockSize": snapshot.block_size,
    }
    if next_token:
        body["NextToken"] = next_token
    return json.dumps(body)


EBSResponse.list_snapshot_blocks = _list_snapshot_blocks


# AWS: ListChangedBlocks lists every block that differs, including blocks
# that hold data only in the second snapshot (FirstBlockToken absent); moto
# only walks the first snapshot's blocks. Still unlike AWS: a block counts as
# changed when its bytes differ, where AWS lists every block written between
# the two snapshots, same bytes or not.
def _list_changed_blocks(self):
    first = self.ebs_backend.coffer_snapshot(_query(self, "firstSnapshotId"))
    second = self.ebs_backend.coffer_snapshot(self.path.split("/")[-2])
    changed = set()
    for index in set(first.blocks) | set(second.blocks):
        a, b = first.blocks.get(index), second.blocks.get(index)
        # Equal SHA-256 checksums: equal bytes (cheaper than comparing them).
        if a is None or b is None or a.checksum != b.checksum:
            changed.add(index)
    page, next_token = _page(self, changed)
    blocks = []
    for index in page:
        entry = {"BlockIndex": index}
        if index in first.blocks:
            entry["FirstBlockToken"] = first.blocks[index].block_token
        if index in second.blocks:
            entry["SecondBlockToken"] = second.blocks[index].block_token
        blocks.append(entry)
    body = {"ChangedBlocks": blocks, "VolumeSize": second.volume_size, "BlockSize": second.block_size}
    if next_token:
        body["NextToken"] = next_token
    return json.dumps(body)


EBSResponse.list_changed_blocks = _list_changed_blocks


# AWS: GetSnapshotBlock needs the block token a list call gave for that
# block of that snapshot, and answers ValidationException otherwise (moto
# ignores the token and answers KeyError / HTTP 500 for a block not held).
def _get_snapshot_block(self):
    parts = self.path.split("/")
    snapshot = self.ebs_backend.coffer_snapshot(parts[-3])
    block = snapshot.blocks.get(int(parts[-1]))
    if block is None or block.block_token != _query(self, "blockToken"):
        raise _validation("The block token is not valid for this block.", "INVALID_BLOCK_TOKEN")
    headers = {
        "x-amz-Checksum": block.checksum,
        "x-amz-Checksum-Algorithm": block.checksum_algorithm,
        "x-amz-Data-Length": str(len(bytes(block.block_data))),
    }
    return 200, headers, bytes(block.block_data)


EBSResponse.get_snapshot_block = _get_snapshot_block

_start_snapshot_response = EBSResponse.start_snapshot


# AWS: StartSnapshot makes a snapshot and nothing else; it is pending in EC2
# until CompleteSnapshot; with Encrypted=true it is encrypted under KmsKeyArn,
# or the account's default EBS key. moto also makes a volume (visible to
# DescribeVolumes), shows the snapshot completed at once, and ignores
# Encrypted and KmsKeyArn.
def _start_snapshot(self):
    result = json.loads(_start_snapshot_response(self))
    params = json.loads(self.body or b"{}")
    ec2 = self.ebs_backend.ec2_backend
    ec2_snapshot = ec2.get_snapshot(result["SnapshotId"])
    # The snapshot keeps its reference to the volume object (its size).
    ec2.volumes.pop(ec2_snapshot.volume.id, None)
    ec2_snapshot.status = "pending"
    if params.get("Encrypted") or params.get("KmsKeyArn"):
        key = params.get("KmsKeyArn") or ec2.default_kms_key_id or ec2._create_default_encryption_key()
        ec2_snapshot.encrypted = True
        ec2_snapshot.kms_key_id = key
        result["KmsKeyArn"] = key
        result["SseType"] = "sse-ebs"
    else:
        result["SseType"] = "none"
    return json.dumps(result)


EBSResponse.start_snapshot = _start_snapshot


# --- S3 ----------------------------------------------------------------------

from moto.core.serialize import S3Serializer

_s3_result_to_response = S3Serializer._serialized_result_to_response


# AWS: CompleteMultipartUpload answers with a <CompleteMultipartUploadResult>
# document. moto's generic serializer names the root
# <CompleteMultipartUploadResponse>, which SDKs that check the root element
# (the Rust SDK does) reject as unparseable, though the upload did complete.
def _s3_result_with_aws_root(self, resp, result, shape, serialized_result):
    resp = _s3_result_to_response(self, resp, result, shape, serialized_result)
    if self.operation_model.name == "CompleteMultipartUpload" and isinstance(resp.get("body"), str):
        resp["body"] = resp["body"].replace("CompleteMultipartUploadResponse", "CompleteMultipartUploadResult")
    return resp


S3Serializer._serialized_result_to_response = _s3_result_with_aws_root


# --- Test-only endpoint: volume contents -----------------------------------
#
# Not an AWS API: stands in for an instance writing to its disks.
#   GET    /_coffer/version   "moto <version> <python executable>"
#   PUT    /_coffer/volumes/<vol-id>/blocks/<index>   body: the block's bytes
#          (at most 512 KiB; zero-padded), as if written by the instance
#   DELETE /_coffer/volumes/<vol-id>/blocks/<index>   the block holds no data
#          (reads as zeros, and no later snapshot lists it)

from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from werkzeug.wrappers import Request, Response


def _find_volume(volume_id):
    for _, _, backend in ec2_backends.iter_backends():
        volume = backend.volumes.get(volume_id)
        if volume is not None:
            return volume
    return None


# --- VPC and IAM: what preflight reads ------------------------------------

from moto.ec2.models.vpcs import VPCBackend  # noqa: E402
from moto.iam.access_control import IAMPolicy, PermissionResult  # noqa: E402
from moto.iam.responses import IamResponse  # noqa: E402

_create_default_vpc = VPCBackend.create_default_vpc


# AWS: a default VPC comes with an internet gateway and a route in its main
# route table sending 0.0.0.0/0 to it (VPC user guide, "Default VPCs",
# default VPC components). moto makes the VPC and its subnets only.
def _create_default_vpc_with_internet_gateway(self):
    vpc = _create_default_vpc(self)
    igw = self.create_internet_gateway()
    self.attach_internet_gateway(igw.id, vpc.id)
    main = next(t for t in self.route_tables.values() if t.vpc_id == vpc.id and t.main_association_id)
    self.create_route(main.id, "0.0.0.0/0", gateway_id=igw.id)
    return vpc


VPCBackend.create_default_vpc = _create_default_vpc_with_internet_gateway


# AWS: SimulatePrincipalPolicy evaluates the identity policies of a user or
# role (inline and attached) for each action and resource, answering
# allowed, explicitDeny (a Deny matched) or implicitDeny (IAM API reference,
# SimulatePrincipalPolicy). moto lacks the call; its own policy evaluator
# (the one behind its opt-in access control) judges the statements here.
# Roles only, without conditions' context keys: what Coffer asks.
def _simulate_principal_policy(self):
    source = self._get_param("PolicySourceArn")
    actions = self._get_param("ActionNames", [])
    resources = self._get_param("ResourceArns") or ["*"]
    role = self.backend.get_role_by_arn(source)
    policies = [IAMPolicy(document) for document in role.policies.values()]
    policies += [IAMPolicy(policy) for policy in role.managed_policies.values()]
    results = []
    for action in actions:
        for resource in resources:
            verdicts = [policy.is_action_permitted(action, resource) for policy in policies]
            if PermissionResult.DENIED in verdicts:
                decision = "explicitDeny"
            elif PermissionResult.PERMITTED in verdicts:
                decision = "allowed"
            else:
                decision = "implicitDeny"
            results.append({"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": decision})
    return ActionResult({"EvaluationResults": results, "IsTruncated": False})


IamResponse.simulate_principal_policy = _simulate_principal_policy


def _coffer_test_api(environ, start_response):
    request = Request(environ)
    parts = request.path.strip("/").split("/")
    if parts == ["_coffer", "version"]:
        # Which moto answers, and from which Python: tests prove it is the pinned one.
        response = Response(f"moto {moto.__version__} {sys.executable}\n", status=200)
    elif len(parts) != 5 or parts[1] != "volumes" or parts[3] != "blocks" or not parts[4].isdigit():
        response = Response("unknown test endpoint\n", status=404)
    elif (volume := _find_volume(parts[2])) is None:
        response = Response(f"no volume {parts[2]}\n", status=404)
    elif request.method == "PUT":
        data = request.get_data()
        if len(data) > EBS_BLOCK_SIZE:
            response = Response(f"a block is at most {EBS_BLOCK_SIZE} bytes\n", status=400)
        else:
            _volume_blocks(volume)[int(parts[4])] = data.ljust(EBS_BLOCK_SIZE, b"\0")
            response = Response("", status=204)
    elif request.method == "DELETE":
        _volume_blocks(volume).pop(int(parts[4]), None)
        response = Response("", status=204)
    elif request.method == "GET":
        # What the instance using the volume would read: 204 for a block never written.
        data = _volume_blocks(volume).get(int(parts[4]))
        response = Response(data, status=200) if data is not None else Response("", status=204)
    else:
        response = Response("GET, PUT or DELETE\n", status=405)
    return response(environ, start_response)


_dispatch = DomainDispatcherApplication.__call__


def _dispatch_with_test_api(self, environ, start_response):
    if environ.get("PATH_INFO", "").startswith("/_coffer/"):
        return _coffer_test_api(environ, start_response)
    return _dispatch(self, environ, start_response)


DomainDispatcherApplication.__call__ = _dispatch_with_test_api


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
