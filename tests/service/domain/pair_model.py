"""The reference of the pair state machine (test_pair_state_machine): what one pair must be, by the
rules, from the inputs alone.

The decision table (R1-R7), a node replacement (R12) and dissolution (R13) written out plainly;
nothing here reads the code under test. A node's bookkeeping is kept per MAC, as the device rows
keep it: a node that leaves the pair keeps its last sequence, and takes it back if it ever rejoins.
The outbox's record of what the upstream applied (the RemoteConnect row's applied key and state)
is an input the replacement's domain move reads; the outbox has its own state machine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

PRIMARY, SECONDARY = "00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10"
NEW_A, NEW_B = "C0:74:AD:00:00:0A", "C0:74:AD:00:00:0B"
POOL = (PRIMARY, SECONDARY, NEW_A, NEW_B)  # the pair's nodes and devices that may replace one
DOMAIN = "pbx.example.com"
BINDING = "im-0001"
WINDOW_S = 60
TIMEOUT_S = 7

# What a candidate for a replacement is like: fit, with Cloud IM on (R3), or no device of the org.
CANDIDATES = ("fit", "cloud_im_on", "unknown")


@dataclass
class Node:
    sequence: int | None = None
    asserted_active_at: datetime | None = None  # the last time it said it is Active (claim or report)
    status_at: datetime | None = None
    status_role: str | None = None
    work_status: str | None = None  # of its newest status report, by the node's clock
    heard_at: datetime | None = None  # service clock: the last notification the pair took from it


@dataclass
class Swap:
    """A replacement (R12) as the rules say it runs."""

    failed: str
    new: str
    survivor: str
    site: str  # primary | secondary: the failed node's, which the new node takes
    started: datetime
    prior_backup: datetime | None  # only a full backup newer than this one counts
    domain: str | None  # case 2 (the Primary failed): the custom domain moves to the new Primary
    steps: tuple[str, ...]
    done: set[str] = field(default_factory=lambda: {"add_new_node"})  # the request itself adds it in GDMS
    state: str = "in_progress"
    released: bool = False  # case 2: the domain came off the failed Primary upstream
    peer_changed: bool = False  # the survivor reported the new node as its peer
    warnings: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.state == "in_progress"

    @property
    def case(self) -> str:
        return "ucmrc_case_2" if self.site == "primary" else "ucmrc_case_1"


def steps_of(site: str, domain: str | None) -> tuple[str, ...]:
    """R12's steps, in order: the domain moves only in case 2, the switch back only when the Primary failed."""
    return ("power_off_failed", "add_new_node", *(("move_custom_domain",) if domain else ()), "change_peer_mac",
            "new_node_joins", "new_node_standby", "full_backup", *(("switch_back",) if site == "primary" else ()))


