"""moto's server with the fixes our tests need where moto differs from AWS.

Run as `python moto_server.py -H 127.0.0.1 -p PORT` (moto_server's own
arguments). Each patch names the AWS behaviour it restores; product code never
special-cases the emulator.
"""

import sys

from moto.core.responses import ActionResult
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
