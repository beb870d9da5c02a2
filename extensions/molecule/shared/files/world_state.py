"""Observe (or remove) one molecule lab world, as a user would check it after a stage.

    world_state.py observe --spec JSON     # prints one JSON document of the world's observable state
    world_state.py remove --spec JSON      # deletes the world's zones, delegation, buckets, databases,
                                           # load balancers, target groups and VPCs (both accounts)

The spec is ``molecule_world_spec`` (extensions/molecule/shared/vars/world_spec.yml), built from the lab
inventory's own variables, so the names here are the ones the roles used. ``observe`` reads through the
same doors the migration's users have: DNS answers from the lab resolver and the VPC resolvers, Route53
record sets, S3 object bodies (MD5 per key, so a multipart copy with another ETag still compares), CHECKSUM
TABLE and ``@@global.read_only`` on both MariaDB servers, ELBv2 target registrations, and HTTP.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request

import boto3
import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pymysql

REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def session_for(account: str) -> boto3.Session:
    credentials = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/molecule", RoleSessionName="molecule")["Credentials"]
    return boto3.Session(aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
                         aws_session_token=credentials["SessionToken"], region_name=REGION)


def resolve(server: str, name: str) -> list[str]:
    query = dns.message.make_query(name, "A")
    for _attempt in range(3):
        try:
            answer = dns.query.udp(query, server, timeout=3)
        except dns.exception.Timeout:
            continue
        return sorted({item.address for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for item in rrset})
    return ["timeout"]


def zones_of(route53, name: str) -> list[dict]:
    wanted = name.rstrip(".") + "."
    return [zone for page in route53.get_paginator("list_hosted_zones").paginate() for zone in page["HostedZones"]
            if zone["Name"] == wanted]


def record_sets(route53, zone_id: str) -> list[dict]:
    records = []
    for page in route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id):
        for item in page["ResourceRecordSets"]:
            records.append({"name": item["Name"], "type": item["Type"], "ttl": item.get("TTL"),
                            "set_identifier": item.get("SetIdentifier"), "weight": item.get("Weight"),
                            "values": sorted(value["Value"] for value in item.get("ResourceRecords", [])),
                            "alias": (item.get("AliasTarget") or {}).get("DNSName", "").rstrip(".").lower() or None})
    return records


def zones_state(session: boto3.Session, names: list[str]) -> dict:
    route53 = session.client("route53")
    state = {}
    for name in names:
        for zone in zones_of(route53, name):
            kind = "private" if zone["Config"].get("PrivateZone") else "public"
            state[f"{kind} {zone['Name']}"] = record_sets(route53, zone["Id"].split("/")[-1])
    return state


def bucket_state(session: boto3.Session, bucket: str) -> dict | None:
    s3 = session.client("s3")
    if bucket not in {item["Name"] for item in s3.list_buckets().get("Buckets", [])}:
        return None
    digests = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            digests[item["Key"]] = hashlib.md5(body, usedforsecurity=False).hexdigest()
    combined = hashlib.sha256("\n".join(f"{key} {digest}" for key, digest in sorted(digests.items())).encode()).hexdigest()
    return {"count": len(digests), "digest": combined, "keys": digests}


def balancer_state(session: boto3.Session, name: str, group: str, resolver: str) -> dict:
    elbv2 = session.client("elbv2")
    balancer = elbv2.describe_load_balancers(Names=[name])["LoadBalancers"][0]
    arn = elbv2.describe_target_groups(Names=[group])["TargetGroups"][0]["TargetGroupArn"]
    members = sorted(f"{item['Target']['Id']}:{item['Target'].get('Port')}"
                     for item in elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"])
    return {"dns_name": balancer["DNSName"].lower(), "addresses": resolve(resolver, balancer["DNSName"]), "targets": members}


def database_state(host: str, database: str) -> dict:
    connection = pymysql.connect(host=host, port=3306, user="lab", password="lab", autocommit=True)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT @@global.read_only")
        state: dict = {"read_only": int(cursor.fetchone()[0]), "tables": {}}
        cursor.execute("SELECT TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database,))
        for table, auto_increment in cursor.fetchall():
            cursor.execute(f"CHECKSUM TABLE `{database}`.`{table}`")
            checksum = cursor.fetchone()[1]
            cursor.execute(f"SELECT COUNT(*) FROM `{database}`.`{table}`")
            rows = cursor.fetchone()[0]
            state["tables"][table] = {"checksum": checksum, "rows": rows, "auto_increment": auto_increment}
        if "orders" in state["tables"]:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0), COUNT(*) - COUNT(DISTINCT id) FROM `{database}`.`orders`")
            state["orders_max_id"], state["orders_duplicate_ids"] = (int(value) for value in cursor.fetchone())
        return state


def http_state(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - lab URLs only
            return {"status": response.status, "side": response.headers.get("X-Side"), "body": json.loads(response.read() or b"null")}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "side": error.headers.get("X-Side"), "body": None}
    except OSError as error:
        return {"status": -1, "side": None, "body": str(error)}


def observe(spec: dict) -> dict:
    old, new = session_for(spec["account_old"]), session_for(spec["account_new"])
    domain, private_zone = spec["domain"].rstrip("."), spec["private_zone"].rstrip(".")
    return {
        "resolver": {name: resolve(spec["resolver"], f"{name}.{domain}") for name in ("www", "db", "static")},
        "vpc_old": {"api": resolve(spec["vpc_resolver_old"], f"api.{private_zone}")},
        "vpc_new": {"api": resolve(spec["vpc_resolver_new"], f"api.{private_zone}"),
                    "db": resolve(spec["vpc_resolver_new"], f"db.{domain}")},
        "zones": {"old": zones_state(old, [domain, private_zone]), "new": zones_state(new, [domain, private_zone])},
        "load_balancers": {"old": balancer_state(old, f"{spec['name']}-old", f"{spec['name']}-web-old", spec["resolver"]),
                           "new": balancer_state(new, f"{spec['name']}-new", f"{spec['name']}-web-new", spec["resolver"])},
        "buckets": {"source": bucket_state(old, spec["source_bucket"]), "target": bucket_state(new, spec["target_bucket"])},
        "databases": {"old": database_state(spec["mysql_old"], spec["db_name"]), "new": database_state(spec["mysql_new"], spec["db_name"])},
        "http": {name: http_state(url) for name, url in spec.get("urls", {}).items()},
    }


def remove_zone(route53, zone_id: str, apex: str) -> None:
    # Route53 deletes a zone only once it holds nothing but its apex SOA and NS.
    deletions = [{"Action": "DELETE", "ResourceRecordSet": record}
                 for page in route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
                 for record in page["ResourceRecordSets"] if not (record["Name"] == apex and record["Type"] in ("SOA", "NS"))]
    if deletions:
        route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": deletions})
    route53.delete_hosted_zone(Id=zone_id)


def remove_zones(session: boto3.Session, names: list[str]) -> None:
    route53 = session.client("route53")
    for name in names:
        for zone in zones_of(route53, name):
            remove_zone(route53, zone["Id"].split("/")[-1], zone["Name"])


def remove_bucket(session: boto3.Session, bucket: str) -> None:
    s3 = session.client("s3")
    if bucket not in {item["Name"] for item in s3.list_buckets().get("Buckets", [])}:
        return
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        objects = [{"Key": item["Key"], "VersionId": item["VersionId"]} for item in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    s3.delete_bucket(Bucket=bucket)


def remove_balancer(session: boto3.Session, names: list[str], groups: list[str], vpc_name: str) -> None:
    elbv2, ec2 = session.client("elbv2"), session.client("ec2")
    for name in names:
        try:
            balancer = elbv2.describe_load_balancers(Names=[name])["LoadBalancers"][0]
        except elbv2.exceptions.LoadBalancerNotFoundException:
            continue
        for listener in elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]:
            elbv2.delete_listener(ListenerArn=listener["ListenerArn"])
        elbv2.delete_load_balancer(LoadBalancerArn=balancer["LoadBalancerArn"])
    for group in groups:
        try:
            arn = elbv2.describe_target_groups(Names=[group])["TargetGroups"][0]["TargetGroupArn"]
        except elbv2.exceptions.TargetGroupNotFoundException:
            continue
        elbv2.delete_target_group(TargetGroupArn=arn)
    for vpc in ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [vpc_name]}])["Vpcs"]:
        for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]:
            ec2.delete_subnet(SubnetId=subnet["SubnetId"])
        ec2.delete_vpc(VpcId=vpc["VpcId"])


def remove(spec: dict) -> None:
    old, new, parent = session_for(spec["account_old"]), session_for(spec["account_new"]), session_for(spec["account_parent"])
    domain = spec["domain"].rstrip(".") + "."
    parent_route53 = parent.client("route53")
    for zone in zones_of(parent_route53, "test."):
        answer = parent_route53.list_resource_record_sets(HostedZoneId=zone["Id"], StartRecordName=domain, StartRecordType="NS",
                                                          MaxItems="1")["ResourceRecordSets"]
        if answer and answer[0]["Name"] == domain and answer[0]["Type"] == "NS":
            parent_route53.change_resource_record_sets(HostedZoneId=zone["Id"], ChangeBatch={"Changes": [
                {"Action": "DELETE", "ResourceRecordSet": answer[0]}]})
    for session in (old, new):
        remove_zones(session, [spec["domain"], spec["private_zone"]])
    remove_bucket(old, spec["source_bucket"])
    remove_bucket(new, spec["target_bucket"])
    name = spec["name"]
    remove_balancer(old, [f"{name}-old"], [f"{name}-web-old"], f"{name}-old")
    remove_balancer(new, [f"{name}-new"], [f"{name}-web-new"], f"{name}-new")
    for host in (spec["mysql_old"], spec["mysql_new"]):
        connection = pymysql.connect(host=host, port=3306, user="lab", password="lab", autocommit=True)
        with connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{spec['db_name']}`")
            cursor.execute(f"DROP USER IF EXISTS `{spec['app_db_user']}`@'%'")
    for bucket in (spec["source_bucket"],):
        path = f"/tmp/cutover-s3-{spec['environment']}-{bucket}.jsonl"
        if os.path.exists(path):
            os.remove(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verb", choices=("observe", "remove"))
    parser.add_argument("--spec", required=True, help="molecule_world_spec as JSON")
    options = parser.parse_args()
    spec = json.loads(options.spec)
    if options.verb == "remove":
        remove(spec)
        print("changed")
        return 0
    print(json.dumps(observe(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
