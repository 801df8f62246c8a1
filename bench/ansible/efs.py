"""EFS for the Ansible peer (see seed003.yml): create (idempotent by CreationToken) a file
system and one mount target per subnet. argv: endpoint name sg subnet..."""
import sys

import boto3

endpoint, name, sg, *subnets = sys.argv[1:]
efs = boto3.client("efs", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
found = efs.describe_file_systems(CreationToken=name)["FileSystems"]
fs = found[0] if found else efs.create_file_system(
    CreationToken=name, PerformanceMode="generalPurpose", Encrypted=True,
    Tags=[{"Key": "Name", "Value": name}])
fs_id = fs["FileSystemId"]
have = {m["SubnetId"] for m in efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"]}
for s in subnets:
    if s not in have:
        efs.create_mount_target(FileSystemId=fs_id, SubnetId=s, SecurityGroups=[sg])
print(fs_id)
