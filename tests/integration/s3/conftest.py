"""Fixtures for the s3_cross_account_copy lab tests: the two accounts and the mixed source datasets."""

from __future__ import annotations

import pytest
from s3_copy_lab import SESSION_TAG, Dataset, Lab, remove_buckets, unique, write_dataset


@pytest.fixture(scope="session")
def s3_lab(lab):
    s3_lab = Lab(lab)
    yield s3_lab
    # moto keeps every byte in memory: give back what this session wrote.
    for s3 in (s3_lab.target_s3, s3_lab.source_s3, s3_lab.other_s3):
        remove_buckets(s3, SESSION_TAG)


@pytest.fixture(scope="session")
def dataset(s3_lab) -> Dataset:
    """The mixed dataset in the old account, no bucket policy: the new account may not read it."""
    bucket = unique("cutover-src-private")
    return Dataset(bucket=bucket, keys=write_dataset(s3_lab, bucket))


@pytest.fixture(scope="session")
def granted_dataset(s3_lab) -> Dataset:
    """The mixed dataset in the old account, with a bucket policy granting the new account read."""
    bucket = unique("cutover-src-granted")
    keys = write_dataset(s3_lab, bucket)
    s3_lab.grant_target_read(bucket)
    return Dataset(bucket=bucket, keys=keys)
