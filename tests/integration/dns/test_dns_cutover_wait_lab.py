"""dns_cutover_wait's core against the lab's real DNS: Route53 (moto) -> authoritative servers -> unbound.

Zones are made with boto3 in the lab's accounts and delegated from `test.` in the parent account,
with TTLs of a few seconds so a whole cutover fits in a test.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from ansible_collections.cutover.migration.plugins.module_utils.dns_probe import (
    PropagationTimeout,
    plan_wait,
    wait_for_propagation,
)

POLL = 1.0


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_flip_passes_authoritative_at_once_resolvers_after_the_cached_ttl_and_reports_cache_clear_at(dns_lab):
    zone = dns_lab.delegated_zone()
    ttl = 4
    zone.upsert("www", "A", ["10.1.1.1"], ttl=ttl)
    # a client's resolver caches the old answer just before the flip
    assert dns_lab.ask_resolver(zone.fqdn("www")) == (["10.1.1.1"], ttl)

    plan = plan_wait(zone.fqdn("www"), "A", expect=["10.2.2.2"], resolvers=[dns_lab.resolver], poll_interval=POLL,
                     timeout=60, stages=["authoritative", "resolvers", "cache_expiry"])
    waiting = dns_lab.in_background(wait_for_propagation, plan)
    time.sleep(1.2)
    watcher = dns_lab.first_change_seen(zone.fqdn("www"), ["10.2.2.2"])
    flip_started = time.time()
    zone.upsert("www", "A", ["10.2.2.2"], ttl=ttl)
    flip_done = time.time()
    result = waiting.result(timeout=60)
    returned_at = time.time()
    cache_really_expired_at = watcher.result(timeout=30)

    assert result.propagated
    authoritative_at = epoch(result.stage_times["authoritative"])
    resolvers_at = epoch(result.stage_times["resolvers"])
    assert flip_started <= authoritative_at <= flip_done + POLL + 0.5, "authoritative passes within one poll"
    assert resolvers_at >= cache_really_expired_at - 0.1, "resolvers must not pass while the old answer is cached"
    assert resolvers_at - cache_really_expired_at <= POLL + 1, "overshoot past the true expiry"
    assert result.max_old_ttl == ttl and result.max_old_ttl_source == "observed"
    assert result.cache_clear_at == pytest.approx(authoritative_at + ttl, abs=0.01)
    # no cache that fetched before the flip can outlive cache_clear_at, and it is at most one poll late
    assert result.cache_clear_at >= flip_started + ttl - 1.0
    assert result.cache_clear_at - (flip_done + ttl) <= POLL + 1
    assert result.cache_clear_at <= returned_at <= result.cache_clear_at + 1
    rows = {(row.stage, row.server): row for row in result.servers}
    assert {server for stage, server in rows if stage == "authoritative"} == set(zone.name_servers)
    assert all(row.answer == ("10.2.2.2",) and row.authoritative for row in result.servers
               if row.stage == "authoritative")


def test_an_ns_switch_passes_delegation_when_the_parent_hands_out_the_new_set_and_the_resolver_follows(dns_lab):
    old_zone = dns_lab.create_zone("old")
    new_zone = dns_lab.create_zone("new", name=old_zone.name)
    ns_ttl = 3
    dns_lab.delegate(old_zone, ttl=ns_ttl)
    old_zone.upsert("www", "A", ["10.1.1.1"], ttl=2)
    new_zone.upsert("www", "A", ["10.2.2.2"], ttl=2)
    assert dns_lab.ask_resolver(old_zone.fqdn("www"))[0] == ["10.1.1.1"]

    delegation = plan_wait(old_zone.name, "NS", expect_name_servers=new_zone.name_servers, poll_interval=POLL,
                           resolvers=[dns_lab.resolver], stages=["delegation", "cache_expiry"], timeout=60)
    followed = plan_wait(old_zone.fqdn("www"), "A", expect=["10.2.2.2"], poll_interval=POLL, timeout=60,
                         resolvers=[dns_lab.resolver], stages=["resolvers"])
    waiting = dns_lab.in_background(wait_for_propagation, delegation)
    time.sleep(1.2)
    switched_at = time.time()
    dns_lab.delegate(old_zone, new_zone.name_servers, ttl=ns_ttl)
    resolver_waiting = dns_lab.in_background(wait_for_propagation, followed)
    result = waiting.result(timeout=60)

    delegation_at = epoch(result.stage_times["delegation"])
    assert switched_at <= delegation_at <= switched_at + POLL + 0.5
    assert len(result.servers) == 4  # every name server of test., each of its addresses
    assert {row.answer for row in result.servers} == {tuple(sorted(new_zone.name_servers))}
    assert result.max_old_ttl == ns_ttl
    followed_result = resolver_waiting.result(timeout=60)
    resolver_at = epoch(followed_result.stage_times["resolvers"])
    # the resolver keeps the old delegation (NS TTL) and the old answer (record TTL) at most that long
    assert resolver_at - switched_at <= ns_ttl + 2 + POLL + 1
    assert dns_lab.ask_resolver(old_zone.fqdn("www"))[0] == ["10.2.2.2"]


def test_the_servers_are_found_by_walking_from_the_parent_not_from_the_resolvers_cache(dns_lab):
    old_zone = dns_lab.create_zone("old")
    new_zone = dns_lab.create_zone("new", name=old_zone.name)
    dns_lab.delegate(old_zone, ttl=30)
    old_zone.upsert("www", "A", ["10.1.1.1"], ttl=30)
    new_zone.upsert("www", "A", ["10.2.2.2"], ttl=30)
    assert dns_lab.ask_resolver(old_zone.fqdn("www"))[0] == ["10.1.1.1"]  # the resolver now caches the old NS
    dns_lab.delegate(old_zone, new_zone.name_servers, ttl=30)

    plan = plan_wait(old_zone.fqdn("www"), expect=["10.2.2.2"], resolvers=[dns_lab.resolver],
                     stages=["authoritative"], poll_interval=POLL, timeout=5)
    result = wait_for_propagation(plan)
    assert result.propagated
    assert {row.server for row in result.servers} == set(new_zone.name_servers)
    assert {row.address for row in result.servers} == {dns_lab.env["LAB_DNS_NEW"]}


def test_a_cname_chain_is_followed_inside_the_zone_and_out_to_a_load_balancer(dns_lab):
    zone = dns_lab.delegated_zone()
    balancer = dns_lab.load_balancer("old")
    zone.upsert("app", "A", ["10.3.3.3"])
    zone.upsert("www", "CNAME", [zone.fqdn("app")])
    zone.upsert("api", "CNAME", [balancer["DNSName"]])

    inside = wait_for_propagation(plan_wait(zone.fqdn("www"), expect=["10.3.3.3"], resolvers=[dns_lab.resolver],
                                            timeout=5, poll_interval=POLL))
    assert inside.propagated
    assert {row.chain for row in inside.servers} == {(zone.fqdn("app"),)}

    outside = wait_for_propagation(plan_wait(zone.fqdn("api"), expect_alias={"dns_name": balancer["DNSName"]},
                                             resolvers=[dns_lab.resolver], timeout=5, poll_interval=POLL))
    assert outside.propagated
    lb_address = dns_lab.ask_resolver(balancer["DNSName"])[0]
    assert lb_address and lb_address[0].startswith("127.0.54.")
    assert {row.answer for row in outside.servers} == {tuple(lb_address)}
    assert all(row.chain[0] == balancer["DNSName"].lower().rstrip(".") + "." for row in outside.servers)


def test_expect_absent_accepts_nxdomain_and_nodata_and_waits_for_a_deletion(dns_lab):
    zone = dns_lab.delegated_zone()
    zone.upsert("www", "A", ["10.1.1.1"])
    zone.upsert("legacy", "A", ["10.9.9.9"])
    nxdomain = wait_for_propagation(plan_wait(zone.fqdn("never"), expect_absent=True, resolvers=[dns_lab.resolver],
                                              timeout=5, poll_interval=POLL))
    nodata = wait_for_propagation(plan_wait(zone.fqdn("www"), "AAAA", expect_absent=True,
                                            resolvers=[dns_lab.resolver], timeout=5, poll_interval=POLL))
    assert {row.rcode for row in nxdomain.servers} == {"NXDOMAIN"}
    assert {(row.rcode, row.answer) for row in nodata.servers} == {("NOERROR", ())}

    plan = plan_wait(zone.fqdn("legacy"), expect_absent=True, resolvers=[dns_lab.resolver], timeout=30,
                     poll_interval=POLL, stages=["authoritative"])
    waiting = dns_lab.in_background(wait_for_propagation, plan)
    time.sleep(1.2)
    deleted_at = time.time()
    zone.delete("legacy", "A", ["10.9.9.9"])
    result = waiting.result(timeout=30)
    assert result.propagated and result.rounds >= 2
    assert epoch(result.stage_times["authoritative"]) - deleted_at <= POLL + 0.5
    assert {row.rcode for row in result.servers} == {"NXDOMAIN"}


def test_a_wildcard_answer_counts_as_the_records_answer(dns_lab):
    zone = dns_lab.delegated_zone()
    zone.upsert("*", "A", ["10.7.7.7"])
    result = wait_for_propagation(plan_wait(f"tenant-42.{zone.name}", expect=["10.7.7.7"],
                                            resolvers=[dns_lab.resolver], timeout=5, poll_interval=POLL))
    assert result.propagated
    assert {row.answer for row in result.servers} == {("10.7.7.7",)}


def test_a_truncated_answer_is_read_again_over_tcp(dns_lab):
    zone = dns_lab.delegated_zone()
    values = [f'"{index:02d}-{"x" * 200}"' for index in range(10)]  # ~2 kB: more than the 1232-byte EDNS buffer
    zone.upsert("big", "TXT", values)
    result = wait_for_propagation(plan_wait(zone.fqdn("big"), "TXT", expect=values, stages=["authoritative"],
                                            resolvers=[dns_lab.resolver], timeout=5, poll_interval=POLL))
    assert result.propagated
    assert all(row.tcp and len(row.answer) == 10 for row in result.servers)

    without_tcp = plan_wait(zone.fqdn("big"), "TXT", expect=values, stages=["authoritative"], tcp_fallback=False,
                            resolvers=[dns_lab.resolver], timeout=1, poll_interval=0.5)
    with pytest.raises(PropagationTimeout, match="tcp_fallback"):
        wait_for_propagation(without_tcp)


def test_an_authoritative_address_that_never_answers_is_named_in_the_timeout(dns_lab):
    zone = dns_lab.delegated_zone()
    zone.upsert("www", "A", ["10.1.1.1"])
    silent = "127.0.53.99"  # nothing listens there
    plan = plan_wait(zone.fqdn("www"), expect=["10.1.1.1"], nameservers=[zone.name_servers[0], silent],
                     resolvers=[dns_lab.resolver], stages=["authoritative"], timeout=2.5, poll_interval=0.5,
                     query_timeout=0.5)
    started = time.time()
    with pytest.raises(PropagationTimeout) as raised:
        wait_for_propagation(plan)
    assert time.time() - started <= 2.5 + 0.5 + 1
    message = str(raised.value)
    assert f"{silent} ({silent}) [authoritative] answered nothing in any of" in message
    assert "did not answer for the whole wait" in message
    rows = {row.address: row for row in raised.value.result.servers}
    assert rows[dns_lab.env["LAB_DNS_OLD"]].matches
    assert rows[silent].rcode is None and rows[silent].unanswered_rounds == rows[silent].asked_rounds >= 3
