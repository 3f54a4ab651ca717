"""moto's server with the fixes our tests need where moto differs from AWS.

Run as `python moto_server.py -H 127.0.0.1 -p PORT` (moto_server's own
arguments). Each patch names the AWS behaviour it restores; product code never
special-cases the emulator.
"""

import sys

from moto.ec2.models.launch_templates import LaunchTemplate
from moto.server import main


def _current_launch_template_tags(self):
    return self.get_tags()


# AWS: DescribeLaunchTemplates returns a template's current tags, so CreateTags
# and DeleteTags on an lt- id show up there. moto copies the tags into the
# template once, at creation, and keeps answering with that copy.
LaunchTemplate.tags = property(_current_launch_template_tags, lambda self, value: None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
