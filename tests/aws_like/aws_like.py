"""aws_like: a fault-and-latency layer in front of moto, so that the tests meet AWS as it behaves.

moto answers at once and forgives (see /docs/testing-aws.md and the notes on moto); real AWS is
eventually consistent, throttles, and takes minutes to make a database. This module wraps moto's
own WSGI application (the one `moto_server` serves) in a middleware that imitates what AWS does
and moto does not, each behaviour off until a test turns it on:

- `not_found_secs`: an id the layer saw created (EC2 instance, VPC, subnet, security group, route
  table, internet gateway; ELBv2 load balancer, target group, listener; RDS instance and subnet
  group; EFS file system and mount target) is answered with the service's NotFound error
  (InvalidInstanceID.NotFound, InvalidGroup.NotFound, TargetGroupNotFound, DBInstanceNotFound,
  MountTargetNotFound, ...) by any later request *to the same service* that names it, for this
  long after its create. Filters (`Filter.N.*`) are not ids: a list by filter answers as moto does.
- `throttle_share`: this share of the calls to EC2, ELBv2, RDS and EFS (or only to the actions in
  `throttle_actions`) is answered with the service's throttling error in its protocol's shape:
  EC2 `RequestLimitExceeded` (HTTP 503, EC2 XML), ELBv2/RDS `Throttling` (HTTP 400, query
  ErrorResponse), EFS `ThrottlingException` (HTTP 429, JSON + `x-amzn-ErrorType`).
- `instance_pending_secs` / `instance_final_state`: DescribeInstances shows a new instance
  `pending` (code 0), then `instance_final_state` (`running` or, to imitate a launch that fails,
  `terminated`).
- `lb_ready_secs` / `lb_final_state`: a new load balancer is `provisioning`, then
  `lb_final_state` (`active`, or `failed`).
- `efs_ready_secs`: new file systems and mount targets are `creating`, then `available`.
- `rds_ready_secs` / `rds_final_status`: a new DB instance is `creating` for the first three
  quarters of the time, `backing-up` for the last quarter, then `rds_final_status` (`available`,
  or `failed`, `incompatible-parameters`, ...). Until it is `available` it has no `Endpoint` and
  its `DbInstancePort` is 0, as on AWS.
- `eni_linger_secs`: after DeleteLoadBalancer, DeleteSecurityGroup and DeleteSubnet of the
  balancer's security groups and subnets answer `DependencyViolation` for this long (the
  balancer's network interfaces linger on AWS).
- `target_draining`: after DeregisterTargets, DescribeTargetHealth (without `Targets`) still
  lists each deregistered target as `draining` (`Target.DeregistrationInProgress`) for the
  target group's `deregistration_delay.timeout_seconds` (as ModifyTargetGroupAttributes set it;
  AWS's default 300 otherwise), then no more; AWS shows `draining` for the whole delay even when
  nothing was in flight. moto drops the target at once.
- `target_initial_secs`: a target registered less than this long ago is `initial`
  (`Elb.RegistrationInProgress`) instead of `healthy` (its first health checks on AWS).
- `fail_calls`: `{"Action": [n, ...]}` answers the n-th call (from 1, counted since `fail_calls`
  was last set) of that action with a `ValidationError` (not retried by the SDKs): a call that fails
  at one point of a run and not before or after, e.g. the second batch's DeregisterTargets.
- DeleteTargetGroup answers `ResourceInUse` while a listener forwards to it: moto already does.
- ModifyDBInstance `DBPortNumber` moves the endpoint's port (moto stores it and shows the old
  one): always on.

Settings come from the `AWS_LIKE` environment variable (a JSON object) at start, and can be
changed at any time with `POST /_aws_like/config` (a JSON object merged into the settings;
`GET` shows them). `GET /_aws_like/stats` counts what the layer did (`throttled`, `not_found`,
`rewritten`, `dependency_violation`, `requests`), so a test can show the faults really happened.
`seed` makes the throttling draws repeatable.

Run it like moto_server: `python3 tests/aws_like/aws_like.py -H 127.0.0.1 -p PORT`.
"""

import argparse
import io
import json
import os
import random
import re
import signal
import threading
import time
import uuid
from urllib.parse import parse_qs, urlparse
from xml.dom import minidom

