"""Give every hosted zone (and reusable delegation set) its own name servers.

moto hands every zone the same four awsdns names; Route53 gives each its own set, and NS
delegation tests cannot tell the old zone from the new one without that. The names live under
the lab-only domain ``r53.lab.``, which the lab's DNS server answers with the owning account's
address. The apex SOA is rewritten too: moto's names a server outside the lab.
"""

from __future__ import annotations

from moto.route53 import models

NAME_SERVER_DOMAIN = "r53.lab"
SOA_TAIL = "awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"


def name_servers_for(identifier: str) -> list[str]:
    label = identifier.rstrip("/").split("/")[-1].lower()  # moto's ids may carry /hostedzone/
    return [f"ns-{number}.{label}.{NAME_SERVER_DOMAIN}" for number in range(1, 5)]


def apply() -> None:
    original_create_zone = models.Route53Backend.create_hosted_zone
    original_create_set = models.Route53Backend.create_reusable_delegation_set

    def create_reusable_delegation_set(self, caller_reference, delegation_set_id=None, hosted_zone_id=None):
        delegation_set = original_create_set(self, caller_reference, delegation_set_id=delegation_set_id,
                                             hosted_zone_id=hosted_zone_id)
        if not hosted_zone_id and not caller_reference.startswith("DelSet_"):
            delegation_set.name_servers = name_servers_for(delegation_set.id)
        return delegation_set

    def create_hosted_zone(self, name, private_zone, caller_reference=None, vpcid=None, vpcregion=None,
                           comment=None, delegation_set_id=None):
        # moto re-creates the reusable set under the same id with default names: remember its own.
        reusable = self.delegation_sets.get(delegation_set_id) if delegation_set_id else None
        reusable_names = list(reusable.name_servers) if reusable else None
        zone = original_create_zone(self, name, private_zone, caller_reference=caller_reference, vpcid=vpcid,
                                    vpcregion=vpcregion, comment=comment, delegation_set_id=delegation_set_id)
        name_servers = reusable_names or name_servers_for(zone.id)
        if delegation_set_id:
            self.delegation_sets[delegation_set_id].name_servers = list(name_servers)
        zone.delegation_set.name_servers = name_servers
        for record_set in zone.rrsets:
            if record_set.type == "NS":
                record_set.records = list(name_servers)
            elif record_set.type == "SOA":
                record_set.records = [f"{name_servers[0]}. {SOA_TAIL}"]
        return zone

    models.Route53Backend.create_hosted_zone = create_hosted_zone
    models.Route53Backend.create_reusable_delegation_set = create_reusable_delegation_set
