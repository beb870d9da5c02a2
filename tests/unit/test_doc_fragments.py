"""The account options are documented exactly as the argument spec accepts them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from ansible_collections.cutover.migration.plugins.doc_fragments.accounts import ModuleDocFragment
from ansible_collections.cutover.migration.plugins.module_utils.account_options import ACCOUNT_ARGUMENT_SPEC

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_rendered_doc_fragments_are_current():
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "hacking" / "render_doc_fragments.py"), "--check"], check=False,
                               capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout


def test_documented_account_options_match_the_argument_spec():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]["source"]["suboptions"]
    assert set(documented) == set(ACCOUNT_ARGUMENT_SPEC)
    for name, spec in ACCOUNT_ARGUMENT_SPEC.items():
        assert documented[name]["type"] == spec["type"], name
        assert documented[name].get("default") == spec.get("default"), name
        assert documented[name].get("choices") == spec.get("choices"), name
        assert sorted(documented[name].get("aliases", [])) == sorted(spec.get("aliases", [])), name
