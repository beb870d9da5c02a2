"""dns_probe: planning, reading answers, judging and the wait loop, with a scripted network."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from ansible_collections.cutover.migration.plugins.module_utils import dns_probe
from ansible_collections.cutover.migration.plugins.module_utils.dns_probe import (
    Observation,
    ProbeError,
    PropagationTimeout,
    Reply,
    ServerAddress,
    canonical_value,
    judge,
    parse_address,
    plan_wait,
    read_answer,
    read_delegation,
    wait_for_propagation,
)

AUTH = ServerAddress("ns-1.example.", "192.0.2.1", 53, "authoritative")


def message(qname: str, rdtype: str, *, answer=(), authority=(), additional=(), rcode="NOERROR", aa=True, tc=False):
    query = dns.message.make_query(qname, rdtype)
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.from_text(rcode))
    if aa:
        response.flags |= dns.flags.AA
    if tc:
        response.flags |= dns.flags.TC
    for section, lines in ((response.answer, answer), (response.authority, authority),
                           (response.additional, additional)):
        for line in lines:
            owner, ttl, rtype, *values = line.split(None, 3)
            section.append(dns.rrset.from_text(owner, int(ttl), "IN", rtype, *values[0].split("|")))
    return response


SOA = "example.com. 300 SOA ns-1.example. hostmaster.example.com. 1 7200 900 1209600 30"


# ---------------------------------------------------------------------------------------------- plan


def test_a_misspelt_record_type_names_the_type_option():
    with pytest.raises(ProbeError, match=r"^type: 'AA' is not a DNS record type"):
        plan_wait("www.example.com", "AA", expect=["192.0.2.1"])


def test_an_invalid_address_in_expect_names_expect_and_the_format():
    with pytest.raises(ProbeError, match=r"^expect: '10.0.0.300' is not a valid A value"):
        plan_wait("www.example.com", "A", expect=["10.0.0.300"])


def test_expect_and_expect_absent_together_are_refused():
    with pytest.raises(ProbeError, match="give only one of expect, expect_alias, expect_absent"):
        plan_wait("www.example.com", expect=["192.0.2.1"], expect_absent=True)


def test_cache_expiry_needs_an_agreement_stage_before_it():
    with pytest.raises(ProbeError, match=r"^stages: cache_expiry counts from"):
        plan_wait("www.example.com", expect=["192.0.2.1"], stages=["resolvers", "cache_expiry"])


def test_delegation_needs_expect_name_servers():
    with pytest.raises(ProbeError, match=r"^expect_name_servers: the delegation stage"):
        plan_wait("example.com", "NS", stages=["delegation"])


def test_answer_stages_need_an_expectation():
    with pytest.raises(ProbeError, match=r"^expect: the authoritative and resolvers stage"):
        plan_wait("www.example.com")


def test_expect_alias_needs_an_address_type():
    with pytest.raises(ProbeError, match=r"^expect_alias: .* use type A or AAAA"):
        plan_wait("www.example.com", "CNAME", expect_alias={"dns_name": "lb.example.net"})


def test_a_zone_that_does_not_hold_the_name_is_refused():
    with pytest.raises(ProbeError, match=r"^zone: www.example.com. is not inside example.org."):
        plan_wait("www.example.com", expect=["192.0.2.1"], zone="example.org")


def test_ns_with_expect_name_servers_defaults_the_expectation():
    plan = plan_wait("example.com", "NS", expect_name_servers=["NS-2.Example.NET", "ns-1.example.net."],
                     stages=["delegation", "resolvers"])
    assert plan.expectation.values == ("ns-1.example.net.", "ns-2.example.net.")


@pytest.mark.parametrize(("text", "port", "expected"), [
    ("192.0.2.53", 53, ("192.0.2.53", 53)),
    ("192.0.2.53:5353", 53, ("192.0.2.53", 5353)),
    ("[2001:db8::1]:5353", 53, ("2001:db8::1", 5353)),
    ("2001:db8:0::1", 53, ("2001:db8::1", 53)),
])
def test_resolver_addresses_take_an_optional_port(text, port, expected):
    assert parse_address(text, port, "resolvers") == expected


def test_a_resolver_given_by_name_is_refused_with_the_format():
    with pytest.raises(ProbeError, match=r"^resolvers: 'dns.google' is not an IP address"):
        parse_address("dns.google", 53, "resolvers")


def test_values_compare_in_canonical_form():
    assert canonical_value(15, "10 Mail.Example.COM") == "10 mail.example.com."
    assert canonical_value(28, "2001:0db8:0000::0001") == "2001:db8::1"
    plan = plan_wait("example.com", "TXT", expect=["v=spf1 include:example.net ~all"])
    assert plan.expectation.values == ('"v=spf1 include:example.net ~all"',)


# ---------------------------------------------------------------------------------------------- read


def test_a_cname_chain_inside_the_answer_is_followed_to_its_addresses():
    reply = Reply(message=message("www.example.com.", "A", answer=[
        "www.example.com. 60 CNAME app.example.com.", "app.example.com. 30 A 192.0.2.7"]))
    observation = read_answer(reply, AUTH, "www.example.com.", "A", 1.0)
    assert observation.answer == ("192.0.2.7",)
    assert observation.chain == ("app.example.com.",)
    assert (observation.ttl, observation.min_ttl) == (60, 30)
    assert observation.tail is None


def test_a_cname_leaving_the_zone_leaves_a_tail_to_resolve():
    reply = Reply(message=message("www.example.com.", "A", answer=["www.example.com. 60 CNAME lb.elb.example.net."]))
    observation = read_answer(reply, AUTH, "www.example.com.", "A", 1.0)
    assert observation.tail == "lb.elb.example.net."
    assert judge(observation, plan_wait("www.example.com", expect=["192.0.2.1"]).expectation,
                 ["192.0.2.1"]).matches is False


def test_nxdomain_is_absent_with_the_soa_minimum_as_ttl():
    reply = Reply(message=message("old.example.com.", "A", authority=[SOA], rcode="NXDOMAIN"))
    observation = read_answer(reply, AUTH, "old.example.com.", "A", 1.0)
    expectation = plan_wait("old.example.com", expect_absent=True).expectation
    assert observation.ttl == 30
    assert judge(observation, expectation, ()).matches


def test_nodata_is_absent_too():
    reply = Reply(message=message("www.example.com.", "AAAA", authority=[SOA]))
    observation = judge(read_answer(reply, AUTH, "www.example.com.", "AAAA", 1.0),
                        plan_wait("www.example.com", "AAAA", expect_absent=True).expectation, ())
    assert observation.matches and observation.answer == ()


def test_an_answer_without_aa_does_not_count_for_the_authoritative_stage():
    reply = Reply(message=message("www.example.com.", "A", answer=["www.example.com. 60 A 192.0.2.1"], aa=False))
    observation = judge(read_answer(reply, AUTH, "www.example.com.", "A", 1.0),
                        plan_wait("www.example.com", expect=["192.0.2.1"]).expectation, ["192.0.2.1"])
    assert not observation.matches
    assert "AA flag" in observation.reason


def test_servfail_counts_as_not_yet_with_the_reason():
    reply = Reply(message=message("www.example.com.", "A", rcode="SERVFAIL", aa=False))
    observation = judge(read_answer(reply, AUTH, "www.example.com.", "A", 1.0),
                        plan_wait("www.example.com", expect=["192.0.2.1"]).expectation, ["192.0.2.1"])
    assert not observation.matches and observation.reason.startswith("SERVFAIL")


@pytest.mark.parametrize(("mode", "answer", "matches"), [
    ("exact", ["192.0.2.1", "192.0.2.2"], True),
    ("exact", ["192.0.2.1"], False),
    ("superset", ["192.0.2.1", "192.0.2.2", "192.0.2.3"], True),
    ("superset", ["192.0.2.1"], False),
    ("subset", ["192.0.2.2"], True),
    ("subset", ["192.0.2.2", "192.0.2.9"], False),
])
def test_match_modes(mode, answer, matches):
    expectation = plan_wait("www.example.com", expect=["192.0.2.1", "192.0.2.2"], match=mode).expectation
    observation = Observation(server="s", address="192.0.2.53", stage="resolvers", answer=tuple(answer), ttl=5,
                              rcode="NOERROR")
    assert judge(observation, expectation, expectation.values).matches is matches


def test_subset_needs_at_least_one_value():
    expectation = plan_wait("www.example.com", expect=["192.0.2.1"], match="subset").expectation
    observation = Observation(server="s", address="a", stage="resolvers", rcode="NXDOMAIN")
    assert not judge(observation, expectation, expectation.values).matches


def test_a_referral_is_read_as_the_parents_delegation():
    reply = Reply(message=message("example.com.", "NS", aa=False, authority=[
        "example.com. 172800 NS ns-9.example.net.|NS-8.example.net."]))
    parent = ServerAddress("a.gtld.", "192.0.2.100", 53, "delegation")
    observation = read_delegation(reply, parent, "example.com.", 1.0)
    assert observation.answer == ("ns-8.example.net.", "ns-9.example.net.")
    assert observation.ttl == 172800


# ---------------------------------------------------------------------------------------------- wait


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += max(seconds, 0.0)


class ScriptedNetwork:
    """Answers by (address, qname, rdtype); values may be callables of the clock's time."""

    def __init__(self, clock, answers):
        self.clock = clock
        self.answers = answers
        self.asked: list[tuple[str, str, str, bool]] = []

    def ask(self, address, port, qname, rdtype, recursion):
        self.asked.append((address, qname, rdtype, recursion))
        found = self.answers.get((address, qname, rdtype))
        if callable(found):
            found = found(self.clock.now)
        if found is None:
            return Reply(error="timed out after 2 s")
        return Reply(message=found)


