"""Role assumption through the lab's STS: one base identity reaches both accounts."""

from __future__ import annotations

import pytest

from ansible_collections.cutover.migration.plugins.module_utils.accounts import AccountError, open_accounts


def test_one_base_identity_assumes_a_role_in_each_account(lab):
    source, target = open_accounts(
        {"role_arn": f"arn:aws:iam::{lab['LAB_ACCOUNT_OLD']}:role/migration", "session_name": "cutover-test"},
        {"role_arn": f"arn:aws:iam::{lab['LAB_ACCOUNT_NEW']}:role/migration", "external_id": "awx-42"},
    )
    assert source.account_id == lab["LAB_ACCOUNT_OLD"]
    assert target.account_id == lab["LAB_ACCOUNT_NEW"]
    assert "assumed-role/migration/cutover-test" in source.caller_identity()["arn"]


def test_awx_style_environment_reaches_sts(lab):
    environ = {"AWS_ACCESS_KEY_ID": lab["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": lab["AWS_SECRET_ACCESS_KEY"],
               "AWS_SECURITY_TOKEN": "awx-token", "AWS_ENDPOINT_URL": lab["AWS_ENDPOINT_URL"]}
    source, _target = open_accounts({"role_arn": f"arn:aws:iam::{lab['LAB_ACCOUNT_OLD']}:role/migration"}, {}, environ=environ)
    assert source.account_id == lab["LAB_ACCOUNT_OLD"]


def test_unreachable_endpoint_names_the_side(lab):
    with pytest.raises(AccountError, match=r"^target\.role_arn: could not assume"):
        open_accounts({}, {"role_arn": f"arn:aws:iam::{lab['LAB_ACCOUNT_NEW']}:role/x", "endpoint_url": "http://127.0.0.1:9",
                           "max_attempts": 1})
