"""Fixtures for the lab's workload: labapp instances, ELBv2 load balancers that really proxy, zones."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from lab_apps_helpers import LabLoadBalancer, as_target, free_listen_address, mysql_connect, port_open, resolve, run_labapp, wait_until


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def app_database(lab):
    """``app_database(side="old", **seed)`` -> database name with the shop schema on that lab server."""
    created: list[tuple[str, str]] = []

    def create(side: str = "old", name: str | None = None, users: int = 20, orders: int = 10, products: int = 5) -> str:
        database = name or f"shop_{uuid.uuid4().hex[:8]}"
        run_labapp("schema", "--db-url", lab[f"LAB_MYSQL_{side.upper()}"], "--db-name", database, "--users", str(users),
                   "--orders", str(orders), "--products", str(products))
        created.append((side, database))
        return database

    yield create
    for side, database in created:
        with mysql_connect(lab[f"LAB_MYSQL_{side.upper()}"]) as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")


@pytest.fixture
def start_app(lab):
    """``start_app(role=..., db_name=..., ...)`` -> (instance, listen); every instance is stopped afterwards."""
    started: list[str] = []

    def start(db_name: str, role: str = "web", side: str = "old", db_host: str | None = None,
              api_url: str | None = None, resolver: str | None = None, db_user: str = "lab", db_password: str = "lab",
              db_port: int = 3306) -> tuple[str, str]:
        instance = f"t-{role}-{uuid.uuid4().hex[:8]}"
        listen = free_listen_address()
        args = ["start", "--role", role, "--instance", instance, "--listen", listen, "--side", side,
                "--db-host", db_host or "127.0.56.1", "--db-port", str(db_port), "--db-name", db_name,
                "--db-user", db_user, "--db-password", db_password, "--resolver", resolver or lab["LAB_RESOLVER"]]
        if api_url:
            args += ["--api-url", api_url]
        completed = run_labapp(*args)
        assert completed.stdout.strip().splitlines()[-1] == "changed"
        started.append(instance)
        return instance, listen

    yield start
    for instance in started:
        run_labapp("stop", "--instance", instance, check=False)
        (Path(lab["LAB_STATE_DIR"]) / f"labapp-{instance}.log").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def old_network(lab, lab_account):
    """A VPC with two subnets in the old account: what an ALB and an ip target group need in moto."""
    ec2 = lab_account("old").client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.57.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.57.{n}.0/24", AvailabilityZone=f"us-east-1{zone}")["Subnet"]["SubnetId"]
               for n, zone in ((1, "a"), (2, "b"))]
    return {"vpc": vpc, "subnets": subnets}


@pytest.fixture
def load_balancer(lab, lab_account, old_network):
    """``load_balancer(targets=[listen, ...])`` -> a LabLoadBalancer in the old account, proxying on its lab address."""
    elbv2 = lab_account("old").client("elbv2")
    created: list[LabLoadBalancer] = []

    def create(targets: list[str]) -> LabLoadBalancer:
        name = f"lb-{uuid.uuid4().hex[:8]}"
        described = elbv2.create_load_balancer(Name=name, Subnets=old_network["subnets"], Type="application",
                                               Scheme="internet-facing")["LoadBalancers"][0]
        target_group = elbv2.create_target_group(Name=name, Protocol="HTTP", Port=8080, VpcId=old_network["vpc"],
                                                 TargetType="ip", HealthCheckPath="/health")["TargetGroups"][0]
        elbv2.create_listener(LoadBalancerArn=described["LoadBalancerArn"], Protocol="HTTP", Port=80,
                              DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group["TargetGroupArn"]}])
        if targets:
            elbv2.register_targets(TargetGroupArn=target_group["TargetGroupArn"], Targets=[as_target(t) for t in targets])
        address = resolve(lab["LAB_RESOLVER"], described["DNSName"])
        balancer = LabLoadBalancer(name, described["LoadBalancerArn"], described["DNSName"],
                                   described["CanonicalHostedZoneId"], target_group["TargetGroupArn"], address)
        created.append(balancer)
        # The proxies are started by a 0.5 s poller in labd.
        wait_until(lambda: port_open(address, 80), timeout=5, what=f"proxy of {name} on {address}:80")
        return balancer

    yield create
    for balancer in created:
        try:
            elbv2.delete_load_balancer(LoadBalancerArn=balancer.arn)
        except Exception:  # noqa: BLE001 - a test may have deleted it already
            pass


@pytest.fixture
def delegated_zone(lab, lab_account):
    """``delegated_zone(account="base")`` -> (route53 client, zone id, zone name) reachable through the resolver.

    In the base account by default: the lab's DNS reads every zone of the asked account per query,
    and benchmarks leave zones of tens of thousands of records in the old and new accounts."""
    parent = lab_account("parent").client("route53")
    parent_id = next(zone["Id"] for zone in parent.list_hosted_zones_by_name(DNSName=lab["LAB_PARENT_ZONE"])["HostedZones"]
                     if zone["Name"] == lab["LAB_PARENT_ZONE"])

    def create(account: str = "base") -> tuple:
        route53 = lab_account(account).client("route53")
        name = f"app{uuid.uuid4().hex[:8]}.{lab['LAB_PARENT_ZONE']}"
        created = route53.create_hosted_zone(Name=name, CallerReference=f"{name}-{uuid.uuid4().hex}")
        parent.change_resource_record_sets(HostedZoneId=parent_id, ChangeBatch={"Changes": [{
            "Action": "UPSERT", "ResourceRecordSet": {
                "Name": name, "Type": "NS", "TTL": 60,
                "ResourceRecords": [{"Value": server} for server in created["DelegationSet"]["NameServers"]]}}]})
        return route53, created["HostedZone"]["Id"], name

    return create


@pytest.fixture
def private_mariadb():
    """A throwaway MariaDB of this test's own (own address, own datadir): a test may make it read-only
    without freezing anyone else's writes on the shared lab servers."""
    installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    server_binary = next((path for path in ("/usr/sbin/mariadbd", "/usr/sbin/mysqld", "/usr/bin/mariadbd")
                          if Path(path).exists()), None)
    if not installer or not server_binary:
        pytest.fail("MariaDB binaries missing; run `make setup`")
    work = Path(tempfile.mkdtemp(prefix="labapp-mariadb-"))
    address = free_listen_address().rpartition(":")[0]
    subprocess.run([installer, "--no-defaults", f"--datadir={work / 'data'}", "--user=root",
                    "--auth-root-authentication-method=socket", "--skip-test-db"], check=True, capture_output=True)
    process = subprocess.Popen(
        [server_binary, "--no-defaults", f"--datadir={work / 'data'}", f"--socket={work / 'mysqld.sock'}",
         f"--pid-file={work / 'mysqld.pid'}", "--port=3306", f"--bind-address={address}", "--user=root",
         "--skip-name-resolve", "--skip-log-bin", f"--log-error={work / 'error.log'}", "--innodb-buffer-pool-size=32M"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: (work / "mysqld.sock").exists() and port_open(address, 3306), timeout=30,
                   what="private MariaDB")
        client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
        subprocess.run([client, "--no-defaults", f"--socket={work / 'mysqld.sock'}", "-uroot", "-e",
                        "CREATE USER 'lab'@'%' IDENTIFIED BY 'lab'; GRANT ALL PRIVILEGES ON *.* TO 'lab'@'%' WITH GRANT OPTION;"],
                       check=True, capture_output=True)
        yield {"host": address, "url": f"mysql://lab:lab@{address}:3306/"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(work, ignore_errors=True)
