"""Reject a ChangeResourceRecordSets batch that leaves a simple record set beside record sets with a
set identifier (weighted, failover, ...) of the same name and type, as Route53 does
("RRSet ... is not permitted because a conflicting RRSet of type ... with the same DNS name
already exists"). moto 5.2.5 accepts it, which would let a plan that turns a simple alias into
weighted sets without deleting it pass in the lab. Applied after route53_change_batches (name
order), whose batch it wraps; a rejected batch leaves the zone as it was.
"""

from __future__ import annotations

from moto.route53 import models
from moto.route53.exceptions import Route53ClientError


class _RoutingConflict(Route53ClientError):
    # moto finds the service of an error by the module its class lives in.
    __module__ = "moto.route53.exceptions"

    def __init__(self, message: str):
        super().__init__("InvalidChangeBatch", message)


def conflicts(record_sets) -> list[str]:
    """``name type`` of every group holding both a simple set and a set with an identifier."""
    kinds: dict[tuple[str, str], set[bool]] = {}
    for record_set in record_sets:
        key = (str(record_set.name).lower(), record_set.type)
        kinds.setdefault(key, set()).add(bool(record_set.set_identifier))
    return [f"{name} {record_type}" for (name, record_type), found in sorted(kinds.items()) if len(found) == 2]


def apply() -> None:
    batch = models.Route53Backend.change_resource_record_sets

    def change_resource_record_sets(self, zoneid, change_list):
        zone = self.get_hosted_zone(zoneid)
        before, changes_before = list(zone.rrsets), len(zone.rr_changes)
        result = batch(self, zoneid, change_list)
        found = conflicts(zone.rrsets)
        if found and not conflicts(before):
            zone.rrsets = before
            del zone.rr_changes[changes_before:]
            name, record_type = found[0].rsplit(" ", 1)
            raise _RoutingConflict(f"RRSet of type {record_type} with DNS name {name} is not permitted because a "
                                   f"conflicting RRSet of type {record_type} with the same DNS name already exists in zone "
                                   f"{str(zone.name).rstrip('.')}.")
        return result

    models.Route53Backend.change_resource_record_sets = change_resource_record_sets
