"""The lab's AWS keeps accounts apart like AWS does; its two MariaDB servers are set up for delta apply."""

from __future__ import annotations

import uuid
from urllib.parse import urlparse

import pymysql
import pytest
from botocore.exceptions import ClientError


def test_bucket_names_are_global_across_accounts(lab_account):
    name = f"models-{uuid.uuid4().hex[:10]}"
    lab_account("old").client("s3").create_bucket(Bucket=name)
    with pytest.raises(ClientError) as raised:
        lab_account("new").client("s3").create_bucket(Bucket=name)
    assert raised.value.response["Error"]["Code"] == "BucketAlreadyExists"
    assert name not in {b["Name"] for b in lab_account("new").client("s3").list_buckets()["Buckets"]}


def test_each_account_sees_only_its_own_hosted_zones(lab_account):
    name = f"only{uuid.uuid4().hex[:8]}.test."
    lab_account("old").client("route53").create_hosted_zone(Name=name, CallerReference=name)
    in_old = {z["Name"] for z in lab_account("old").client("route53").list_hosted_zones()["HostedZones"]}
    in_new = {z["Name"] for z in lab_account("new").client("route53").list_hosted_zones()["HostedZones"]}
    assert name in in_old
    assert name not in in_new


def test_assumed_roles_land_in_the_named_accounts(lab, lab_account):
    assert lab_account("old").account_id == lab["LAB_ACCOUNT_OLD"]
    assert lab_account("new").account_id == lab["LAB_ACCOUNT_NEW"]
    assert lab_account("parent").account_id == lab["LAB_ACCOUNT_PARENT"]


def connect(url: str) -> pymysql.connections.Connection:
    parsed = urlparse(url)
    return pymysql.connect(host=parsed.hostname, port=parsed.port, user=parsed.username, password=parsed.password)


@pytest.mark.parametrize("side", ["OLD", "NEW"])
def test_mariadb_servers_log_binlog_in_row_format(lab, side):
    with connect(lab[f"LAB_MYSQL_{side}"]) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@server_id")
        log_bin, binlog_format, row_image, server_id = cursor.fetchone()
    assert (log_bin, binlog_format, row_image) == (1, "ROW", "FULL")
    assert server_id == (1 if side == "OLD" else 2)


def test_the_lab_account_can_create_databases_and_users(lab):
    database = f"lab_{uuid.uuid4().hex[:8]}"
    with connect(lab["LAB_MYSQL_NEW"]) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {database}")
        cursor.execute(f"CREATE TABLE {database}.t (id INT PRIMARY KEY, note VARCHAR(10))")
        cursor.execute(f"INSERT INTO {database}.t VALUES (1, 'x')")
        connection.commit()
        cursor.execute(f"SELECT note FROM {database}.t WHERE id = 1")
        assert cursor.fetchone() == ("x",)
        cursor.execute(f"DROP DATABASE {database}")