DEFAULTS = {
    "seed": None,
    "throttle_share": 0.0,
    "throttle_actions": [],
    "not_found_secs": 0.0,
    "instance_pending_secs": 0.0,
    "instance_final_state": "running",
    "lb_ready_secs": 0.0,
    "lb_final_state": "active",
    "efs_ready_secs": 0.0,
    "rds_ready_secs": 0.0,
    "rds_final_status": "available",
    "eni_linger_secs": 0.0,
    "target_draining": False,
    "target_initial_secs": 0.0,
    "fail_calls": {},
}

# The services whose calls the layer may throttle or answer NotFound (S3, the state backend,
# is left as moto answers it).
SERVICES = ("ec2", "elasticloadbalancing", "rds", "elasticfilesystem")

# Create action -> the response element that holds the new id (all of them for RunInstances).
EC2_CREATES = {
    "CreateVpc": "vpcId",
    "CreateSubnet": "subnetId",
    "CreateSecurityGroup": "groupId",
    "CreateRouteTable": "routeTableId",
    "CreateInternetGateway": "internetGatewayId",
    "RunInstances": "instanceId",
}
ELB_CREATES = {
    "CreateLoadBalancer": "LoadBalancerArn",
    "CreateTargetGroup": "TargetGroupArn",
    "CreateListener": "ListenerArn",
}
RDS_CREATES = {
    "CreateDBInstance": "DBInstanceIdentifier",
    "CreateDBSubnetGroup": "DBSubnetGroupName",
}

EC2_NOT_FOUND = {
    "vpc-": "InvalidVpcID.NotFound",
    "subnet-": "InvalidSubnetID.NotFound",
    "sg-": "InvalidGroup.NotFound",
    "rtb-": "InvalidRouteTableID.NotFound",
    "igw-": "InvalidInternetGatewayID.NotFound",
    "i-": "InvalidInstanceID.NotFound",
}

INSTANCE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48}


def rds_key(param, value):
    """How the layer knows an RDS name: by the kind the parameter names (`DBInstanceIdentifier`
    names a DB instance, `DBSubnetGroupName` a subnet group), so a DB instance and a subnet group
    of the same name are two ids, as on AWS. Other parameters never match a created id."""
    kinds = {"DBInstanceIdentifier": "db_instance", "DBSubnetGroupName": "db_subnet_group"}
    kind = kinds.get(param)
    return f"{kind}:{value}" if kind else f"-:{value}"


def not_found_code(service, id_, kind):
    """The error code AWS answers for an id it does not know (yet), by service and id shape."""
    if service == "ec2":
        for prefix, code in EC2_NOT_FOUND.items():
            if id_.startswith(prefix):
                return code
        return "InvalidParameterValue"
    if service == "elasticloadbalancing":
        for part, code in (
            (":targetgroup/", "TargetGroupNotFound"),
            (":listener/", "ListenerNotFound"),
            (":loadbalancer/", "LoadBalancerNotFound"),
        ):
            if part in id_:
                return code
    if service == "rds":
        return "DBSubnetGroupNotFoundFault" if kind == "db_subnet_group" else "DBInstanceNotFound"
    if service == "elasticfilesystem":
        return "MountTargetNotFound" if id_.startswith("fsmt-") else "FileSystemNotFound"
    return "ResourceNotFound"


def error_response(service, code, message, status=None):
    """(status, headers, body) of an error in the protocol of `service`."""
    request_id = str(uuid.uuid4())
    if service == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
        return status or 400, [("Content-Type", "text/xml")], body.encode()
    if service == "elasticfilesystem":
        body = json.dumps({"ErrorCode": code, "Message": message})
        headers = [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", code),
            ("x-amzn-RequestId", request_id),
        ]
        return status or 400, headers, body.encode()
    body = (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return status or 400, [("Content-Type", "text/xml")], body.encode()


def throttle_response(service):
    if service == "ec2":
        return error_response(service, "RequestLimitExceeded", "Request limit exceeded.", 503)
    if service == "elasticfilesystem":
        return error_response(service, "ThrottlingException", "Rate exceeded", 429)
    return error_response(service, "Throttling", "Rate exceeded", 400)


def service_of(environ):
    """The signing name in the SigV4 credential scope: `.../us-east-1/ec2/aws4_request`."""
    m = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request",
                  environ.get("HTTP_AUTHORIZATION", ""))
    return m.group(1) if m else ""


