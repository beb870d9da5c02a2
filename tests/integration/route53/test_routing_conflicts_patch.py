"""The lab's moto patch route53_routing_conflicts rejects what Route53 rejects: a simple record set
beside weighted ones of the same name and type, unless the same batch deletes it. Runs moto in a
child process, so the patched classes never leak into other tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LAB = Path(__file__).resolve().parents[2] / "lab"

CHECK = r'''
import sys
sys.path.insert(0, sys.argv[1])
import boto3
from moto import mock_aws
from moto_patches import route53_change_batches, route53_routing_conflicts
route53_change_batches.apply()
route53_routing_conflicts.apply()
with mock_aws():
    client = boto3.client("route53", region_name="us-east-1")
    zone = client.create_hosted_zone(Name="x.test.", CallerReference="1")["HostedZone"]["Id"]
    simple = {"Name": "www.x.test.", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.1"}]}
    def weighted(identifier, weight, value):
        return {"Name": "www.x.test.", "Type": "A", "TTL": 60, "SetIdentifier": identifier, "Weight": weight,
                "ResourceRecords": [{"Value": value}]}
    def identifiers():
        return sorted(str(item.get("SetIdentifier")) for item in client.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
                      if item["Name"] == "www.x.test.")
    client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": simple}]})
    try:
        client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
            {"Action": "CREATE", "ResourceRecordSet": weighted("new", 10, "192.0.2.2")}]})
        raise SystemExit("a weighted set beside the simple one was accepted")
    except client.exceptions.InvalidChangeBatch as error:
        assert "conflicting RRSet of type A" in str(error), error
    assert identifiers() == ["None"], identifiers()
    client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "DELETE", "ResourceRecordSet": simple},
        {"Action": "CREATE", "ResourceRecordSet": weighted("new", 10, "192.0.2.2")},
        {"Action": "CREATE", "ResourceRecordSet": weighted("old", 90, "192.0.2.1")}]})
    assert identifiers() == ["new", "old"], identifiers()
print("ok")
'''


def test_mixed_routing_is_rejected_and_leaves_the_zone_unchanged_a_delete_in_the_same_batch_is_accepted():
    # In-process moto, not the lab's server (which this fixture's environment points boto3 at).
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_ENDPOINT_URL")}
    environment.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    completed = subprocess.run([sys.executable, "-c", CHECK, str(LAB)], capture_output=True, text=True, check=False,
                               env=environment)
    assert completed.returncode == 0 and completed.stdout.strip() == "ok", completed.stdout + completed.stderr
