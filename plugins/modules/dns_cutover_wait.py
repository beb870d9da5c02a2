#!/usr/bin/python
# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dns_cutover_wait
short_description: Wait until a DNS change has landed on every server, and until caches are clear
version_added: 0.1.0
description:
  - Answers "is it safe to move on?" after a DNS cutover step (an A record flipped to a new load balancer,
    a zone's NS set switched at the parent, a record removed).
  - Checks I(stages) in order. C(authoritative) asks every authoritative server of the zone directly, each of its
    addresses (A and AAAA), without recursion, and requires the AA flag; the servers are found by walking from the
    parent zone's own servers (their delegation of the zone) rather than trusting one resolver's cached view, or
    given explicitly with I(nameservers).
  - C(delegation) asks every server of the parent zone for the zone's NS set and compares it with
    I(expect_name_servers). Use it after switching the NS records at the parent.
  - C(resolvers) asks each caching resolver in I(resolvers). A resolver that cached the old answer keeps it for
    the TTL it was handed, so this stage passes only once those caches expired (or were refreshed).
  - C(cache_expiry) waits until the longest TTL any server handed out for the old answer has passed, counted from
    when the authoritative servers (or the parent's servers, for C(delegation)) first all agreed. After that
    point no well-behaved cache can still hold the old answer; the deadline is returned as RV(cache_clear_at).
  - Polls every server address in parallel, one query per server address per round, every I(poll_interval)
    seconds (sooner when a resolver's cached old answer is due to expire). CNAME chains are followed (a chain
    leaving the zone is finished through the first resolver), wildcard answers count as answers, NXDOMAIN and
    NODATA count as absent, truncated answers are asked again over TCP, and SERVFAIL, REFUSED and timeouts count
    as "not yet" with the reason in the server's row.
  - On timeout the task fails and the message names every server address that still disagrees and what it
    answered; a server that never answered during the whole wait is reported as such.
  - Changes nothing, so C(changed) is always false.
author:
  - cutover.migration contributors (@cutover-migration)
requirements:
  - dnspython >= 2.0
options:
  name:
    description:
      - The record's name, for example C(www.example.com). With I(type=NS) and the C(delegation) stage, the zone apex.
    type: str
    required: true
  type:
    description:
      - The record type to ask for (A, AAAA, CNAME, TXT, MX, NS, SRV, CAA, ...).
    type: str
    default: A
  expect:
    description:
      - The values the record must have, written as in a zone file (C(192.0.2.10), C(10 mail.example.com.),
        C(v=spf1 include:example.net ~all) for TXT). Names compare case-insensitively, with or without the
        trailing dot.
      - With I(type=NS) and I(expect_name_servers) given, defaults to I(expect_name_servers).
      - Only one of I(expect), I(expect_alias) and I(expect_absent) may be given.
    type: list
    elements: str
  expect_alias:
    description:
      - Expect the addresses that another name resolves to, for a flip to a load balancer alias. The target's
        addresses are read through the first resolver every round, so a load balancer whose addresses change is
        followed. The record may be a Route53 alias (A records) or a CNAME to the target; both match.
      - Needs I(type=A) or I(type=AAAA).
    type: dict
    suboptions:
      dns_name:
        description: The alias target's DNS name, for example the load balancer's C(DNSName).
        type: str
        required: true
      hosted_zone_id:
        description: Accepted so the alias dict given to Route53 can be passed as is; not used.
        type: str
      evaluate_target_health:
        description: Accepted so the alias dict given to Route53 can be passed as is; not used.
        type: bool
  expect_absent:
    description:
      - Expect the record to be gone (NXDOMAIN, or NODATA for this type).
    type: bool
    default: false
  match:
    description:
      - How the answer is compared with I(expect). C(exact) the same set; C(superset) contains every expected
        value (and maybe more); C(subset) only expected values and at least one (useful for load balancers
        that answer with a changing subset of their addresses).
    type: str
    choices: [exact, superset, subset]
    default: exact
  stages:
    description:
      - Which checks must pass, in order. Each stage starts when the one before it passed.
      - C(cache_expiry) needs C(authoritative) or C(delegation) before it.
    type: list
    elements: str
    choices: [authoritative, delegation, resolvers, cache_expiry]
    default: [authoritative, resolvers]
  expect_name_servers:
    description:
      - The NS set the parent must hand out for the zone in the C(delegation) stage, for example the
        C(name_servers) that route53_zone_clone returned for the new zone.
    type: list
    elements: str
  nameservers:
    description:
      - The zone's authoritative servers (host names or IP addresses) to ask in the C(authoritative) stage,
        instead of the ones found from the parent's delegation. Host names are resolved to all their A and AAAA
        addresses.
    type: list
    elements: str
  resolvers:
    description:
      - Caching resolvers to ask in the C(resolvers) stage, as C(IP) or C(IP:port) (C([IPv6]:port)). The first
        one is also used to walk to the parent zone and to resolve name servers' addresses.
      - Defaults to the system's resolvers (C(/etc/resolv.conf)).
    type: list
    elements: str
  zone:
    description:
      - The zone holding I(name). Found from the resolver's SOA answers when not given; give it when the zone is
        not delegated yet (before the NS switch a new zone is invisible through the resolver).
    type: str
  changed_at:
    description:
      - When the awaited change went live at the authoritative servers, as the run that made it recorded it, in
        epoch seconds or ISO 8601 (UTC when no offset is given). For a rerun after that run was interrupted or had
        finished, C(cache_expiry) then counts the old TTL from this time instead of from when this run first saw the
        servers agree, so a rerun does not wait a whole TTL again.
      - Ignored (RV(cache_expiry_counted_from) says C(agreement)) when this run still sees the old answer at an
        authoritative server, since the change then went live later than recorded.
      - Give only a time recorded after the change was in sync, for a record not changed since by other means; the
        old answer is then no longer visible, so its TTL is assumed to be the new answer's.
      - A time more than 30 s in the future fails, naming this option. Needs C(cache_expiry) in I(stages).
    type: str
  timeout:
    description: Seconds to wait for all stages before failing.
    type: float
    default: 1800
  poll_interval:
    description: Seconds between rounds.
    type: float
    default: 5
  query_timeout:
    description: Seconds to wait for one server's answer; a server that does not answer in time counts as "not yet".
    type: float
    default: 2
  port:
    description: Port of the authoritative and parent servers (53 on the internet; other ports in labs).
    type: int
    default: 53
  tcp_fallback:
    description: Ask again over TCP when an answer comes back truncated (TC flag).
    type: bool
    default: true
notes:
  - Check mode asks one round of every stage and returns without waiting; RV(propagated) tells whether all
    stages passed already.
  - Clients that ignore DNS TTLs (a JVM with C(networkaddress.cache.ttl) unset caches forever when a security
    manager is installed; long-lived connections never look up again) are not covered by C(cache_expiry); keep
    the old endpoint forwarding to the new one for a while after it.
  - The servers of a stage are found when the stage starts, so in C(stages=[delegation, authoritative]) the
    C(authoritative) stage asks the servers of the new delegation.
seealso:
  - name: RFC 2308 (negative caching)
    description: Why NXDOMAIN and NODATA answers are cached for the SOA minimum.
    link: https://www.rfc-editor.org/rfc/rfc2308
"""

EXAMPLES = r"""
# Lower the TTL days ahead (route53_records), then flip www to the new account's load balancer
# and wait until no cache can still hold the old address.
- name: Wait until www points at the new load balancer everywhere
  cutover.migration.dns_cutover_wait:
    name: www.example.com
    type: A
    expect_alias:
      dns_name: "{{ new_alb.load_balancer.dns_name }}"
    stages: [authoritative, resolvers, cache_expiry]
    resolvers: [8.8.8.8, 1.1.1.1]
    timeout: 900
  register: www_cutover

- name: Tell the operator when the old proxy may stop forwarding
  ansible.builtin.debug:
    msg: "Old answer gone from caches at {{ www_cutover.cache_clear_at }} (TTL {{ www_cutover.max_old_ttl }} s)"

# A rerun of the flip, which had already gone live: count the cache expiry from the time the first run
# recorded right after its flip was in sync, instead of waiting a whole TTL again.
- name: Wait for the API name again, counting from the recorded flip
  cutover.migration.dns_cutover_wait:
    name: api.example.com
    expect: [198.51.100.7]
    stages: [authoritative, cache_expiry]
    changed_at: "2026-11-21T23:04:05Z"   # e.g. the time a file written after the first run's flip holds

# After switching the NS records at the parent to the cloned zone's name servers.
- name: Wait until the parent hands out the new zone's name servers
  cutover.migration.dns_cutover_wait:
    name: example.com
    type: NS
    expect_name_servers: "{{ zone_clone.name_servers }}"
    stages: [delegation, cache_expiry]
    timeout: 172800
    poll_interval: 60

# A record removed in the old zone: every authoritative server must say NXDOMAIN/NODATA.
- name: Wait until the legacy API name is gone
  cutover.migration.dns_cutover_wait:
    name: legacy-api.example.com
    type: CNAME
    expect_absent: true
    stages: [authoritative]

# Before the cutover: how far is it? (one round, no waiting)
- name: Show where each server stands
  cutover.migration.dns_cutover_wait:
    name: api.example.com
    expect: [203.0.113.20]
  check_mode: true
  register: api_state
"""

RETURN = r"""
propagated:
  description: Whether every stage passed.
  returned: always
  type: bool
  sample: true
elapsed_s:
  description: Seconds the wait took.
  returned: always
  type: float
  sample: 12.431
rounds:
  description: Rounds of queries made (one query per server address each).
  returned: always
  type: int
  sample: 4
servers_total:
  description: Number of rows in RV(servers).
  returned: always
  type: int
  sample: 6
servers_disagreeing:
  description: Rows in RV(servers) that do not match.
  returned: always
  type: int
  sample: 0
stage_times:
  description: When each stage passed (UTC, ISO 8601), by stage name; a stage missing here did not pass.
  returned: always
  type: dict
  sample: {"authoritative": "2025-05-01T10:00:03.120Z", "resolvers": "2025-05-01T10:01:04.002Z"}
stage_elapsed_s:
  description: Seconds from the start of the wait until each stage passed.
  returned: always
  type: dict
  sample: {"authoritative": 0.012, "resolvers": 60.894}
pending_stage:
  description: The first stage that did not pass (check mode, or on failure); null when all passed.
  returned: always
  type: str
  sample: resolvers
cache_clear_at:
  description:
    - With the C(cache_expiry) stage, the time (UTC, ISO 8601) after which no well-behaved cache can hold the
      old answer, that is when the authoritative servers first all agreed plus RV(max_old_ttl).
  returned: when cache_expiry was reached
  type: str
  sample: "2025-05-01T10:01:03.120Z"
max_old_ttl:
  description: The longest TTL, in seconds, any server handed out for the old answer (negative answers count
    with their SOA minimum).
  returned: when cache_expiry was reached
  type: int
  sample: 60
max_old_ttl_source:
  description: C(observed) when the old answer was seen during the wait, otherwise how the TTL was assumed.
  returned: when cache_expiry was reached
  type: str
  sample: observed
cache_expiry_counted_from:
  description:
    - C(changed_at) when RV(cache_clear_at) counts from I(changed_at), C(agreement) when it counts from when this
      run first saw the servers agree.
  returned: when cache_expiry was reached
  type: str
  sample: changed_at
zone:
  description: The zone apex the record belongs to (as found or given); null when not needed.
  returned: always
  type: str
  sample: example.com.
expected:
  description: The values compared with (canonical form; the alias target's addresses for I(expect_alias)).
  returned: always
  type: list
  elements: str
  sample: ["203.0.113.20"]
servers:
  description: One row per server address and stage, from the last round of each stage that was asked.
  returned: always
  type: list
  elements: dict
  contains:
    server:
      description: The server's host name (or the IP given, or the resolver's address).
      type: str
      sample: ns-1.awsdns-01.org.
    address:
      description: The address asked.
      type: str
      sample: 205.251.192.1
    stage:
      description: The stage the row belongs to.
      type: str
      sample: authoritative
    answer:
      description: The values answered, at the end of any CNAME chain (NS names for C(delegation)).
      type: list
      elements: str
      sample: ["203.0.113.20"]
    ttl:
      description: The TTL handed out (the longest along a CNAME chain; the negative TTL for NXDOMAIN/NODATA).
      type: int
      sample: 60
    matches:
      description: Whether this answer matches the expectation.
      type: bool
      sample: true
    rcode:
      description: The response code, or C(NO_ANSWER) when nothing came back.
      type: str
      sample: NOERROR
    checked_at:
      description: When the question was sent (UTC, ISO 8601).
      type: str
      sample: "2025-05-01T10:00:03.101Z"
    reason:
      description: Why the row does not match (timeout, SERVFAIL, no AA flag, unexpected values); empty when it matches.
      type: str
      sample: "unexpected A 192.0.2.10; missing 203.0.113.20"
    aa:
      description: Whether the answer carried the AA flag.
      type: bool
      sample: true
    chain:
      description: CNAME targets followed, in order.
      type: list
      elements: str
      sample: []
    tcp:
      description: Whether the answer was read over TCP after a truncated UDP answer.
      type: bool
      sample: false
    asked_rounds:
      description: Rounds in which this address was asked.
      type: int
      sample: 4
    unanswered_rounds:
      description: Rounds in which it did not answer at all.
      type: int
      sample: 0
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.cutover.migration.plugins.module_utils.dns_probe import (  # noqa: E402
    DNSPYTHON_IMPORT_ERROR,
    HAS_DNSPYTHON,
    STAGES,
    ProbeError,
    PropagationTimeout,
    plan_wait,
    wait_for_propagation,
)

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "type": {"type": "str", "default": "A"},
    "expect": {"type": "list", "elements": "str"},
    "expect_alias": {"type": "dict", "options": {
        "dns_name": {"type": "str", "required": True},
        "hosted_zone_id": {"type": "str"},
        "evaluate_target_health": {"type": "bool"},
    }},
    "expect_absent": {"type": "bool", "default": False},
    "match": {"type": "str", "choices": ["exact", "superset", "subset"], "default": "exact"},
    "stages": {"type": "list", "elements": "str", "choices": list(STAGES), "default": ["authoritative", "resolvers"]},
    "expect_name_servers": {"type": "list", "elements": "str"},
    "nameservers": {"type": "list", "elements": "str"},
    "resolvers": {"type": "list", "elements": "str"},
    "zone": {"type": "str"},
    "changed_at": {"type": "str"},
    "timeout": {"type": "float", "default": 1800},
    "poll_interval": {"type": "float", "default": 5},
    "query_timeout": {"type": "float", "default": 2},
    "port": {"type": "int", "default": 53},
    "tcp_fallback": {"type": "bool", "default": True},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=[["expect", "expect_alias"]])
    if not HAS_DNSPYTHON:
        module.fail_json(msg=missing_required_lib("dnspython"), exception=str(DNSPYTHON_IMPORT_ERROR))
    params = module.params
    try:
        plan = plan_wait(
            name=params["name"], rdtype=params["type"], expect=params["expect"], expect_alias=params["expect_alias"],
            expect_absent=params["expect_absent"], match=params["match"], stages=params["stages"],
            expect_name_servers=params["expect_name_servers"], nameservers=params["nameservers"],
            resolvers=params["resolvers"], zone=params["zone"], timeout=params["timeout"],
            poll_interval=params["poll_interval"], query_timeout=params["query_timeout"], port=params["port"],
            tcp_fallback=params["tcp_fallback"], changed_at=params["changed_at"],
        )
        result = wait_for_propagation(plan, check_mode=module.check_mode)
    except ProbeError as error:
        module.fail_json(msg=str(error), option=error.option, changed=False)
    except PropagationTimeout as error:
        module.fail_json(msg=str(error), changed=False, **error.result.as_dict())
    module.exit_json(changed=False, **result.as_dict())


if __name__ == "__main__":
    main()
