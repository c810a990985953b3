"""HA pair procedures: replacing a failed node (R12) and dissolving a pair (R13).

The rolling firmware upgrade (R11) has no endpoint: it is followed from the firmware the nodes
report (`ha.status`) or an admin sets (PATCH /devices/{mac}); its state is the pair's `procedure`.
"""
from __future__ import annotations

from flask_smorest import Blueprint

from service.commands import procedures as commands

from .auth import require_token
from .context import command_context
from .presenters import pair_view_now
from .schemas.lifecycle import DissolveArgs, DissolvedSchema, PairSchema, ReplaceSchema

blp = Blueprint("lifecycle", __name__, url_prefix="/api/v1/ha-pairs",
                description="HA pair procedures: replace a failed node (R12), dissolve a pair (R13)")
blp.before_request(require_token)


@blp.post("/<int:pair_id>/replace")
@blp.arguments(ReplaceSchema)
@blp.response(200, PairSchema)
def replace(data, pair_id):
    """Replace a failed node (R12)

    Starts the vendor's replacement procedure for the pair's **Standby** node `failed_mac` with
    the device `new_mac` (with UCMRC case 1: the Secondary failed; case 2: the Primary failed;
    or without UCMRC). The new node takes the failed node's site type; the failed device leaves
    the pair at once and is free. In case 2 the custom domain comes off the failed Primary
    upstream and is bound to the new Primary (the connection keeps pointing at the Active).

    The pair goes to status `replacing`; `procedure` lists the steps (`kind: "replace"`, `case`,
    `steps: [{name, title, done, at}]`, `next_step`) and the service marks them done as it sees
    them: the survivor reporting the new peer MAC, the new node reporting in (as a paired Standby
    it makes the pair `paired` again), the full backup, and in case 2 (or without UCMRC when the
    Secondary is Active) the force switch back to the Primary.

    422 with `violations` when the new node is not usable: not in this organization, already in
    a pair, another model or firmware than the surviving node (R1), without a same-spec plan with
    HA permission when the pair uses UCMRC (R2), Cloud IM enabled or, for Cloud IM on the GDMS
    server, a plan without the Cloud IM permission (R3), other storage (R9). 409 when the failed
    node is still the Active (a failover must happen first), the pair is in split brain or
    dissolved, or a replacement is already running.
    """
    return pair_view_now(commands.replace_node(command_context(), pair_id, data["failed_mac"], data["new_mac"]))


@blp.delete("/<int:pair_id>")
@blp.arguments(DissolveArgs, location="query")
@blp.response(200, DissolvedSchema)
def dissolve(args, pair_id):
    """Dissolve the pair (R13)

    Both nodes leave HA (the admin does that on the Active; the nodes reboot). The pair keeps
    its history with status `dissolved` and `dissolved_at`; its devices are free to pair again
    and their notifications are refused (409). Running procedures are abandoned and open alarms
    closed. The custom domain stays with the former Primary and its connection is repointed at
    it; the Cloud IM binding stays with the node that was Active. Because custom domains are
    unique, a dissolved pair keeps its domain taken until it is released: pass
    `release_domain=true` (now, or later on the dissolved pair) to unbind it upstream and free it.

    The response carries the pair and a `notice` to pass on: terminals must be re-registered to a
    new address. 409 when the pair is dissolved already (and there is no domain to release).
    """
    pair, notice = commands.dissolve(command_context(), pair_id, release_domain=args["release_domain"])
    return {"pair": pair_view_now(pair), "notice": notice}