def efs_action(method, path):
    """A name for an EFS REST call (`DescribeMountTargets`, ...), from its method and path."""
    parts = [p for p in path.split("/") if p][1:]  # drop the API version
    if not parts:
        return "EFS"
    noun = {"file-systems": "FileSystem", "mount-targets": "MountTarget"}.get(parts[0], parts[0])
    if len(parts) >= 3 and parts[2] == "security-groups":
        return ("Describe" if method == "GET" else "Modify") + "MountTargetSecurityGroups"
    verb = {"GET": "Describe", "POST": "Create", "DELETE": "Delete", "PUT": "Update"}[method]
    return verb + noun + ("s" if method == "GET" else "")


def text_of(el):
    return "".join(n.data for n in el.childNodes if n.nodeType == n.TEXT_NODE).strip()


def child(el, name):
    for n in el.childNodes:
        if n.nodeType == n.ELEMENT_NODE and n.tagName == name:
            return n
    return None


def set_text(el, value):
    for n in list(el.childNodes):
        el.removeChild(n)
    el.appendChild(el.ownerDocument.createTextNode(str(value)))


class Layer:
    """The middleware: `Layer(moto_app)` is a WSGI application."""

    def __init__(self, app, settings=None, clock=time.monotonic):
        self.app = app
        self.clock = clock
        self.lock = threading.Lock()
        self.settings = dict(DEFAULTS)
        self.rng = random.Random()
        self.configure(settings or {})
        # id -> (created at, service, kind)
        self.fresh = {}
        # load balancer ARN -> its subnet and security group ids
        self.lb_deps = {}
        # subnet / security group id -> when its balancer was deleted
        self.lingering = {}
        # DB instance identifier -> the port ModifyDBInstance moved it to
        self.db_ports = {}
        # target group ARN -> deregistration delay (s), as ModifyTargetGroupAttributes set it
        self.tg_delay = {}
        # (target group ARN, target id) -> when it was deregistered / registered
        self.deregistered = {}
        self.registered = {}
        self.stats = {k: 0 for k in
                      ("requests", "throttled", "not_found", "rewritten", "dependency_violation",
                       "failed_calls")}
        # action -> calls seen (for `fail_calls`)
        self.calls = {}

    def configure(self, update):
        unknown = set(update) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown aws_like settings: {sorted(unknown)}")
        with self.lock:
            self.settings.update(update)
            if "seed" in update:
                self.rng.seed(update["seed"])
            if "fail_calls" in update:
                self.calls = {}

    def age(self, id_):
        entry = self.fresh.get(id_)
        return None if entry is None else self.clock() - entry[0]

    # -- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_aws_like/"):
            return self.control(environ, start_response, path)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        service = service_of(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if service == "elasticfilesystem":
            action = efs_action(method, path)
            params = {k: v for k, v in query.items()}
            values = [p for p in path.split("/") if p] + [v for vs in query.values() for v in vs]
            try:
                doc = json.loads(body) if body else {}
            except ValueError:
                doc = {}
            for v in (doc.values() if isinstance(doc, dict) else []):
                values.extend(v if isinstance(v, list) else [v])
        else:
            params = parse_qs(body.decode("utf-8", "replace")) if body else {}
            params.update(query)
            action = (params.get("Action") or [""])[0]
            values = [v for k, vs in params.items() if not k.startswith("Filter.") for v in vs]
            if service == "rds":
                # RDS names are the caller's, and a DB instance and its subnet group may share
                # one: an id is known by the parameter that names it (see `rds_key`).
                values = [rds_key(k, v) for k, vs in params.items() for v in vs]
        values = [v for v in values if isinstance(v, str)]
        with self.lock:
            self.stats["requests"] += 1
            fault = self.fault(service, action, params, values)
        if fault is not None:
            status, headers, out = fault
            start_response(f"{status} Fault", headers + [("Content-Length", str(len(out)))])
            return [out]

        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = self.app(environ, capture)
        try:
            out = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        status = captured.get("status", "500 Internal Server Error")
        headers = [(k, v) for k, v in captured.get("headers", [])
                   if k.lower() != "content-length"]
        if status.startswith("2"):
            with self.lock:
                out = self.after(service, action, params, out)
        start_response(status, headers + [("Content-Length", str(len(out)))])
        return [out]

    def control(self, environ, start_response, path):
        try:
            if path == "/_aws_like/config" and environ.get("REQUEST_METHOD") == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                self.configure(json.loads(environ["wsgi.input"].read(length) or b"{}"))
            if path == "/_aws_like/config":
                out, status = json.dumps(self.settings), "200 OK"
            elif path == "/_aws_like/stats":
                with self.lock:
                    out, status = json.dumps(self.stats), "200 OK"
            else:
                out, status = json.dumps({"error": f"no such path {path}"}), "404 Not Found"
        except ValueError as e:
            out, status = json.dumps({"error": str(e)}), "400 Bad Request"
        data = out.encode()
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(data)))])
        return [data]

    # -- before moto ----------------------------------------------------------------------------

    def fault(self, service, action, params, values):
        """An error to answer instead of moto's, or None. Called under the lock."""
        s = self.settings
        if service not in SERVICES:
            return None
        if action in s["fail_calls"]:
            n = self.calls.get(action, 0) + 1
            self.calls[action] = n
            if n in s["fail_calls"][action]:
                self.stats["failed_calls"] += 1
                return error_response(service, "ValidationError",
                                      f"aws_like: call {n} of {action} fails (fail_calls)")
        actions = s["throttle_actions"]
        if s["throttle_share"] > 0 and (not actions or action in actions):
            if self.rng.random() < s["throttle_share"]:
                self.stats["throttled"] += 1
                return throttle_response(service)
        if s["not_found_secs"] > 0:
            for v in values:
                entry = self.fresh.get(v)
                if entry is None or entry[1] != service:
                    continue
                if self.clock() - entry[0] < s["not_found_secs"]:
                    self.stats["not_found"] += 1
                    code = not_found_code(service, v, entry[2])
                    status = 404 if service in ("rds", "elasticfilesystem") else 400
                    name = v.split(":", 1)[1] if service == "rds" else v
                    return error_response(service, code, f"The id '{name}' does not exist", status)
        if service == "ec2" and action in ("DeleteSecurityGroup", "DeleteSubnet"):
            id_ = (params.get("GroupId") or params.get("SubnetId") or [""])[0]
            since = self.lingering.get(id_)
            if since is not None and self.clock() - since < s["eni_linger_secs"]:
                self.stats["dependency_violation"] += 1
                return error_response(
                    service, "DependencyViolation",
                    f"resource {id_} has a dependent object", 400)
        return None

    # -- after moto -------------------------------------------------------------------------------

    def after(self, service, action, params, out):
        """Learns new ids from a successful answer and rewrites states. Called under the lock."""
        now = self.clock()
        if service == "ec2":
            tag = EC2_CREATES.get(action)
            if tag:
                ids = re.findall(rf"<{tag}>([^<]+)</{tag}>".encode(), out)
                for id_ in ids if action == "RunInstances" else ids[:1]:
                    self.fresh[id_.decode()] = (now, service, action)
            if action in ("RunInstances", "DescribeInstances"):
                out = self.rewrite_instances(out)
        elif service == "elasticloadbalancing":
            tag = ELB_CREATES.get(action)
            if tag:
                m = re.search(rf"<{tag}>([^<]+)</{tag}>".encode(), out)
                if m:
                    arn = m.group(1).decode()
                    self.fresh[arn] = (now, service, action)
                    if action == "CreateLoadBalancer":
                        self.lb_deps[arn] = self.members(params, ("Subnets", "SecurityGroups"))
            if action in ("SetSubnets", "SetSecurityGroups"):
                arn = params.get("LoadBalancerArn", [""])[0]
                deps = self.lb_deps.setdefault(arn, set())
                deps |= self.members(params, ("Subnets", "SecurityGroups"))
            if action == "DeleteLoadBalancer":
                arn = params.get("LoadBalancerArn", [""])[0]
                for id_ in self.lb_deps.pop(arn, set()):
                    self.lingering[id_] = now
            if action in ("CreateLoadBalancer", "DescribeLoadBalancers"):
                out = self.rewrite_lbs(out)
            arn = params.get("TargetGroupArn", [""])[0]
            if action == "ModifyTargetGroupAttributes":
                keys = {k[:-len(".Key")]: vs[0] for k, vs in params.items() if k.endswith(".Key")}
                for prefix, key in keys.items():
                    if key == "deregistration_delay.timeout_seconds":
                        self.tg_delay[arn] = float(params.get(prefix + ".Value", ["300"])[0])
            if action in ("RegisterTargets", "DeregisterTargets"):
                ids = [vs[0] for k, vs in params.items()
                       if k.startswith("Targets.member.") and k.endswith(".Id")]
                for id_ in ids:
                    if action == "RegisterTargets":
                        self.deregistered.pop((arn, id_), None)
                        self.registered[(arn, id_)] = now
                    else:
                        self.registered.pop((arn, id_), None)
                        self.deregistered[(arn, id_)] = now
            if action == "DescribeTargetHealth" and not any(
                    k.startswith("Targets.member.") for k in params):
                out = self.rewrite_target_health(arn, out)
        elif service == "rds":
            key = RDS_CREATES.get(action)
            if key and params.get(key):
                kind = "db_instance" if action == "CreateDBInstance" else "db_subnet_group"
                self.fresh[rds_key(key, params[key][0])] = (now, service, kind)
            if action == "ModifyDBInstance" and params.get("DBPortNumber"):
                ident = params.get("DBInstanceIdentifier", [""])[0]
                self.db_ports[ident] = params["DBPortNumber"][0]
            if action in ("CreateDBInstance", "DescribeDBInstances", "ModifyDBInstance"):
                out = self.rewrite_dbs(out)
        elif service == "elasticfilesystem":
            try:
                doc = json.loads(out) if out else None
            except ValueError:
                return out
            if action in ("CreateFileSystem", "CreateMountTarget") and isinstance(doc, dict):
                id_ = doc.get("MountTargetId") or doc.get("FileSystemId")
                if id_:
                    self.fresh[id_] = (now, service, action)
            if isinstance(doc, dict):
                changed = False
                items = doc.get("MountTargets") or doc.get("FileSystems") or [doc]
                for item in items:
                    id_ = item.get("MountTargetId") or item.get("FileSystemId")
                    age = self.age(id_) if id_ else None
                    if age is not None and age < self.settings["efs_ready_secs"] \
                            and item.get("LifeCycleState") == "available":
                        item["LifeCycleState"] = "creating"
                        changed = True
                if changed:
                    self.stats["rewritten"] += 1
                    out = json.dumps(doc).encode()
        return out

    @staticmethod
    def members(params, names):
        """The values of `Name.member.N` query parameters."""
        return {v for k, vs in params.items() for v in vs
                if any(k.startswith(f"{n}.member.") for n in names)}

    def rewrite_instances(self, out):
        doc = minidom.parseString(out)
        changed = False
        for id_el in doc.getElementsByTagName("instanceId"):
            item = id_el.parentNode
            state = child(item, "instanceState")
            age = self.age(text_of(id_el))
            if state is None or age is None:
                continue
            want = ("pending" if age < self.settings["instance_pending_secs"]
                    else self.settings["instance_final_state"])
            name, code = child(state, "name"), child(state, "code")
            if name is not None and text_of(name) != want and text_of(name) in ("pending", "running"):
                set_text(name, want)
                if code is not None:
                    set_text(code, INSTANCE_CODES.get(want, 0))
                changed = True
        return self.serialize(doc, out, changed)

    def rewrite_lbs(self, out):
        doc = minidom.parseString(out)
        changed = False
        for arn_el in doc.getElementsByTagName("LoadBalancerArn"):
            lb = arn_el.parentNode
            state = child(lb, "State")
            age = self.age(text_of(arn_el))
            if state is None or age is None or child(state, "Code") is None:
                continue
            want = ("provisioning" if age < self.settings["lb_ready_secs"]
                    else self.settings["lb_final_state"])
            if text_of(child(state, "Code")) != want:
                set_text(child(state, "Code"), want)
                changed = True
        return self.serialize(doc, out, changed)

    def rewrite_dbs(self, out):
        doc = minidom.parseString(out)
        changed = False
        ready = self.settings["rds_ready_secs"]
        for db in doc.getElementsByTagName("DBInstance"):
            ident = child(db, "DBInstanceIdentifier")
            port = self.db_ports.get(text_of(ident)) if ident is not None else None
            endpoint = child(db, "Endpoint")
            if port is not None and endpoint is not None and child(endpoint, "Port") is not None:
                if text_of(child(endpoint, "Port")) != port:
                    set_text(child(endpoint, "Port"), port)
                    changed = True
            age = None
            if ident is not None:
                age = self.age(rds_key("DBInstanceIdentifier", text_of(ident)))
            if age is None:
                continue
            if age < ready * 0.75:
                want = "creating"
            elif age < ready:
                want = "backing-up"
            else:
                want = self.settings["rds_final_status"]
            status = child(db, "DBInstanceStatus")
            if status is not None and text_of(status) != want:
                set_text(status, want)
                changed = True
            if want != "available":
                endpoint = child(db, "Endpoint")
                if endpoint is not None:
                    db.removeChild(endpoint)
                    changed = True
                port = child(db, "DbInstancePort")
                if port is None:
                    port = doc.createElement("DbInstancePort")
                    db.appendChild(port)
                if text_of(port) != "0":
                    set_text(port, 0)
                    changed = True
        return self.serialize(doc, out, changed)

    def rewrite_target_health(self, arn, out):
        s = self.settings
        now = self.clock()
        draining = []
        if s["target_draining"]:
            delay = self.tg_delay.get(arn, 300.0)
            draining = sorted(id_ for (a, id_), t in self.deregistered.items()
                              if a == arn and now - t < delay)
        initial = s["target_initial_secs"]
        if not draining and initial <= 0:
            return out
        doc = minidom.parseString(out)
        lists = doc.getElementsByTagName("TargetHealthDescriptions")
        if not lists:
            return out
        descs = lists[0]
        changed = False
        listed = set()
        for member in [m for m in descs.childNodes if m.nodeType == m.ELEMENT_NODE]:
            target = child(member, "Target")
            id_el = child(target, "Id") if target is not None else None
            if id_el is None:
                continue
            id_ = text_of(id_el)
            listed.add(id_)
            since = self.registered.get((arn, id_))
            health = child(member, "TargetHealth")
            if since is None or health is None or now - since >= initial:
                continue
            state = child(health, "State")
            if state is not None and text_of(state) == "healthy":
                set_text(state, "initial")
                self.add(doc, health, "Reason", "Elb.RegistrationInProgress")
                self.add(doc, health, "Description", "Target registration is in progress")
                changed = True
        for id_ in draining:
            if id_ in listed:
                continue
            member = doc.createElement("member")
            target = self.add(doc, member, "Target")
            self.add(doc, target, "Id", id_)
            health = self.add(doc, member, "TargetHealth")
            self.add(doc, health, "State", "draining")
            self.add(doc, health, "Reason", "Target.DeregistrationInProgress")
            self.add(doc, health, "Description", "Target deregistration is in progress")
            descs.appendChild(member)
            changed = True
        return self.serialize(doc, out, changed)

    @staticmethod
    def add(doc, parent, name, text=None):
        el = doc.createElement(name)
        if text is not None:
            el.appendChild(doc.createTextNode(str(text)))
        parent.appendChild(el)
        return el

    def serialize(self, doc, out, changed):
        if not changed:
            return out
        self.stats["rewritten"] += 1
        return doc.toxml(encoding="utf-8")


def moto_app():
    from moto.server import DomainDispatcherApplication, create_backend_app
    return DomainDispatcherApplication(create_backend_app)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    settings = json.loads(os.environ.get("AWS_LIKE") or "{}")
    # Stop at once on SIGTERM/SIGINT, whatever the parent shell did to their dispositions.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))
    from werkzeug.serving import run_simple
    run_simple(args.host, args.port, Layer(moto_app(), settings), threaded=True)


if __name__ == "__main__":
    main()
