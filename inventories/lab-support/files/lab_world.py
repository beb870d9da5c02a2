"""Seed (or tear down) the *old* side of one lab environment, as inventories/lab describes it.

    lab_world.py seed --spec JSON [--rows N] [--objects N]
    lab_world.py teardown --spec JSON

The spec is the environment's ``lab_seed`` variable (inventories/lab/group_vars/all.yml), so the
inventory stays the one place that names things; ``inventories/lab-support/seed.yml`` passes it in.

What "old prod" is, in the old account: a public zone delegated from ``test.`` (www as an alias
to the old load balancer, static, MX, TXT, an ACM validation CNAME, a weighted pair, db.<domain>
pointing at the old MariaDB), a private zone with the internal API's name, an S3 bucket of
models, the old load balancer with the old web hosts registered, and the old web and API
processes (labapp). In the new account, what infrastructure-as-code builds before a migration:
a VPC with its own private zone of the same name, the new load balancer with an empty target
group, and an empty database with the application's DB account. Every step is find-or-create,
and the last line printed is ``changed`` or ``unchanged``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pymysql

REPO_ROOT = Path(__file__).resolve().parents[3]
LABAPP = REPO_ROOT / "tests" / "lab" / "labapp.py"
REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
ACM_TARGET = "_0f1e2d3c4b5a.acm-validations.aws."

changed = False


def note(what: str) -> None:
    global changed
    changed = True
    print(f"seed: {what}", file=sys.stderr)


def session_for(account: str) -> boto3.Session:
    sts = boto3.client("sts", region_name=REGION)
    credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/lab-seed", RoleSessionName="lab-seed")["Credentials"]
    return boto3.Session(aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
                         aws_session_token=credentials["SessionToken"], region_name=REGION)


def find_zone(route53, name: str, private: bool) -> str | None:
    name = name.rstrip(".") + "."
    for page in route53.get_paginator("list_hosted_zones").paginate():
        for zone in page["HostedZones"]:
            if zone["Name"] == name and bool(zone["Config"].get("PrivateZone")) == private:
                return zone["Id"].split("/")[-1]
    return None


def ensure_zone(route53, name: str, private: bool = False, vpc: str | None = None) -> str:
    zone_id = find_zone(route53, name, private)
    if zone_id:
        return zone_id
    request = {"Name": name, "CallerReference": f"lab-seed-{name}-{private}",
               "HostedZoneConfig": {"PrivateZone": private, "Comment": "lab old side" if not private else "lab private"}}
    if private:
        request["VPC"] = {"VPCRegion": REGION, "VPCId": vpc}
    note(f"zone {name} private={private}")
    return route53.create_hosted_zone(**request)["HostedZone"]["Id"].split("/")[-1]


def upsert_if_missing(route53, zone_id: str, record_sets: list[dict]) -> None:
    missing = []
    for record in record_sets:
        name = record["Name"].rstrip(".") + "."
        answer = route53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=name, StartRecordType=record["Type"],
                                                   MaxItems="300")["ResourceRecordSets"]
        exists = any(item["Name"] == name and item["Type"] == record["Type"]
                     and item.get("SetIdentifier") == record.get("SetIdentifier") for item in answer)
        if not exists:
            missing.append({"Action": "UPSERT", "ResourceRecordSet": record})
    if missing:
        note(f"{len(missing)} record sets in {zone_id}")
        route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": missing})


def ensure_vpc(ec2, name: str, cidr: str) -> tuple[str, list[str]]:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [name]}])["Vpcs"]
    if vpcs:
        vpc = vpcs[0]["VpcId"]
    else:
        vpc = ec2.create_vpc(CidrBlock=cidr, TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": name}]}])["Vpc"]["VpcId"]
        note(f"vpc {name}")
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    if len(subnets) < 2:
        base = cidr.rsplit(".", 2)[0]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"{base}.{n}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"]
                   for n, zone in ((1, "a"), (2, "b"))]
    return vpc, [subnet["SubnetId"] for subnet in subnets]


def ensure_load_balancer(elbv2, name: str, group_name: str, vpc: str, subnets: list[str], port: int) -> dict:
    try:
        balancer = elbv2.describe_load_balancers(Names=[name])["LoadBalancers"][0]
    except elbv2.exceptions.LoadBalancerNotFoundException:
        balancer = elbv2.create_load_balancer(Name=name, Subnets=subnets, Scheme="internet-facing", Type="application")["LoadBalancers"][0]
        note(f"load balancer {name}")
    try:
        group = elbv2.describe_target_groups(Names=[group_name])["TargetGroups"][0]
    except elbv2.exceptions.TargetGroupNotFoundException:
        group = elbv2.create_target_group(Name=group_name, Protocol="HTTP", Port=port, VpcId=vpc, TargetType="ip",
                                          HealthCheckPath="/health")["TargetGroups"][0]
        note(f"target group {group_name}")
    listeners = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    if not listeners:
        elbv2.create_listener(LoadBalancerArn=balancer["LoadBalancerArn"], Protocol="HTTP", Port=80,
                              DefaultActions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}])
        note(f"listener of {name}")
    return {"balancer": balancer, "group": group}


def register(elbv2, group_arn: str, addresses: list[str], port: int) -> None:
    registered = {(item["Target"]["Id"], item["Target"].get("Port"))
                  for item in elbv2.describe_target_health(TargetGroupArn=group_arn)["TargetHealthDescriptions"]}
    missing = [{"Id": address, "Port": port} for address in addresses if (address, port) not in registered]
    if missing:
        elbv2.register_targets(TargetGroupArn=group_arn, Targets=missing)
        note(f"registered {len(missing)} old web targets")


def ensure_bucket(s3, bucket: str, objects: int) -> None:
    existing = {item["Name"] for item in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
        note(f"bucket {bucket}")
    present = s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount", 0)
    if present:
        return
    for number in range(objects):
        s3.put_object(Bucket=bucket, Key=f"models/model-{number:04d}.bin", Body=os.urandom(2048 + number),
                      ContentType="application/octet-stream", Metadata={"trained": f"2024-{number % 12 + 1:02d}"})
    s3.put_object(Bucket=bucket, Key="models/big/weights.bin", Body=os.urandom(6 * 1024 * 1024))
    note(f"{objects + 1} objects in {bucket}")


def run_labapp(*arguments: str) -> None:
    completed = subprocess.run([sys.executable, str(LABAPP), *arguments], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"labapp {' '.join(arguments[:3])} failed: {completed.stdout}{completed.stderr}")
    if completed.stdout.strip().splitlines()[-1:] == ["changed"]:
        note(f"labapp {' '.join(arguments[:5])}")


def ensure_new_database(spec: dict, app_password: str) -> None:
    connection = pymysql.connect(host=spec["mysql_new"], port=3306, user="lab", password="lab", autocommit=True)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (spec["db_name"],))
        if cursor.fetchone()[0] == 0:
            cursor.execute(f"CREATE DATABASE `{spec['db_name']}`")
            note(f"empty database {spec['db_name']} on the new server")
        user = spec["app_db_user"]
        cursor.execute("SELECT COUNT(*) FROM mysql.user WHERE User = %s AND Host = '%%'", (user,))
        if cursor.fetchone()[0] == 0:
            cursor.execute(f"CREATE USER `{user}`@'%%' IDENTIFIED BY %s", (app_password,))
            note(f"app DB account {user} on the new server")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{spec['db_name']}`.* TO `{user}`@'%'")


def seed(spec: dict, rows: int, objects: int, app_password: str) -> None:
    old, new, parent = session_for(spec["account_old"]), session_for(spec["account_new"]), session_for("333333333333")
    name, domain = spec["name"], spec["domain"].rstrip(".")
    ttl = int(spec["record_ttl"])

    old_vpc, old_subnets = ensure_vpc(old.client("ec2"), f"{name}-old", "10.10.0.0/16")
    new_vpc, new_subnets = ensure_vpc(new.client("ec2"), f"{name}-new", "10.20.0.0/16")
    old_lb = ensure_load_balancer(old.client("elbv2"), f"{name}-old", f"{name}-web-old", old_vpc, old_subnets, spec["web_port"])
    ensure_load_balancer(new.client("elbv2"), f"{name}-new", f"{name}-web-new", new_vpc, new_subnets, spec["web_port"])

    route53 = old.client("route53")
    zone_id = ensure_zone(route53, domain)
    balancer = old_lb["balancer"]
    upsert_if_missing(route53, zone_id, [
        {"Name": f"www.{domain}", "Type": "A", "AliasTarget": {
            "DNSName": balancer["DNSName"], "HostedZoneId": balancer["CanonicalHostedZoneId"], "EvaluateTargetHealth": False}},
        {"Name": f"db.{domain}", "Type": "A", "TTL": ttl, "ResourceRecords": [{"Value": spec["mysql_old"]}]},
        {"Name": f"static.{domain}", "Type": "CNAME", "TTL": 300, "ResourceRecords": [{"Value": f"www.{domain}"}]},
        {"Name": domain, "Type": "MX", "TTL": 300, "ResourceRecords": [{"Value": f"10 mail.{domain}"}]},
        {"Name": domain, "Type": "TXT", "TTL": 300, "ResourceRecords": [{"Value": '"v=spf1 -all"'}]},
        {"Name": f"_a1b2c3d4e5.{domain}", "Type": "CNAME", "TTL": 300, "ResourceRecords": [{"Value": ACM_TARGET}]},
        {"Name": f"beta.{domain}", "Type": "A", "TTL": 60, "SetIdentifier": "blue", "Weight": 90,
         "ResourceRecords": [{"Value": "198.51.100.10"}]},
        {"Name": f"beta.{domain}", "Type": "A", "TTL": 60, "SetIdentifier": "green", "Weight": 10,
         "ResourceRecords": [{"Value": "198.51.100.11"}]},
    ])
    servers = route53.get_hosted_zone(Id=zone_id)["DelegationSet"]["NameServers"]
    parent_route53 = parent.client("route53")
    parent_zone = find_zone(parent_route53, "test.", False)
    answer = parent_route53.list_resource_record_sets(HostedZoneId=parent_zone, StartRecordName=f"{domain}.", StartRecordType="NS",
                                                      MaxItems="1")["ResourceRecordSets"]
    if not (answer and answer[0]["Name"] == f"{domain}." and answer[0]["Type"] == "NS"):
        parent_route53.change_resource_record_sets(HostedZoneId=parent_zone, ChangeBatch={"Changes": [{
            "Action": "UPSERT", "ResourceRecordSet": {"Name": f"{domain}.", "Type": "NS", "TTL": 4,
                                                      "ResourceRecords": [{"Value": server} for server in servers]}}]})
        note(f"delegation of {domain} to the old account")

    private_id = ensure_zone(route53, spec["private_zone"], private=True, vpc=old_vpc)
    api_name = f"api.{spec['private_zone'].rstrip('.')}"
    upsert_if_missing(route53, private_id, [
        {"Name": api_name, "Type": "A", "TTL": ttl, "ResourceRecords": [{"Value": address} for address in spec["old_api_addresses"]]},
    ])
    ensure_zone(new.client("route53"), spec["private_zone"], private=True, vpc=new_vpc)

    ensure_bucket(old.client("s3"), spec["bucket"], objects)

    run_labapp("schema", "--db-url", f"mysql://lab:lab@{spec['mysql_old']}:3306/", "--db-name", spec["db_name"],
               "--users", str(max(rows // 10, 10)), "--orders", str(rows), "--products", "50",
               "--app-user", spec["app_db_user"], "--app-password", app_password)
    ensure_new_database(spec, app_password)

    for number, address in enumerate(spec["old_api_addresses"], start=1):
        run_labapp("start", "--role", "api", "--instance", f"{name}-api-old-{number}", "--listen", f"{address}:{spec['api_port']}",
                   "--side", "old", "--db-host", f"db.{domain}", "--db-name", spec["db_name"], "--db-user", spec["app_db_user"],
                   "--db-password", app_password, "--resolver", spec["vpc_resolver_old"])
    for number, address in enumerate(spec["old_web_addresses"], start=1):
        run_labapp("start", "--role", "web", "--instance", f"{name}-web-old-{number}", "--listen", f"{address}:{spec['web_port']}",
                   "--side", "old", "--db-host", f"db.{domain}", "--db-name", spec["db_name"], "--db-user", spec["app_db_user"],
                   "--db-password", app_password, "--api-url", f"http://{api_name}:{spec['api_port']}",
                   "--resolver", spec["vpc_resolver_old"])
    register(old.client("elbv2"), old_lb["group"]["TargetGroupArn"], spec["old_web_addresses"], int(spec["web_port"]))


def teardown(spec: dict) -> None:
    """Stop this environment's app processes (old and new); AWS and DB state is left to the lab's own reset."""
    name = spec["name"]
    instances = [f"{name}-web-old-{n}" for n in range(1, len(spec["old_web_addresses"]) + 1)]
    instances += [f"{name}-api-old-{n}" for n in range(1, len(spec["old_api_addresses"]) + 1)]
    instances += list(spec.get("new_instances") or [])
    for instance in instances:
        subprocess.run([sys.executable, str(LABAPP), "stop", "--instance", instance], capture_output=True, check=False)
    print("changed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verb", choices=("seed", "teardown"))
    parser.add_argument("--spec", required=True, help="the environment's lab_seed variable as JSON")
    parser.add_argument("--rows", type=int, default=int(os.environ.get("LAB_SEED_ROWS", "2000")))
    parser.add_argument("--objects", type=int, default=int(os.environ.get("LAB_SEED_OBJECTS", "40")))
    options = parser.parse_args()
    spec = json.loads(options.spec)
    app_password = os.environ.get("LAB_APP_DB_PASSWORD") or "shop-app-lab"
    if options.verb == "teardown":
        teardown(spec)
        return 0
    seed(spec, options.rows, options.objects, app_password)
    print("changed" if changed else "unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
