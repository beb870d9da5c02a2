"""Fixed facts of the lab: addresses, ports, accounts. Imported by labd, labctl and tests."""

from __future__ import annotations

import os
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
REPO_ROOT = LAB_DIR.parents[1]
STATE_DIR = Path(os.environ.get("LAB_STATE_DIR", LAB_DIR / "state"))

MOTO_HOST = "127.0.0.1"
MOTO_PORT = int(os.environ.get("LAB_MOTO_PORT", "4566"))
ENDPOINT_URL = f"http://{MOTO_HOST}:{MOTO_PORT}"
REGION = "us-east-1"

BASE_ACCOUNT = "123456789012"  # moto's default account: the identity the keys below map to
ACCOUNT_OLD = "111111111111"
ACCOUNT_NEW = "222222222222"
ACCOUNT_PARENT = "333333333333"

# One loopback address per account: a query reaching it is answered from that account's zones,
# which is how the lab tells the old zone's name servers from the new one's.
ACCOUNT_DNS_ADDRESSES = {
    BASE_ACCOUNT: "127.0.53.10",
    ACCOUNT_OLD: "127.0.53.11",
    ACCOUNT_NEW: "127.0.53.12",
    ACCOUNT_PARENT: "127.0.53.13",
}
REGISTRY_DNS_ADDRESS = "127.0.53.1"  # answers the name-server TLD and load balancer names
# The "AmazonProvidedDNS" of each account's VPCs: answers the account's private hosted zones and
# recurses through the lab resolver for everything else.
VPC_RESOLVER_ADDRESSES = {
    ACCOUNT_OLD: "127.0.53.21",
    ACCOUNT_NEW: "127.0.53.22",
}
RESOLVER_ADDRESS = "127.0.53.53"
DNS_PORT = 53

NAME_SERVER_DOMAIN = "r53.lab."  # each zone's name servers: ns-<n>.<zone-id>.r53.lab.
LOAD_BALANCER_DOMAIN = "elb.amazonaws.com."
LOAD_BALANCER_NETWORK = "127.0.54."  # 127.0.54.<n>, one per ELBv2 load balancer
PARENT_ZONE = "test."

MYSQL_USER = "lab"
MYSQL_PASSWORD = "lab"
# Each server on its own loopback address and the standard port, so a DB endpoint flip can be a
# pure DNS change (an A record from one address to the other), as in field report 002.
MYSQL_SERVERS = {"old": {"host": "127.0.56.1", "port": 3306, "server_id": 1},
                 "new": {"host": "127.0.56.2", "port": 3306, "server_id": 2}}

AWS_ACCESS_KEY_ID = "testing"
AWS_SECRET_ACCESS_KEY = "testing"


def lab_environment() -> dict[str, str]:
    """What `labctl env` prints: the names tests, benchmarks and the demo rely on."""
    env = {
        "AWS_ENDPOINT_URL": ENDPOINT_URL,
        "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "LAB_ACCOUNT_BASE": BASE_ACCOUNT,
        "LAB_ACCOUNT_OLD": ACCOUNT_OLD,
        "LAB_ACCOUNT_NEW": ACCOUNT_NEW,
        "LAB_ACCOUNT_PARENT": ACCOUNT_PARENT,
        "LAB_PARENT_ZONE": PARENT_ZONE,
        "LAB_RESOLVER": RESOLVER_ADDRESS,
        "LAB_DNS_OLD": ACCOUNT_DNS_ADDRESSES[ACCOUNT_OLD],
        "LAB_DNS_NEW": ACCOUNT_DNS_ADDRESSES[ACCOUNT_NEW],
        "LAB_DNS_PARENT": ACCOUNT_DNS_ADDRESSES[ACCOUNT_PARENT],
        "LAB_DNS_REGISTRY": REGISTRY_DNS_ADDRESS,
        "LAB_VPC_RESOLVER_OLD": VPC_RESOLVER_ADDRESSES[ACCOUNT_OLD],
        "LAB_VPC_RESOLVER_NEW": VPC_RESOLVER_ADDRESSES[ACCOUNT_NEW],
        "LAB_STATE_DIR": str(STATE_DIR),
    }
    for side, server in MYSQL_SERVERS.items():
        env[f"LAB_MYSQL_{side.upper()}"] = f"mysql://{MYSQL_USER}:{MYSQL_PASSWORD}@{server['host']}:{server['port']}/"
    import pglab  # the PostgreSQL pair keeps its own facts beside its start-up code

    env.update(pglab.environment())
    return env


def role_arn(account: str, name: str = "cutover-lab") -> str:
    return f"arn:aws:iam::{account}:role/{name}"
