# -*- coding: utf-8 -*-
# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two AWS identities per migration run: ``source`` and ``target``.

Plain Python, no Ansible import: modules, roles' helpers, tests and benchmarks all build
their boto3 sessions here from one option dict per side.

Base identity, in order: explicit ``access_key``/``secret_key`` (+ ``session_token``), a named
``profile``, the environment as AWX injects it, then boto3's default chain. A ``role_arn`` is
then assumed from that base identity, with credentials refreshed before they expire so a
many-hour copy does not die at the one-hour mark.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, MutableMapping

try:
    import boto3
    import botocore.credentials
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - reported by the module as missing_required_lib
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = exc

COLLECTION_NAME = "cutover.migration"
COLLECTION_VERSION = "0.1.0"

DEFAULT_REGION = "us-east-1"
DEFAULT_RETRY_MODE = "adaptive"
DEFAULT_MAX_ATTEMPTS = 10

# Every key a side's account options may carry; modules add their own keys (zone, bucket, ...)
# next to these in the same dict, so only these are read here.
ACCOUNT_OPTION_NAMES = (
    "profile",
    "role_arn",
    "external_id",
    "session_name",
    "access_key",
    "secret_key",
    "session_token",
    "region",
    "endpoint_url",
    "retry_mode",
    "max_attempts",
)

# AWX injects AWS_SECURITY_TOKEN for temporary credentials; newer tools use AWS_SESSION_TOKEN.
# Reading only one of them silently turns temporary credentials into invalid ones.
SESSION_TOKEN_ENV_NAMES = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


class AccountError(Exception):
    """A side's account options are wrong or the identity could not be established."""

    def __init__(self, side: str, option: str | None, message: str, aws_error_code: str | None = None):
        self.side = side
        self.option = option
        self.aws_error_code = aws_error_code
        where = f"{side}.{option}" if option else side
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class AccountSession:
    """A ready boto3 session for one side, with the client settings every call should use."""

    side: str
    session: Any
    region: str
    endpoint_url: str | None
    config: Any
    role_arn: str | None = None
    _identity: dict = field(default_factory=dict, compare=False, repr=False)

    def client(self, service: str, region: str | None = None) -> Any:
        kwargs: dict[str, Any] = {"region_name": region or self.region, "config": self.config}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return self.session.client(service, **kwargs)

    def caller_identity(self) -> dict:
        """Account and ARN of this side (one STS call, cached)."""
        if not self._identity:
            try:
                answer = self.client("sts").get_caller_identity()
            except (ClientError, BotoCoreError) as exc:
                raise AccountError(self.side, None, f"the credentials do not work: {describe_aws_error(exc)}",
                                   aws_error_code=aws_error_code(exc)) from exc
            self._identity.update(account=answer["Account"], arn=answer["Arn"])
        return dict(self._identity)

    @property
    def account_id(self) -> str:
        return str(self.caller_identity()["account"])


def aws_error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return response.get("Error", {}).get("Code")
    return None


def describe_aws_error(exc: BaseException) -> str:
    """One line naming the AWS error code and message, the way a user would search for it."""
    code = aws_error_code(exc)
    if code:
        message = exc.response.get("Error", {}).get("Message", "")  # type: ignore[attr-defined]
        operation = getattr(exc, "operation_name", "")
        prefix = f"{operation}: " if operation else ""
        return f"{prefix}{code}: {message}".rstrip(": ")
    return str(exc)


def client_config(options: Mapping[str, Any]) -> Any:
    retry_mode = options.get("retry_mode") or DEFAULT_RETRY_MODE
    max_attempts = int(options.get("max_attempts") or DEFAULT_MAX_ATTEMPTS)
    return Config(
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},  # first try included
        user_agent_extra=f"{COLLECTION_NAME}/{COLLECTION_VERSION}",
        max_pool_connections=64,
    )