@dataclass
class Model:
    """What the pair must be, by the rules, from the inputs alone."""

    primary: str = PRIMARY
    secondary: str = SECONDARY
    active: str = PRIMARY
    status: str = "paired"
    epoch: int = 1
    newest: datetime | None = None  # the newest accepted Active assertion
    nodes: dict[str, Node] = field(default_factory=lambda: {mac: Node() for mac in POOL})
    open_faults: set[tuple[str, str]] = field(default_factory=set)
    backup_failed: bool = False
    last_full_backup: datetime | None = None
    custom_domain: str | None = DOMAIN
    swap: Swap | None = None
    departed: dict[str, int] = field(default_factory=dict)  # a node that left the pair: the epoch it left at

    # --- membership ------------------------------------------------------------------------------

    @property
    def members(self) -> tuple[str, str]:
        return self.primary, self.secondary

    def peer_of(self, mac: str) -> str:
        return self.secondary if mac == self.primary else self.primary

    @property
    def replacing(self) -> bool:
        return self.swap is not None and self.swap.running

    # --- sequences and liveness ------------------------------------------------------------------

    def fresh(self, mac: str, sequence: int) -> bool:
        last = self.nodes[mac].sequence
        return last is None or sequence > last

    def use(self, mac: str, sequence: int) -> None:
        node = self.nodes[mac]
        node.sequence = sequence if node.sequence is None else max(node.sequence, sequence)

    def heard(self, mac: str, now: datetime) -> None:
        self.nodes[mac].heard_at = now

    def alive_since(self, mac: str, since: datetime) -> bool:
        node = self.nodes[mac]
        said_active = node.asserted_active_at is not None and node.asserted_active_at >= since
        reported_active = node.status_role == "active" and node.status_at is not None and node.status_at >= since
        return said_active or reported_active

    def assert_active(self, mac: str, at: datetime) -> None:
        node = self.nodes[mac]
        node.asserted_active_at = at if node.asserted_active_at is None else max(node.asserted_active_at, at)

    def accept(self, at: datetime) -> None:
        self.newest = at if self.newest is None else max(self.newest, at)

    # --- the decision table ----------------------------------------------------------------------

    def move(self, active: str, status: str) -> None:
        """R1: a new Active is a new epoch; the same Active keeps it."""
        if active != self.active:
            self.epoch += 1
        self.active, self.status = active, status

    def switch_to(self, mac: str, work_status: str) -> None:
        self.epoch += 1  # a switch always takes a new epoch
        self.active = mac
        self.status = "replacing" if self.status == "replacing" else work_status  # a procedure keeps its status

    def claim(self, mac: str, reason: str, at: datetime, sequence: int) -> str:
        if not self.fresh(mac, sequence):
            return "stale"
        self.use(mac, sequence)
        before_active, before_newest = self.active, self.newest
        alive = self.alive_since(before_active, at - timedelta(seconds=TIMEOUT_S))
        self.assert_active(mac, at)
        if before_newest is not None and at < before_newest:
            return "stale"  # older than what the pair already believes (R3)
        self.accept(at)
        if self.status == "split_brain" or mac == before_active:
            return "no_change"  # a claim settles no split brain; the Active claiming confirms
        if reason == "force_switch":
            self.switch_to(mac, "paired")
        elif reason == "network_port_disconnect":
            self.switch_to(mac, "standalone")
        elif alive:
            self.move(self.primary, "split_brain")  # both say Active: route to the Primary (R5)
        else:
            self.switch_to(mac, "standalone")  # heart_beat_lost and unknown reasons: the cautious row
        return "decided"

    def report(self, mac: str, role: str, work: str, at: datetime, sequence: int) -> str:
        if not self.fresh(mac, sequence):
            return "stale"
        self.use(mac, sequence)
        accepted = False
        if self.status == "split_brain":
            accepted = role == "active"
            if role == "standby":
                self.move(self.peer_of(mac), "paired")  # it stood down: the other is the Active
        elif role == "active" and mac == self.active:
            accepted = True
            if self.status in ("paired", "standalone") and work in ("paired", "standalone"):
                self.status = work
        elif role == "active" and not (self.newest is not None and at < self.newest):
            if self.alive_since(self.active, at - timedelta(seconds=WINDOW_S)):
                accepted = True
                self.move(self.primary, "split_brain")
            # otherwise no automatic failover on a report alone (R7)
        node = self.nodes[mac]
        if node.status_at is None or at >= node.status_at:
            node.work_status = work  # what the node says of itself is its newest report's
        node.status_at, node.status_role = at, role
        if role == "active":
            self.assert_active(mac, at)
            if accepted:
                self.accept(at)
        return "decided"

    def resolve(self, mac: str, now: datetime) -> None:
        self.epoch += 1
        self.active = mac
        self.status = "replacing" if self.status == "replacing" else "paired"
        self.newest = now
        for mac in self.members:  # the ruling overrides what the pair's nodes said before it
            node = self.nodes[mac]
            if node.asserted_active_at is not None:
                node.asserted_active_at = min(node.asserted_active_at, now)
            if node.status_at is not None:
                node.status_at = min(node.status_at, now)

    def full_backup(self, ok: bool, now: datetime) -> None:
        self.backup_failed = not ok
        if ok:
            self.last_full_backup = now

    # --- R12: replacing a node -------------------------------------------------------------------

    def replace(self, failed: str, new: str, candidate: str, now: datetime) -> str | tuple[str, ...]:
        """An admin asks to replace ``failed`` by ``new``: ``begun``, ``retry`` (the running one asked
        again: nothing happens), the code that refuses it, or the violations' codes."""
        swap = self.swap
        if self.replacing and swap is not None and (swap.failed, swap.new) == (failed, new):
            return "retry"
        if self.status == "dissolved":
            return "pair_dissolved"
        if self.replacing:
            return "replacement_in_progress"
        if failed not in self.members:
            return "failed_not_in_pair"
        if self.status == "split_brain":
            return "split_brain"
        if failed == self.active:
            return "failed_node_active"  # only the Standby is replaced: its peer takes over a failed Active first
        if candidate == "unknown":
            return ("new_not_found",)
        codes = (("new_is_member",) if new in self.members else ()) \
            + (("cloud_im_on_new_node",) if candidate == "cloud_im_on" else ())
        if codes:
            return codes
        site = "primary" if failed == self.primary else "secondary"
        domain = self.custom_domain if site == "primary" else None
        self.swap = Swap(failed, new, self.peer_of(failed), site, now, self.last_full_backup, domain,
                         steps_of(site, domain))
        # The new node takes the failed one's place; the Active stays, so the epoch does too.
        if site == "primary":
            self.primary = new
        else:
            self.secondary = new
        self.status = "replacing"
        self.departed[failed] = self.epoch
        self.departed.pop(new, None)
        self.open_faults = {(mac, source) for mac, source in self.open_faults if mac != failed}
        return "begun"

    def peer_refused(self, reporter: str, peer: str | None) -> bool:
        """A report naming another peer than the reporter's is refused, but for the survivor of a
        running replacement naming the failed node (until its peer MAC is changed)."""
        if peer is None or peer == self.peer_of(reporter):
            return False
        swap = self.swap
        return not (self.replacing and swap is not None and (reporter, peer) == (swap.survivor, swap.failed))

    def peer_reported(self, reporter: str, peer: str | None) -> None:
        swap = self.swap
        if self.replacing and swap is not None and (reporter, peer) == (swap.survivor, swap.new):
            swap.peer_changed = True

    @property
    def domain_withheld(self) -> bool:
        """Case 2: the domain stays off until the failed Primary gave it up upstream."""
        swap = self.swap
        return (self.replacing and swap is not None and swap.domain is not None and not swap.released
                and swap.domain == self.custom_domain)

    def observe(self, domain_applied_key: str | None, domain_sync_state: str) -> None:
        """How far the running replacement got, from what was heard of the new node and the pair."""
        swap = self.swap
        if swap is None or not swap.running:
            return
        if swap.domain is not None and not swap.released and domain_applied_key != swap.domain:
            swap.released = True
        if swap.domain is not None and swap.released and domain_applied_key == swap.domain \
                and domain_sync_state == "in_sync":
            swap.done.add("move_custom_domain")  # the domain is bound to the new Primary upstream
        new = self.nodes[swap.new]
        heard = new.heard_at is not None and new.heard_at >= swap.started
        if heard:
            swap.done.add("new_node_joins")
        if swap.peer_changed:
            swap.done |= {"change_peer_mac", "power_off_failed"}
        if heard and (new.status_role, new.work_status) == ("standby", "paired"):
            swap.done |= {"power_off_failed", "change_peer_mac", "new_node_joins", "new_node_standby"}
            if self.status == "replacing":
                self.status = "paired"
        backup, prior = self.last_full_backup, swap.prior_backup
        if backup is not None and (prior is None or backup > prior):
            swap.done.add("full_backup")
        if "switch_back" in swap.steps and self.active == self.primary == swap.new:
            warning = "the Primary became Active before the full backup completed"
            if "full_backup" not in swap.done and warning not in swap.warnings:
                swap.warnings.append(warning)
            swap.done.add("switch_back")
        if swap.done >= set(swap.steps):
            swap.state = "completed"

    # --- R13: dissolving -------------------------------------------------------------------------

    def dissolve(self, release_domain: bool) -> str:
        """``dissolved``, ``released`` (the domain of a pair dissolved earlier) or ``pair_dissolved`` (refused)."""
        releases = release_domain and self.custom_domain is not None
        if self.status == "dissolved" and not releases:
            return "pair_dissolved"
        outcome = "released"
        if self.status != "dissolved":
            outcome = "dissolved"
            if self.swap is not None and self.swap.running:
                self.swap.state = "abandoned"
            self.status = "dissolved"
            self.epoch += 1  # the domain's repoint to the former Primary supersedes any in flight
            self.open_faults.clear()  # every open alarm closes
            self.backup_failed = False
        if releases:
            self.custom_domain = None
        return outcome

    # --- the upstream ----------------------------------------------------------------------------

    def desired(self, target: str) -> tuple[str | None, str | None, int]:
        """What each target must hold: the Active; the domain stays with the Primary after dissolution."""
        if target == "cloud_im":
            return BINDING, self.active, self.epoch
        if self.custom_domain is None or self.domain_withheld:
            return None, None, self.epoch
        return self.custom_domain, self.primary if self.status == "dissolved" else self.active, self.epoch