RESOLVER = "192.0.2.53"


def discovery(answers):
    """The parent com. with one server, delegating example.com. to two servers (glue given)."""
    answers.update({
        (RESOLVER, "www.example.com.", "SOA"): message("www.example.com.", "SOA", authority=[SOA], aa=False),
        (RESOLVER, "example.com.", "SOA"): message("example.com.", "SOA", answer=[SOA], aa=False),
        (RESOLVER, "com.", "SOA"): message("com.", "SOA", aa=False, answer=[
            "com. 900 SOA a.gtld. nstld. 1 1800 900 604800 86400"]),
        (RESOLVER, "com.", "NS"): message("com.", "NS", aa=False, answer=["com. 172800 NS a.gtld."]),
        (RESOLVER, "a.gtld.", "A"): message("a.gtld.", "A", aa=False, answer=["a.gtld. 172800 A 192.0.2.100"]),
        (RESOLVER, "a.gtld.", "AAAA"): message("a.gtld.", "AAAA", aa=False),
        ("192.0.2.100", "example.com.", "NS"): message(
            "example.com.", "NS", aa=False, authority=["example.com. 172800 NS ns-1.example.com.|ns-2.example.com."],
            additional=["ns-1.example.com. 172800 A 192.0.2.1", "ns-2.example.com. 172800 A 192.0.2.2"]),
    })
    return answers


