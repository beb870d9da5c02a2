"""The lab's AWS and DNS in one process: moto in server mode plus the authoritative DNS.

One process so the DNS server reads hosted zones straight from moto's Route53 backend: always
fresh, no polling. Started and stopped by labctl; not meant to be run by hand.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab_config  # noqa: E402
import moto_patches  # noqa: E402


def apply_moto_patches() -> list[str]:
    applied = []
    for module_info in sorted(pkgutil.iter_modules(moto_patches.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"moto_patches.{module_info.name}")
        module.apply()
        applied.append(module_info.name)
    return applied


def create_parent_zone() -> None:
    """The parent zone (``test.``) in the parent account, as a registrar's zone would be."""
    import boto3

    base = boto3.client("sts", endpoint_url=lab_config.ENDPOINT_URL, region_name=lab_config.REGION,
                        aws_access_key_id=lab_config.AWS_ACCESS_KEY_ID,
                        aws_secret_access_key=lab_config.AWS_SECRET_ACCESS_KEY)
    credentials = base.assume_role(RoleArn=lab_config.role_arn(lab_config.ACCOUNT_PARENT), RoleSessionName="labd")["Credentials"]
    route53 = boto3.client("route53", endpoint_url=lab_config.ENDPOINT_URL, region_name=lab_config.REGION,
                           aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
                           aws_session_token=credentials["SessionToken"])
    existing = route53.list_hosted_zones_by_name(DNSName=lab_config.PARENT_ZONE)["HostedZones"]
    if not any(zone["Name"] == lab_config.PARENT_ZONE for zone in existing):
        route53.create_hosted_zone(Name=lab_config.PARENT_ZONE, CallerReference="lab-parent-zone",
                                   HostedZoneConfig={"Comment": "lab parent zone (registrar side)", "PrivateZone": False})


def main() -> int:
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    applied = apply_moto_patches()
    import lab_dns
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=lab_config.MOTO_HOST, port=lab_config.MOTO_PORT, verbose=False)
    server.start()
    lab_dns.serve_dns()
    create_parent_zone()
    print(f"labd ready: moto {lab_config.ENDPOINT_URL}, patches {applied}", flush=True)
    (lab_config.STATE_DIR / "labd.ready").write_text(str(os.getpid()))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        time.sleep(0.5)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
