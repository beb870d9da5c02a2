"""cutover.migration.dns_cutover_wait through ansible-playbook (argument spec, check mode, failures)."""

from __future__ import annotations

import time


def test_check_mode_reports_one_round_without_waiting(dns_lab, ansible_module):
    zone = dns_lab.delegated_zone()
    zone.upsert("www", "A", ["10.1.1.1"])
    started = time.time()
    result = ansible_module("dns_cutover_wait", {
        "name": zone.fqdn("www"), "expect": ["10.2.2.2"], "resolvers": [dns_lab.resolver],
        "timeout": 120, "poll_interval": 1}, check=True)
    assert time.time() - started < 30
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False and result["propagated"] is False
    assert result["rounds"] == 1 and result["pending_stage"] == "authoritative"
    assert {row["stage"] for row in result["servers"]} == {"authoritative", "resolvers"}
    assert {tuple(row["answer"]) for row in result["servers"]} == {("10.1.1.1",)}
    assert all(row["matches"] is False and "unexpected A 10.1.1.1" in row["reason"] for row in result["servers"])


def test_a_landed_change_passes_and_a_rerun_is_the_same_and_changes_nothing(dns_lab, ansible_module):
    zone = dns_lab.delegated_zone()
    zone.upsert("www", "A", ["10.2.2.2"], ttl=2)
    args = {"name": zone.fqdn("www"), "type": "A", "expect": ["10.2.2.2"], "resolvers": [dns_lab.resolver],
            "stages": ["authoritative", "resolvers", "cache_expiry"], "timeout": 30, "poll_interval": 1}
    first = ansible_module("dns_cutover_wait", args)
    second = ansible_module("dns_cutover_wait", args)
    for result in (first, second):
        assert not result.get("failed"), result.get("msg")
        assert result["changed"] is False and result["propagated"] is True
        assert set(result["stage_times"]) == {"authoritative", "resolvers", "cache_expiry"}
        assert result["max_old_ttl"] == 2 and result["cache_clear_at"]
        assert result["servers_disagreeing"] == 0 and result["servers_total"] == 5
        assert {row["server"] for row in result["servers"] if row["stage"] == "authoritative"} == set(zone.name_servers)
    assert dns_lab.ask_resolver(zone.fqdn("www"))[0] == ["10.2.2.2"]


def test_a_wrong_expectation_times_out_with_the_table_and_a_rerun_after_the_fix_passes(dns_lab, ansible_module):
    zone = dns_lab.delegated_zone()
    zone.upsert("www", "A", ["10.1.1.1"], ttl=2)
    args = {"name": zone.fqdn("www"), "expect": ["10.2.2.2"], "resolvers": [dns_lab.resolver],
            "stages": ["authoritative"], "timeout": 2, "poll_interval": 0.5}
    failed = ansible_module("dns_cutover_wait", args)
    assert failed["failed"] is True and failed["changed"] is False and failed["propagated"] is False
    for server in zone.name_servers:
        assert f"{server} ({dns_lab.env['LAB_DNS_OLD']}) [authoritative] answered 10.1.1.1 (ttl 2)" in failed["msg"]
    assert "did not pass the authoritative stage" in failed["msg"]
    assert failed["servers_disagreeing"] == 4 and len(failed["servers"]) == 4

    zone.upsert("www", "A", ["10.2.2.2"], ttl=2)
    fixed = ansible_module("dns_cutover_wait", args)
    assert not fixed.get("failed"), fixed.get("msg")
    assert fixed["propagated"] is True


def test_an_address_that_never_answers_fails_the_task_naming_it(dns_lab, ansible_module):
    zone = dns_lab.delegated_zone()
    zone.upsert("www", "A", ["10.1.1.1"])
    result = ansible_module("dns_cutover_wait", {
        "name": zone.fqdn("www"), "expect": ["10.1.1.1"], "stages": ["authoritative"],
        "nameservers": [dns_lab.env["LAB_DNS_OLD"], "127.0.53.99"], "resolvers": [dns_lab.resolver],
        "timeout": 2, "poll_interval": 0.5, "query_timeout": 0.5})
    assert result["failed"] is True
    assert "127.0.53.99 (127.0.53.99) [authoritative] answered nothing" in result["msg"]
    assert "did not answer for the whole wait" in result["msg"]
    silent = next(row for row in result["servers"] if row["address"] == "127.0.53.99")
    assert silent["rcode"] == "NO_ANSWER" and silent["reason"].startswith("timed out after 0.5 s")


def test_contradicting_options_fail_naming_the_option_before_asking_anything(dns_lab, ansible_module):
    result = ansible_module("dns_cutover_wait", {
        "name": "www.example.invalid", "expect": ["10.1.1.1"], "expect_absent": True, "resolvers": ["127.0.53.99"]})
    assert result["failed"] is True
    assert result["msg"].startswith("expect_absent: give only one of expect, expect_alias, expect_absent")
    bad_value = ansible_module("dns_cutover_wait", {
        "name": "www.example.invalid", "type": "A", "expect": ["www.example.com"], "resolvers": ["127.0.53.99"]})
    assert bad_value["failed"] is True and bad_value["msg"].startswith("expect: 'www.example.com' is not a valid A value")
    no_parent = ansible_module("dns_cutover_wait", {
        "name": "example.com", "type": "NS", "stages": ["delegation"], "resolvers": ["127.0.53.99"]})
    assert no_parent["msg"].startswith("expect_name_servers: the delegation stage compares")


def test_expect_alias_to_a_lab_load_balancer_through_the_module(dns_lab, ansible_module):
    zone = dns_lab.delegated_zone()
    balancer = dns_lab.load_balancer("old")
    zone.alias("www", balancer["DNSName"], balancer["CanonicalHostedZoneId"])
    result = ansible_module("dns_cutover_wait", {
        "name": zone.fqdn("www"), "expect_alias": {"dns_name": balancer["DNSName"],
                                                   "hosted_zone_id": balancer["CanonicalHostedZoneId"]},
        "resolvers": [dns_lab.resolver], "timeout": 10, "poll_interval": 1})
    assert not result.get("failed"), result.get("msg")
    assert result["propagated"] is True
    addresses = dns_lab.ask_resolver(balancer["DNSName"])[0]
    assert result["expected"] == addresses
    assert {tuple(row["answer"]) for row in result["servers"]} == {tuple(addresses)}