def a_record(value, ttl=60, aa=True):
    return message("www.example.com.", "A", answer=[f"www.example.com. {ttl} A {value}"], aa=aa)


def run(plan, network, clock, check_mode=False):
    return wait_for_propagation(plan, check_mode=check_mode, transport=network, clock=clock, sleep=clock.sleep)


def test_flip_authoritative_then_resolvers_then_cache_expiry():
    clock = Clock()
    flip_at = clock.now + 12
    resolver_expiry = clock.now + 40

    def authoritative(now):
        return a_record("192.0.2.20" if now >= flip_at else "192.0.2.10")

    def resolver(now):
        if now < resolver_expiry:
            return a_record("192.0.2.10", ttl=int(resolver_expiry - now), aa=False)
        return a_record("192.0.2.20", aa=False)

    network = ScriptedNetwork(clock, discovery({
        ("192.0.2.1", "www.example.com.", "A"): authoritative,
        ("192.0.2.2", "www.example.com.", "A"): authoritative,
        (RESOLVER, "www.example.com.", "A"): resolver,
    }))
    plan = plan_wait("www.example.com", expect=["192.0.2.20"], resolvers=[RESOLVER], poll_interval=5,
                     stages=["authoritative", "resolvers", "cache_expiry"])
    start = clock.now
    result = run(plan, network, clock)

    assert result.propagated
    assert result.zone == "example.com."
    assert 12 <= result.stage_elapsed_s["authoritative"] <= 12 + 5
    # the resolver's remaining TTL brings the next round forward to its expiry
    assert 40 <= result.stage_elapsed_s["resolvers"] <= 40 + 1
    assert result.max_old_ttl == 60 and result.max_old_ttl_source == "observed"
    assert result.cache_clear_at == pytest.approx(start + result.stage_elapsed_s["authoritative"] + 60)
    assert clock.now == pytest.approx(result.cache_clear_at)
    rounds_per_address = {}
    for address, qname, _unused, _unused_2 in network.asked:
        if qname == "www.example.com.":
            rounds_per_address[address] = rounds_per_address.get(address, 0) + 1
    assert rounds_per_address["192.0.2.1"] == rounds_per_address["192.0.2.2"]
    assert all(not recursion for address, qname, _unused, recursion in network.asked
               if address in ("192.0.2.1", "192.0.2.2", "192.0.2.100"))