def resolve_region(options: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    return str(options.get("region") or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION)


def resolve_endpoint_url(options: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    # boto3 reads AWS_ENDPOINT_URL itself, but only for clients it builds without an explicit
    # endpoint; reading it here keeps STS (role assumption) and every service on the same one.
    value = options.get("endpoint_url") or environ.get("AWS_ENDPOINT_URL")
    return str(value) if value else None


def validate_account_options(side: str, options: Mapping[str, Any]) -> None:
    """Reject contradictory options before any call is made."""
    has_access = bool(options.get("access_key"))
    has_secret = bool(options.get("secret_key"))
    if has_access != has_secret:
        missing = "secret_key" if has_access else "access_key"
        raise AccountError(side, missing, "access_key and secret_key must be given together; set both, or neither "
                                          "to use the profile or the environment's credentials")
    if options.get("session_token") and not has_access:
        raise AccountError(side, "session_token", "a session_token needs access_key and secret_key beside it")
    if options.get("profile") and has_access:
        raise AccountError(side, "profile", "give either profile or access_key/secret_key, not both")
    role_arn = options.get("role_arn")
    if role_arn and not (str(role_arn).startswith("arn:aws") and ":role/" in str(role_arn)):
        raise AccountError(side, "role_arn", f"{role_arn!r} is not a role ARN; expected arn:aws:iam::<account>:role/<name>")
    for name in ("external_id", "session_name"):
        if options.get(name) and not role_arn:
            raise AccountError(side, name, f"{name} is only used when assuming a role; set role_arn too")
    retry_mode = options.get("retry_mode")
    if retry_mode and retry_mode not in ("adaptive", "standard", "legacy"):
        raise AccountError(side, "retry_mode", f"{retry_mode!r} is not one of adaptive, standard, legacy")


def base_credentials_from_environ(environ: Mapping[str, str]) -> dict[str, str] | None:
    """Keys as AWX injects them, or None to leave the choice to boto3's default chain."""
    access_key = environ.get("AWS_ACCESS_KEY_ID") or environ.get("AWS_ACCESS_KEY")
    secret_key = environ.get("AWS_SECRET_ACCESS_KEY") or environ.get("AWS_SECRET_KEY")
    if not (access_key and secret_key):
        return None
    credentials = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
    for name in SESSION_TOKEN_ENV_NAMES:
        if environ.get(name):
            credentials["aws_session_token"] = environ[name]
            break
    return credentials


def base_session(side: str, options: Mapping[str, Any], environ: Mapping[str, str], region: str) -> Any:
    if options.get("access_key"):
        return boto3.Session(
            aws_access_key_id=options["access_key"],
            aws_secret_access_key=options["secret_key"],
            aws_session_token=options.get("session_token") or None,
            region_name=region,
        )
    if options.get("profile"):
        try:
            return boto3.Session(profile_name=options["profile"], region_name=region)
        except BotoCoreError as exc:
            raise AccountError(side, "profile", f"{exc}; check ~/.aws/config or AWS_CONFIG_FILE") from exc
    from_env = base_credentials_from_environ(environ)
    if from_env:
        return boto3.Session(region_name=region, **from_env)
    return boto3.Session(region_name=region)


def assume_role_credentials(side: str, sts: Any, options: Mapping[str, Any]) -> Callable[[], dict]:
    """A fetcher returning botocore refreshable-credential metadata for the side's role."""
    request: dict[str, Any] = {
        "RoleArn": options["role_arn"],
        "RoleSessionName": options.get("session_name") or f"cutover-{side}-{uuid.uuid4().hex[:12]}",
    }
    if options.get("external_id"):
        request["ExternalId"] = options["external_id"]

    def fetch() -> dict:
        try:
            answer = sts.assume_role(**request)
        except (ClientError, BotoCoreError) as exc:
            raise AccountError(
                side, "role_arn",
                f"could not assume {options['role_arn']}: {describe_aws_error(exc)}; check the role's trust "
                "policy allows the base identity (and the external_id, if the role requires one)",
                aws_error_code=aws_error_code(exc),
            ) from exc
        credentials = answer["Credentials"]
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": credentials["Expiration"].isoformat(),
        }

    return fetch


def open_account(side: str, options: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None) -> AccountSession:
    """Build the boto3 session for one side of the migration.

    Nothing but STS is called here (and only when a role is assumed); a broken identity
    surfaces as :class:`AccountError` naming the side and the option to fix.
    """
    if not HAS_BOTO3:
        raise AccountError(side, None, f"boto3 and botocore are required: {BOTO3_IMPORT_ERROR}")
    options = dict(options or {})
    environ = os.environ if environ is None else environ
    validate_account_options(side, options)
    region = resolve_region(options, environ)
    endpoint_url = resolve_endpoint_url(options, environ)
    config = client_config(options)
    session = base_session(side, options, environ, region)

    if options.get("role_arn"):
        sts_kwargs: dict[str, Any] = {"region_name": region, "config": config}
        if endpoint_url:
            sts_kwargs["endpoint_url"] = endpoint_url
        fetch = assume_role_credentials(side, session.client("sts", **sts_kwargs), options)
        refreshable = botocore.credentials.RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="sts-assume-role",
        )
        botocore_session = botocore.session.get_session()
        botocore_session._credentials = refreshable  # the documented way boto3 takes refreshable credentials
        botocore_session.set_config_variable("region", region)
        session = boto3.Session(botocore_session=botocore_session)
    elif session.get_credentials() is None:
        raise AccountError(side, None, "no AWS credentials found: set access_key/secret_key or profile for this "
                                       "side, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment")

    return AccountSession(side=side, session=session, region=region, endpoint_url=endpoint_url,
                          config=config, role_arn=options.get("role_arn"))


def open_accounts(source: Mapping[str, Any] | None, target: Mapping[str, Any] | None,
                  environ: MutableMapping[str, str] | None = None) -> tuple[AccountSession, AccountSession]:
    """Both sides of a migration, validated before either is used."""
    validate_account_options("source", source or {})
    validate_account_options("target", target or {})
    return open_account("source", source, environ), open_account("target", target, environ)
