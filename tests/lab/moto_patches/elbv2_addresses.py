"""Give every ELBv2 load balancer a loopback address the lab's DNS serves for its DNSName.

So an alias record to a load balancer resolves to somewhere traffic can really go, and a DNS
flip moves it. moto also reports one placeholder CanonicalHostedZoneID for every load balancer;
the lab reports the one AWS uses for ALBs in the region, as a real describe call would.
"""

from __future__ import annotations

import itertools
import threading
import zlib

from moto.elbv2 import models

LOAD_BALANCER_NETWORK = "127.0.54."
# Route53 hosted zone ids of Elastic Load Balancing (ALB/CLB) per region, from the AWS general reference.
ELB_HOSTED_ZONE_IDS = {
    "us-east-1": "Z35SXDOTRQ7X7K",
    "us-east-2": "Z3AADJGX6KTTL2",
    "us-west-1": "Z368ELLRRE2KJ0",
    "us-west-2": "Z1H1FL5HABSF5",
    "eu-west-1": "Z32O12XQLNTSW2",
    "eu-central-1": "Z215JYRZR1TBD5",
    "ap-northeast-1": "Z14GRHDCWA56QT",
}

_lock = threading.Lock()
_host_numbers = itertools.count(1)
addresses_by_dns_name: dict[str, str] = {}


def address_for(dns_name: str) -> str | None:
    return addresses_by_dns_name.get(dns_name.lower().rstrip(".").removeprefix("dualstack."))


def apply() -> None:
    original = models.ELBv2Backend.create_load_balancer

    def create_load_balancer(self, *args, **kwargs):
        load_balancer = original(self, *args, **kwargs)
        # moto names every load balancer <name>-1.<region>...; AWS adds a per-balancer number, and
        # two accounts' balancers of one name must not share a DNS name (and so a lab address).
        number = zlib.crc32(load_balancer.arn.encode()) % 10**10
        load_balancer.dns_name = f"{load_balancer.name}-{number}.{self.region_name}.elb.amazonaws.com"
        with _lock:
            key = load_balancer.dns_name.lower()
            if key not in addresses_by_dns_name:
                addresses_by_dns_name[key] = f"{LOAD_BALANCER_NETWORK}{next(_host_numbers)}"
        load_balancer.lab_address = addresses_by_dns_name[key]
        load_balancer.canonical_hosted_zone_id = ELB_HOSTED_ZONE_IDS.get(self.region_name, "Z35SXDOTRQ7X7K")
        return load_balancer

    models.ELBv2Backend.create_load_balancer = create_load_balancer