def test_check_mode_does_one_round_of_each_stage_and_does_not_wait():
    clock = Clock()
    network = ScriptedNetwork(clock, discovery({
        ("192.0.2.1", "www.example.com.", "A"): a_record("192.0.2.10"),
        ("192.0.2.2", "www.example.com.", "A"): a_record("192.0.2.20"),
        (RESOLVER, "www.example.com.", "A"): a_record("192.0.2.10", aa=False),
    }))
    plan = plan_wait("www.example.com", expect=["192.0.2.20"], resolvers=[RESOLVER])
    result = run(plan, network, clock, check_mode=True)
    assert not result.propagated and result.pending_stage == "authoritative"
    assert result.rounds == 1
    assert clock.now == 1_000_000.0
    assert {(o.stage, o.address, o.matches) for o in result.servers} == {
        ("authoritative", "192.0.2.1", False), ("authoritative", "192.0.2.2", True), ("resolvers", RESOLVER, False)}


def test_timeout_names_every_disagreeing_server_and_a_silent_one():
    clock = Clock()
    network = ScriptedNetwork(clock, discovery({
        ("192.0.2.1", "www.example.com.", "A"): a_record("192.0.2.10"),
        # 192.0.2.2 never answers
    }))
    plan = plan_wait("www.example.com", expect=["192.0.2.20"], resolvers=[RESOLVER], timeout=30, poll_interval=5)
    with pytest.raises(PropagationTimeout) as raised:
        run(plan, network, clock)
    text = str(raised.value)
    assert "ns-1.example.com. (192.0.2.1) [authoritative] answered 192.0.2.10 (ttl 60)" in text
    assert "ns-2.example.com. (192.0.2.2)" in text and "did not answer for the whole wait" in text
    result = raised.value.result.as_dict()
    assert result["propagated"] is False and result["servers_disagreeing"] == 2
    assert 30 <= result["elapsed_s"] <= 31


def test_a_cname_out_of_the_zone_is_finished_through_the_resolver():
    clock = Clock()
    cname = message("www.example.com.", "A", answer=["www.example.com. 60 CNAME lb-1.elb.example.net."])
    network = ScriptedNetwork(clock, discovery({
        ("192.0.2.1", "www.example.com.", "A"): cname,
        ("192.0.2.2", "www.example.com.", "A"): cname,
        (RESOLVER, "lb-1.elb.example.net.", "A"): message(
            "lb-1.elb.example.net.", "A", aa=False, answer=["lb-1.elb.example.net. 60 A 198.51.100.4"]),
    }))
    plan = plan_wait("www.example.com", expect_alias={"dns_name": "lb-1.elb.example.net"}, resolvers=[RESOLVER],
                     stages=["authoritative"])
    result = run(plan, network, clock)
    assert result.propagated
    assert [o.answer for o in result.servers] == [("198.51.100.4",), ("198.51.100.4",)]
    assert result.servers[0].chain == ("lb-1.elb.example.net.",)


def test_cache_expiry_beyond_the_timeout_fails_at_once_with_the_timeout_to_set():
    clock = Clock()
    network = ScriptedNetwork(clock, discovery({
        ("192.0.2.1", "www.example.com.", "A"): a_record("192.0.2.20", ttl=86400),
        ("192.0.2.2", "www.example.com.", "A"): a_record("192.0.2.20", ttl=86400),
    }))
    plan = plan_wait("www.example.com", expect=["192.0.2.20"], resolvers=[RESOLVER], timeout=600,
                     stages=["authoritative", "cache_expiry"])
    with pytest.raises(PropagationTimeout, match="raise timeout to at least"):
        run(plan, network, clock)
    assert clock.now == 1_000_000.0


