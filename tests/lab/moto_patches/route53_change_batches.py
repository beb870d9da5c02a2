"""Make ChangeResourceRecordSets behave like Route53 where the route53_* tests depend on it.

moto 5.2.5 differs from Route53 in ways that would let a wrong plan pass:
- a CREATE of an existing name/type/set identifier makes a duplicate (Route53: InvalidChangeBatch);
- a DELETE with a set identifier deletes every set with that identifier, whatever its name;
  a DELETE is checked against a journal of past requests, not against the current values;
- changes apply one by one, so a failing change leaves the earlier ones applied (Route53 applies
  a batch atomically or not at all);
- an alias to a record set of the same zone that does not exist is accepted (Route53 rejects it,
  which is why a clone must create alias targets first);
- GeoProximityLocation and CidrRoutingConfig are dropped;
- names are stored as sent; Route53 stores them lower-case and answers ``*`` as ``\\052``.
"""

from __future__ import annotations

from moto.route53 import models
from moto.route53.exceptions import Route53ClientError


class _BatchRejected(Route53ClientError):
    # moto finds the service of an error by the module its class lives in.
    __module__ = "moto.route53.exceptions"

    def __init__(self, message: str):
        super().__init__("InvalidChangeBatch", message)


def _stored_name(name: str) -> str:
    name = name.lower()
    if not name.endswith("."):
        name += "."
    return name.replace("*", "\\052")


def _key(record_set: dict) -> tuple:
    return (_stored_name(record_set["Name"]), record_set["Type"], record_set.get("SetIdentifier"))


def _stored_key(record_set) -> tuple:
    return (_stored_name(record_set.name), record_set.type, record_set.set_identifier)


def _values(record_set: dict) -> list:
    return sorted(item["Value"] if isinstance(item, dict) else item for item in record_set.get("ResourceRecords") or [])


def _same_data(stored, record_set: dict) -> bool:
    if record_set.get("AliasTarget"):
        stored_alias = stored.alias_target or {}
        return (str(stored_alias.get("DNSName", "")).lower().rstrip(".")
                == str(record_set["AliasTarget"]["DNSName"]).lower().rstrip("."))
    return sorted(stored.records or []) == _values(record_set) and str(stored.ttl) == str(record_set.get("TTL"))


def apply() -> None:
    original_init = models.RecordSet.__init__

    def record_set_init(self, kwargs):
        original_init(self, kwargs)
        self.name = _stored_name(self.name) if self.name else self.name
        self.geo_proximity_location = kwargs.get("GeoProximityLocation")
        self.cidr_routing_config = kwargs.get("CidrRoutingConfig")

    def change_resource_record_sets(self, zoneid, change_list):
        zone = self.get_hosted_zone(zoneid)
        zone_name = _stored_name(zone.name)
        current = {_stored_key(record_set): record_set for record_set in zone.rrsets}
        planned = dict(current)
        for change in change_list:
            action = change["Action"]
            record_set = change["ResourceRecordSet"]
            models.validate_domain_name(record_set["Name"], code="InvalidChangeBatch")
            key = _key(record_set)
            label = f"[name='{key[0]}', type='{key[1]}'" + (f", set-identifier='{key[2]}'" if key[2] else "") + "]"
            if not (key[0] == zone_name or key[0].endswith("." + zone_name)):
                raise _BatchRejected(f"RRSet with DNS name {key[0]} is not permitted in zone {zone_name}")
            if action == "CREATE" and key in planned:
                raise _BatchRejected(f"Tried to create resource record set {label} but it already exists")
            if action == "DELETE":
                if key not in planned:
                    raise _BatchRejected(f"Tried to delete resource record set {label} but it was not found")
                if not _same_data(planned[key], record_set):
                    raise _BatchRejected(f"Tried to delete resource record set {label} but the values provided do "
                                         "not match the current values")
                del planned[key]
                continue
            if action not in ("CREATE", "UPSERT"):
                continue
            alias = record_set.get("AliasTarget")
            if alias and str(alias.get("HostedZoneId", "")).rsplit("/", 1)[-1] == zone.resource_id:
                target = _stored_name(alias["DNSName"])
                if not any(other[0] == target and other[1] == key[1] for other in planned):
                    raise _BatchRejected(f"Tried to create an alias that targets {target}, type {key[1]} in zone "
                                         f"{zone.resource_id}, but that target was not found")
            if record_set.get("AliasTarget") and "TTL" in record_set:
                raise _BatchRejected(f"Invalid request: an alias record set {label} must not have a TTL")
            planned[key] = models.RecordSet(dict(record_set, ResourceRecords=_values(record_set)))
        # All checks passed: the batch applies as a whole, in order.
        zone.rrsets = [record_set for key, record_set in planned.items()]
        for change in change_list:
            zone.rr_changes.append(dict(change))

    models.RecordSet.__init__ = record_set_init
    models.Route53Backend.change_resource_record_sets = change_resource_record_sets
