"""accounts.py without a server: which credentials each option form picks, and the errors.

Role assumption talks to STS, so it is tested against the lab in
tests/integration/lab/test_accounts_lab.py.
"""

from __future__ import annotations

import pytest

from ansible_collections.cutover.migration.plugins.module_utils.accounts import (
    AccountError,
    base_credentials_from_environ,
    open_account,
    open_accounts,
    resolve_endpoint_url,
    resolve_region,
)

AWX_ENV = {"AWS_ACCESS_KEY_ID": "AKIAAWX", "AWS_SECRET_ACCESS_KEY": "secret-awx", "AWS_SECURITY_TOKEN": "token-awx"}


def frozen(session):
    return session.session.get_credentials().get_frozen_credentials()


def test_awx_security_token_is_used_as_the_session_token():
    credentials = frozen(open_account("source", {}, environ=AWX_ENV))
    assert (credentials.access_key, credentials.secret_key, credentials.token) == ("AKIAAWX", "secret-awx", "token-awx")


def test_session_token_wins_over_security_token_when_both_are_set():
    environ = dict(AWX_ENV, AWS_SESSION_TOKEN="token-new")
    assert base_credentials_from_environ(environ)["aws_session_token"] == "token-new"


def test_explicit_keys_win_over_the_environment():
    credentials = frozen(open_account("target", {"access_key": "AKIAX", "secret_key": "s", "session_token": "t"}, environ=AWX_ENV))
    assert (credentials.access_key, credentials.token) == ("AKIAX", "t")


def test_profile_is_read_from_the_config_files(tmp_path, monkeypatch):
    (tmp_path / "credentials").write_text("[migration-old]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = p\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    assert frozen(open_account("source", {"profile": "migration-old"}, environ={})).access_key == "AKIAPROFILE"


def test_unknown_profile_names_the_side_and_option(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    with pytest.raises(AccountError, match=r"^source\.profile: .*missing-profile"):
        open_account("source", {"profile": "missing-profile"}, environ={})


def test_region_and_endpoint_come_from_options_then_environment():
    environ = {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}
    assert resolve_region({}, environ) == "eu-west-1"
    assert resolve_region({"region": "ap-northeast-1"}, environ) == "ap-northeast-1"
    assert resolve_region({}, {}) == "us-east-1"
    assert resolve_endpoint_url({}, environ) == "http://127.0.0.1:4566"
    assert resolve_endpoint_url({"endpoint_url": "http://x:1"}, environ) == "http://x:1"


def test_client_carries_retry_config_and_user_agent():
    session = open_account("target", {"retry_mode": "standard", "max_attempts": 4}, environ=AWX_ENV)
    client = session.client("s3")
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 4}
    assert "cutover.migration/" in client.meta.config.user_agent_extra


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"access_key": "AKIA"}, r"^target\.secret_key: access_key and secret_key must be given together"),
        ({"secret_key": "s"}, r"^target\.access_key: "),
        ({"session_token": "t"}, r"^target\.session_token: a session_token needs access_key"),
        ({"profile": "p", "access_key": "a", "secret_key": "s"}, r"^target\.profile: give either profile"),
        ({"role_arn": "migration-role"}, r"^target\.role_arn: 'migration-role' is not a role ARN"),
        ({"external_id": "x"}, r"^target\.external_id: external_id is only used when assuming a role"),
    ],
)
def test_contradictory_options_are_refused_before_any_call(options, message):
    with pytest.raises(AccountError, match=message):
        open_account("target", options, environ=AWX_ENV)


def test_both_sides_are_validated_before_either_is_opened():
    with pytest.raises(AccountError, match=r"^target\.role_arn"):
        open_accounts({"access_key": "a", "secret_key": "s"}, {"role_arn": "nope"}, environ={})


def test_no_credentials_anywhere_is_a_clear_error(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(AccountError, match=r"^source: no AWS credentials found"):
        open_account("source", {}, environ={})