def test_the_module_utils_has_no_ansible_import():
    source = dns_probe.__file__
    with open(source, encoding="utf-8") as handle:
        assert "ansible." not in handle.read().replace("ansible.builtin", "")


def test_check_mode_reports_cache_clear_at_without_waiting_for_it():
    clock = Clock()
    network = ScriptedNetwork(clock, discovery({
        ("192.0.2.1", "www.example.com.", "A"): a_record("192.0.2.20", ttl=300),
        ("192.0.2.2", "www.example.com.", "A"): a_record("192.0.2.20", ttl=300),
        (RESOLVER, "www.example.com.", "A"): a_record("192.0.2.10", ttl=120, aa=False),
    }))
    plan = plan_wait("www.example.com", expect=["192.0.2.20"], resolvers=[RESOLVER],
                     stages=["authoritative", "cache_expiry", "resolvers"])
    result = run(plan, network, clock, check_mode=True)
    assert not result.propagated and result.pending_stage == "cache_expiry"
    assert result.cache_clear_at == clock.now + 300
    assert result.max_old_ttl_source.startswith("assumed")
    assert clock.now == 1_000_000.0
    assert [o.stage for o in result.servers] == ["authoritative", "authoritative", "resolvers"]


def test_a_rerun_counts_cache_expiry_from_the_recorded_change_time():
    """The flip went live 45 s before this run (recorded then): only the TTL's last 15 s are left to wait."""
    clock = Clock()
    network = ScriptedNetwork(clock, discovery({
        ("192.0.2.1", "www.example.com.", "A"): a_record("192.0.2.20", ttl=60),
        ("192.0.2.2", "www.example.com.", "A"): a_record("192.0.2.20", ttl=60),
    }))
    start = clock.now
    plan = plan_wait("www.example.com", expect=["192.0.2.20"], stages=["authoritative", "cache_expiry"],
                     resolvers=[RESOLVER], changed_at=str(start - 45), now=start)
    result = run(plan, network, clock)
    assert result.propagated and result.cache_expiry_counted_from == "changed_at"
    assert result.cache_clear_at == pytest.approx(start + 15)
    assert clock.now == pytest.approx(start + 15)


def test_a_recorded_change_time_is_ignored_while_the_old_answer_is_still_served():
    clock = Clock()
    flip_at = clock.now + 10

    def authoritative(now):
        return a_record("192.0.2.20" if now >= flip_at else "192.0.2.10", ttl=60)

    network = ScriptedNetwork(clock, discovery({
        ("192.0.2.1", "www.example.com.", "A"): authoritative,
        ("192.0.2.2", "www.example.com.", "A"): authoritative,
    }))
    start = clock.now
    plan = plan_wait("www.example.com", expect=["192.0.2.20"], stages=["authoritative", "cache_expiry"],
                     resolvers=[RESOLVER], poll_interval=5, changed_at=start - 500, now=start)
    result = run(plan, network, clock)
    assert result.cache_expiry_counted_from == "agreement" and result.max_old_ttl_source == "observed"
    assert result.cache_clear_at == pytest.approx(start + result.stage_elapsed_s["authoritative"] + 60)


@pytest.mark.parametrize("value, message", [
    ("yesterday", r"^changed_at: 'yesterday' is neither epoch seconds nor an ISO 8601 time"),
    ("2030-01-01T00:00:00Z", r"^changed_at: 2030-01-01T00:00:00.000Z is in the future"),
])
def test_a_bad_changed_at_names_the_option(value, message):
    with pytest.raises(ProbeError, match=message):
        plan_wait("www.example.com", expect=["192.0.2.20"], stages=["authoritative", "cache_expiry"],
                  changed_at=value, now=1_764_000_000.0)


def test_changed_at_without_cache_expiry_names_the_stages():
    with pytest.raises(ProbeError, match=r"^changed_at: .*add cache_expiry to stages"):
        plan_wait("www.example.com", expect=["192.0.2.20"], changed_at="2026-11-22T09:00:00", now=1_800_000_000.0)
