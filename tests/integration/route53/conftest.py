"""Fixtures of the route53 lab tests (helpers live in route53_lab.py)."""

from __future__ import annotations

import os
import uuid

import pytest
from route53_lab import role, session_for


@pytest.fixture(scope="session")
def accounts(lab):
    return {side: {"role_arn": role(lab[f"LAB_ACCOUNT_{side.upper()}"])} for side in ("old", "new", "parent")}


@pytest.fixture(scope="session")
def old_load_balancer(accounts):
    """An ALB in the old account (its DNS name resolves to a lab address)."""
    session = session_for(accounts["old"])
    ec2 = session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{n}.0/24", AvailabilityZone=f"us-east-1{zone}")["Subnet"]["SubnetId"]
               for n, zone in ((1, "a"), (2, "b"))]
    balancer = session.client("elbv2").create_load_balancer(Name=f"old-{uuid.uuid4().hex[:8]}", Subnets=subnets)
    return balancer["LoadBalancers"][0]


@pytest.fixture(autouse=True)
def _lab_environment(lab):
    os.environ.update(lab)
