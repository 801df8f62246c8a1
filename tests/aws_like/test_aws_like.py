"""Checks of the aws_like layer itself, through boto3 (whose error parsing follows each
protocol as the Rust SDK's does) against moto behind the layer in this process.

Time is a fake clock the tests move, so nothing sleeps. Run with
`python3 -m unittest discover -s tests/aws_like` (the cargo test `aws_like_layer_checks`
does).
"""

import json
import os
import threading
import unittest
import urllib.request

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_CONFIG_FILE"] = "/dev/null"
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

import aws_like  # noqa: E402

AMI = "ami-1e749f67"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class LayerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.clock = Clock()
        cls.layer = aws_like.Layer(aws_like.moto_app(), clock=cls.clock)
        cls.server = make_server("127.0.0.1", 0, cls.layer, threaded=True)
        cls.url = f"http://127.0.0.1:{cls.server.server_port}"
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()

    def setUp(self):
        self.layer.configure(dict(aws_like.DEFAULTS))
        urllib.request.urlopen(urllib.request.Request(
            f"{self.url}/moto-api/reset", method="POST")).read()

    def client(self, service):
        # No retries: the test sees each answer of the layer as it is.
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))

    def code(self, call):
        with self.assertRaises(ClientError) as e:
            call()
        return e.exception.response["Error"]["Code"], \
            e.exception.response["ResponseMetadata"]["HTTPStatusCode"]

    def network(self):
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        a = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24",
                              AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
        b = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.2.0/24",
                              AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName="g", Description="g", VpcId=vpc)["GroupId"]
        return vpc, a, b, sg

    def test_new_ids_are_not_found_for_the_configured_time(self):
        self.layer.configure({"not_found_secs": 3})
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        self.assertEqual(self.code(lambda: ec2.describe_vpcs(VpcIds=[vpc])),
                         ("InvalidVpcID.NotFound", 400))
        self.assertEqual(self.code(lambda: ec2.create_security_group(
            GroupName="g", Description="g", VpcId=vpc)), ("InvalidVpcID.NotFound", 400))
        # A list by filter is no lookup by id: it answers as moto does.
        ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
        self.clock.now += 3
        sg = ec2.create_security_group(GroupName="g", Description="g", VpcId=vpc)["GroupId"]
        self.assertEqual(self.code(lambda: ec2.authorize_security_group_ingress(
            GroupId=sg, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                                        "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])),
            ("InvalidGroup.NotFound", 400))
        self.clock.now += 3
        self.assertEqual(len(ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"]), 1)

    def test_not_found_codes_follow_each_service(self):
        _, a, b, sg = self.network()
        self.layer.configure({"not_found_secs": 3})
        elb, rds, efs = self.client("elbv2"), self.client("rds"), self.client("efs")
        tg = elb.create_target_group(Name="t", Protocol="HTTP", Port=80,
                                     VpcId=self.client("ec2").describe_vpcs()["Vpcs"][-1]["VpcId"]
                                     )["TargetGroups"][0]["TargetGroupArn"]
        self.assertEqual(self.code(lambda: elb.describe_target_groups(TargetGroupArns=[tg])),
                         ("TargetGroupNotFound", 400))
        rds.create_db_instance(DBInstanceIdentifier="d", DBInstanceClass="db.t3.micro",
                               Engine="postgres", MasterUsername="u",
                               MasterUserPassword="password1", AllocatedStorage=20)
        self.assertEqual(self.code(lambda: rds.describe_db_instances(DBInstanceIdentifier="d")),
                         ("DBInstanceNotFound", 404))
        fs = efs.create_file_system(CreationToken="t")["FileSystemId"]
        self.assertEqual(self.code(lambda: efs.describe_file_systems(FileSystemId=fs)),
                         ("FileSystemNotFound", 404))
        self.clock.now += 3
        mt = efs.create_mount_target(FileSystemId=fs, SubnetId=a)["MountTargetId"]
        self.assertEqual(self.code(lambda: efs.describe_mount_targets(MountTargetId=mt)),
                         ("MountTargetNotFound", 404))
        self.assertGreaterEqual(json.loads(urllib.request.urlopen(
            f"{self.url}/_aws_like/stats").read())["not_found"], 4)

    def test_a_db_and_its_subnet_group_of_one_name_are_two_ids(self):
        # hactl names both `hactl-<stack>-db`: a fresh DB instance must not make the (settled)
        # subnet group of the same name NotFound, nor answer for it with the instance's code.
        _, a, b, _ = self.network()
        self.layer.configure({"not_found_secs": 3})
        rds = self.client("rds")
        rds.create_db_subnet_group(DBSubnetGroupName="d", DBSubnetGroupDescription="d",
                                   SubnetIds=[a, b])
        self.assertEqual(self.code(lambda: rds.describe_db_subnet_groups(DBSubnetGroupName="d")),
                         ("DBSubnetGroupNotFoundFault", 404))
        self.clock.now += 3
        rds.create_db_instance(DBInstanceIdentifier="d", DBInstanceClass="db.t3.micro",
                               Engine="postgres", MasterUsername="u",
                               MasterUserPassword="password1", AllocatedStorage=20,
                               DBSubnetGroupName="d")
        groups = rds.describe_db_subnet_groups(DBSubnetGroupName="d")["DBSubnetGroups"]
        self.assertEqual(len(groups), 1)
        self.assertEqual(self.code(lambda: rds.describe_db_instances(DBInstanceIdentifier="d")),
                         ("DBInstanceNotFound", 404))

    def test_throttling_has_each_protocols_shape(self):
        self.layer.configure({"throttle_share": 1.0})
        self.assertEqual(self.code(lambda: self.client("ec2").describe_vpcs()),
                         ("RequestLimitExceeded", 503))
        self.assertEqual(self.code(lambda: self.client("elbv2").describe_load_balancers()),
                         ("Throttling", 400))
        self.assertEqual(self.code(lambda: self.client("rds").describe_db_instances()),
                         ("Throttling", 400))
        self.assertEqual(self.code(lambda: self.client("efs").describe_file_systems()),
                         ("ThrottlingException", 429))

    def test_throttling_share_and_actions(self):
        self.layer.configure({"throttle_share": 0.3, "seed": 7,
                              "throttle_actions": ["DescribeVpcs"]})
        ec2 = self.client("ec2")
        throttled = 0
        for _ in range(200):
            try:
                ec2.describe_vpcs()
            except ClientError:
                throttled += 1
        self.assertTrue(40 <= throttled <= 80, throttled)
        for _ in range(20):
            ec2.describe_subnets()  # not in throttle_actions: never throttled

    def test_instances_are_pending_then_running_or_terminated(self):
        _, a, _, _ = self.network()
        self.layer.configure({"instance_pending_secs": 2})
        ec2 = self.client("ec2")
        i = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=a,
                              InstanceType="t2.micro")["Instances"][0]["InstanceId"]

        def state():
            r = ec2.describe_instances(InstanceIds=[i])["Reservations"][0]["Instances"][0]
            return r["State"]["Name"], r["State"]["Code"]
        self.assertEqual(state(), ("pending", 0))
        self.clock.now += 2
        self.assertEqual(state(), ("running", 16))
        self.layer.configure({"instance_final_state": "terminated"})
        self.assertEqual(state(), ("terminated", 48))

    def test_load_balancers_provision_then_become_active(self):
        _, a, b, sg = self.network()
        self.layer.configure({"lb_ready_secs": 5})
        elb = self.client("elbv2")
        lb = elb.create_load_balancer(Name="l", Subnets=[a, b], SecurityGroups=[sg])
        arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
        self.assertEqual(lb["LoadBalancers"][0]["State"]["Code"], "provisioning")

        def code():
            return elb.describe_load_balancers(LoadBalancerArns=[arn])[
                "LoadBalancers"][0]["State"]["Code"]
        self.clock.now += 4
        self.assertEqual(code(), "provisioning")
        self.clock.now += 1
        self.assertEqual(code(), "active")

    def test_db_instances_have_no_endpoint_until_available(self):
        self.layer.configure({"rds_ready_secs": 20})
        rds = self.client("rds")

        def db():
            return rds.describe_db_instances(DBInstanceIdentifier="d")["DBInstances"][0]
        created = rds.create_db_instance(
            DBInstanceIdentifier="d", DBInstanceClass="db.t3.micro", Engine="postgres",
            MasterUsername="u", MasterUserPassword="password1", AllocatedStorage=20,
            Port=5432)["DBInstance"]
        self.assertEqual(created["DBInstanceStatus"], "creating")
        self.assertNotIn("Endpoint", created)
        d = db()
        self.assertEqual((d["DBInstanceStatus"], d.get("DbInstancePort")), ("creating", 0))
        self.assertNotIn("Endpoint", d)
        self.clock.now += 16
        self.assertEqual(db()["DBInstanceStatus"], "backing-up")
        self.clock.now += 4
        d = db()
        self.assertEqual(d["DBInstanceStatus"], "available")
        self.assertEqual(d["Endpoint"]["Port"], 5432)
        self.layer.configure({"rds_final_status": "incompatible-parameters"})
        self.assertEqual(db()["DBInstanceStatus"], "incompatible-parameters")
        self.assertNotIn("Endpoint", db())

    def test_db_port_changes_move_the_endpoint(self):
        rds = self.client("rds")
        rds.create_db_instance(
            DBInstanceIdentifier="d", DBInstanceClass="db.t3.micro", Engine="postgres",
            MasterUsername="u", MasterUserPassword="password1", AllocatedStorage=20)
        rds.modify_db_instance(DBInstanceIdentifier="d", DBPortNumber=5433,
                               ApplyImmediately=True)
        d = rds.describe_db_instances(DBInstanceIdentifier="d")["DBInstances"][0]
        self.assertEqual(d["Endpoint"]["Port"], 5433)

    def test_efs_mount_targets_are_creating_then_available(self):
        _, a, _, _ = self.network()
        self.layer.configure({"efs_ready_secs": 3})
        efs = self.client("efs")
        fs = efs.create_file_system(CreationToken="t")["FileSystemId"]
        self.assertEqual(efs.describe_file_systems(FileSystemId=fs)["FileSystems"][0][
            "LifeCycleState"], "creating")
        mt = efs.create_mount_target(FileSystemId=fs, SubnetId=a)
        self.assertEqual(mt["LifeCycleState"], "creating")
        self.clock.now += 3
        self.assertEqual(efs.describe_mount_targets(FileSystemId=fs)["MountTargets"][0][
            "LifeCycleState"], "available")

    def test_balancer_enis_linger_after_its_delete(self):
        vpc, a, b, sg = self.network()
        self.layer.configure({"eni_linger_secs": 5})
        elb, ec2 = self.client("elbv2"), self.client("ec2")
        arn = elb.create_load_balancer(Name="l", Subnets=[a, b], SecurityGroups=[sg])[
            "LoadBalancers"][0]["LoadBalancerArn"]
        elb.delete_load_balancer(LoadBalancerArn=arn)
        self.assertEqual(self.code(lambda: ec2.delete_security_group(GroupId=sg)),
                         ("DependencyViolation", 400))
        self.assertEqual(self.code(lambda: ec2.delete_subnet(SubnetId=a)),
                         ("DependencyViolation", 400))
        self.clock.now += 5
        ec2.delete_security_group(GroupId=sg)
        ec2.delete_subnet(SubnetId=a)

    def test_target_group_in_use_by_a_listener_cannot_be_deleted(self):
        vpc, a, b, sg = self.network()
        elb = self.client("elbv2")
        lb = elb.create_load_balancer(Name="l", Subnets=[a, b])["LoadBalancers"][0][
            "LoadBalancerArn"]
        tg = elb.create_target_group(Name="t", Protocol="HTTP", Port=80, VpcId=vpc)[
            "TargetGroups"][0]["TargetGroupArn"]
        listener = elb.create_listener(
            LoadBalancerArn=lb, Port=80, Protocol="HTTP",
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])["Listeners"][0]
        self.assertEqual(self.code(lambda: elb.delete_target_group(TargetGroupArn=tg)),
                         ("ResourceInUse", 400))
        elb.delete_listener(ListenerArn=listener["ListenerArn"])
        elb.delete_target_group(TargetGroupArn=tg)

    def test_deregistered_targets_drain_for_the_delay_and_new_ones_start_initial(self):
        vpc, a, _, _ = self.network()
        self.layer.configure({"target_draining": True, "target_initial_secs": 4})
        ec2, elb = self.client("ec2"), self.client("elbv2")
        ids = [i["InstanceId"] for i in ec2.run_instances(
            ImageId=AMI, MinCount=2, MaxCount=2, SubnetId=a, InstanceType="t2.micro")["Instances"]]
        tg = elb.create_target_group(Name="t", Protocol="HTTP", Port=80, VpcId=vpc)[
            "TargetGroups"][0]["TargetGroupArn"]
        elb.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "5"}])
        elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i} for i in ids])

        def states():
            return {d["Target"]["Id"]: (d["TargetHealth"]["State"],
                                        d["TargetHealth"].get("Reason"))
                    for d in elb.describe_target_health(TargetGroupArn=tg)[
                        "TargetHealthDescriptions"]}
        self.assertEqual(states(), {i: ("initial", "Elb.RegistrationInProgress") for i in ids})
        self.clock.now += 4
        self.assertEqual(states(), {i: ("healthy", None) for i in ids})
        elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": ids[0]}])
        self.assertEqual(states(), {ids[0]: ("draining", "Target.DeregistrationInProgress"),
                                    ids[1]: ("healthy", None)})
        self.clock.now += 5
        self.assertEqual(states(), {ids[1]: ("healthy", None)}, "gone after the delay")
        elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": ids[0]}])
        self.assertEqual(states()[ids[0]], ("initial", "Elb.RegistrationInProgress"))

    def test_control_endpoint_rejects_unknown_settings(self):
        req = urllib.request.Request(f"{self.url}/_aws_like/config", method="POST",
                                     data=json.dumps({"throttle": 1}).encode())
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req)
        self.assertEqual(e.exception.code, 400)
        req = urllib.request.Request(f"{self.url}/_aws_like/config", method="POST",
                                     data=json.dumps({"lb_ready_secs": 7}).encode())
        self.assertEqual(json.loads(urllib.request.urlopen(req).read())["lb_ready_secs"], 7)


if __name__ == "__main__":
    unittest.main()
